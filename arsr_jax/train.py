"""``train_and_evaluate(config, workdir, job)``: the one training loop of arsr_jax.

A ``Job`` (jobs/sr.py, jobs/recognition.py) says what is trained and how it
is evaluated: init, step, data, evaluator. This loop knows nothing else about
it. Data-parallel over every device of every process: the batch is sharded on
the mesh's ``data`` axis, the train state is replicated, created directly on
the devices (``jit`` with ``out_shardings``) or restored from the latest Orbax
checkpoint in ``workdir`` together with the input iterator. After training
(or with ``config.mode = 'eval'``) the network is evaluated; results go to
``workdir/results.json`` and ``workdir/eval/step_N.json``, the run's config to
``workdir/config.json``. ``workdir`` may be local or a URL (gs://...).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from arsr_jax import checkpointing, fileio, preemption, sharding
from arsr_jax.evaluation.periodic import PeriodicEval
from arsr_jax.steps.state import TrainState
from arsr_jax.writers import EventWriter, Progress


class Evaluator(Protocol):
  """``evaluator(variables, mesh, step, writer) -> results`` (JSON-able dict); ``table(results)`` -> markdown."""

  def __call__(self, variables: Any, mesh: jax.sharding.Mesh, step: int,
               writer: EventWriter | None = None) -> dict[str, Any]: ...

  def table(self, results: dict[str, Any]) -> str: ...


@dataclasses.dataclass(frozen=True)
class Job:
  """What a task trains and how it is evaluated; ``train_and_evaluate`` runs any Job.

  init_fn: rng -> TrainState (jitted with replicated out_shardings).
  train_step: (state, batch, frozen, rng) -> (state, {name: float32 scalar}, with 'nonfinite').
  frozen: fixed variables the step reads (e.g. VGG features), replicated.
  iterator: per-process batch size -> checkpointable grain iterator.
  evaluator: the trained network's Evaluator; ``eval_variables(state)`` what it is handed.
  describe: state -> one line for the log.
  init_from: (state, source) -> state, initializing from another run (train.init_from), or None.
  """
  init_fn: Callable[[jax.Array], TrainState]
  train_step: Callable
  frozen: Any
  iterator: Callable[[int], Any]
  evaluator: Evaluator
  eval_variables: Callable[[TrainState], Any]
  describe: Callable[[TrainState], str]
  init_from: Callable[[TrainState, str], TrainState] | None = None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: fileio.PathLike, job: Job) -> dict[str, Any]:
  """Trains ``job`` (resuming from ``workdir`` if it holds checkpoints), then evaluates.

  Returns the evaluation results (also in ``workdir/results.json``), or
  {'step', 'finished': False} when ``train.steps_per_run`` stopped early, with
  'stopped_by': 'SIGTERM' | 'SIGINT' when a signal stopped it (checkpoint written).
  A workdir holding another run's checkpoints is refused before anything is written.
  """
  workdir = fileio.path(workdir)
  checkpointing.check_identity(workdir / "checkpoints", config)  # reads only
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  per_process_batch = sharding.check_batch_size(config.train.batch_size, mesh)
  sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  abstract_state = checkpointing.abstract(jax.eval_shape(job.init_fn, init_rng), repl)
  has_checkpoints = bool(checkpointing.steps(workdir / "checkpoints"))
  if config.mode == "eval" and not has_checkpoints:
    raise FileNotFoundError(f"mode=eval: no checkpoint in {workdir / 'checkpoints'}; train first")
  strict = config.train.get("strict_restore", False)
  mngr = checkpointing.manager(workdir, max_to_keep=config.train.keep_checkpoints)
  writer = EventWriter(workdir / "tensorboard")
  stopped_by = None

  if config.mode == "eval":
    state, _ = checkpointing.restore_latest(mngr, abstract_state, None, strict=strict)
  else:
    data_iter = job.iterator(per_process_batch)
    if not has_checkpoints:
      state = jax.jit(job.init_fn, out_shardings=repl)(init_rng)
      if config.train.get("init_from"):
        if job.init_from is None:
          raise ValueError(f"train.init_from is not supported for task={config.task!r}")
        state = job.init_from(state, config.train.init_from)
      logging.info("Initialized %s", job.describe(state))
    else:
      state, damaged = checkpointing.restore_latest(mngr, abstract_state, data_iter, strict=strict)
      if damaged:
        checkpointing.set_aside(mngr, workdir, damaged)
      logging.info("Resuming from step %d", int(state.step))
    _write_config(workdir, config)
    periodic = PeriodicEval(config.eval, config.train.num_steps, workdir, job.evaluator, mesh, writer)
    state, stopped_by = _train(config, job, mesh, state, data_iter, step_rng, mngr, writer, periodic)
  checkpointing.wait(mngr)
  mngr.close()

  if stopped_by:
    logging.warning("Stopped by %s at step %d of %d; the checkpoint is in %s. Run the same command "
                    "again to resume.", stopped_by, int(state.step), config.train.num_steps, mngr.directory)
    writer.close()
    return {"step": int(state.step), "finished": False, "stopped_by": stopped_by}
  if int(state.step) < config.train.num_steps:
    logging.info("Stopped at step %d of %d (train.steps_per_run); run again to resume.",
                 int(state.step), config.train.num_steps)
    writer.close()
    return {"step": int(state.step), "finished": False}
  results = job.evaluator(job.eval_variables(state), mesh, int(state.step), writer)
  if jax.process_index() == 0:
    write_results(workdir, results)
    print(job.evaluator.table(results))
  writer.close()
  return results


def write_results(workdir: fileio.PathLike, results: dict[str, Any]) -> None:
  """Atomically writes ``eval/step_N.json`` and ``results.json`` (the latest)."""
  workdir = fileio.path(workdir)
  fileio.write_json(workdir / "eval" / f"step_{results['step']}.json", results)
  fileio.write_json(workdir / "results.json", results)


def _write_config(workdir, config: ml_collections.ConfigDict) -> None:
  """workdir/config.json: what evaluation needs to rebuild the network (atomic write)."""
  if jax.process_index() == 0:
    fileio.write_text(workdir / "config.json", config.to_json_best_effort(indent=2))


MAX_STEPS_IN_FLIGHT = 2  # dispatched steps the host may run ahead of the devices


def _train(config, job: Job, mesh, state, data_iter, rng, mngr, writer, periodic: PeriodicEval | None = None):
  """Runs the steps; returns (state, name of the signal that stopped it or None).

  ``periodic`` evaluates at eval.every_steps (and, on resuming, a step a signal stopped before it).

  The host dispatches at most ``MAX_STEPS_IN_FLIGHT`` steps ahead of the devices (it waits for
  the step before last): enough to keep an accelerator's queue full, and a bound on the work
  queued in the runtime (unbounded queues of small CPU computations have aborted XLA's CPU
  client in long test runs).
  """
  tcfg = config.train
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  p_train_step = jax.jit(job.train_step, in_shardings=(repl, batched, repl, repl), out_shardings=(repl, repl),
                         donate_argnums=(0,))
  frozen = jax.device_put(job.frozen, repl)
  start = int(state.step)
  if start >= tcfg.num_steps:
    logging.info("Checkpoint is at step %d >= train.num_steps=%d: nothing to train", start, tcfg.num_steps)
    return state, None
  stop = tcfg.num_steps if not tcfg.get("steps_per_run") else min(tcfg.num_steps, start + tcfg.steps_per_run)
  progress = Progress(tcfg.num_steps, start)
  acc, count, checked, stopped_by = None, 0, start, None
  in_flight: collections.deque = collections.deque()
  if periodic and periodic.due(start):
    periodic.run(job.eval_variables(state), start)
  with preemption.StopSignals(mesh, lag=MAX_STEPS_IN_FLIGHT) as signals:
    for step in range(start, stop):
      batch = sharding.to_global(next(data_iter), mesh)
      state, m = p_train_step(state, batch, frozen, rng)
      in_flight.append(jax.tree.leaves(m)[0])
      checkpointing.check_saves(mngr)  # a failed asynchronous save stops the run here, not a save later
      if len(in_flight) > MAX_STEPS_IN_FLIGHT:
        in_flight.popleft().block_until_ready()
      acc = m if acc is None else jax.tree.map(jnp.add, acc, m)  # on the device, asynchronously
      count += 1
      done = step + 1
      stopped_by = signals.poll()  # agreed by all processes, a step or two late: no host sync
      is_log = done % tcfg.log_every == 0 or done == stop or done == start + 1 or stopped_by
      is_ckpt = done % tcfg.checkpoint_every == 0 or done == stop or stopped_by
      if is_log or is_ckpt:
        values = {k: float(v) / count for k, v in jax.device_get(acc).items()}
        if values["nonfinite"] > 0:
          mngr.wait_until_finished()
          raise FloatingPointError(
              f"Non-finite loss or gradients between steps {checked + 1} and {done}; training stopped. "
              f"The last good checkpoint (step {mngr.latest_step()}) in {mngr.directory} is intact. "
              "Lower optimizer.learning_rate or check the input data.")
        checked = done
        if is_log:
          values.pop("nonfinite")
          writer.scalars(done, {f"train/{k}": v for k, v in values.items()})
          progress.line(done, values)
          acc, count = None, 0
        if is_ckpt:
          checkpointing.save(mngr, done, state, data_iter, config)
      if stopped_by:
        break
      if periodic and periodic.due(done):
        progress.exclude(periodic.run(job.eval_variables(state), done))
    checkpointing.wait(mngr)  # a signal arriving now is still caught: the checkpoint completes
    stopped_by = stopped_by or signals.requested()  # e.g. during the last save: skip the evaluation
  writer.flush()
  return state, stopped_by
