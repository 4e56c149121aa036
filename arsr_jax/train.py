"""``train_and_evaluate(config, workdir)``: the one training loop of arsr_jax.

``config.task`` picks what is trained: an SR network ('sr', every recipe of
configs/) or an action recognizer on HR clips ('recognition'); a ``Job``
holds what differs (init, step, data, evaluation) and one loop runs both.
'evaluate' runs the recognition-based protocol (evaluation/protocol.py).

Data-parallel over every device of every process: the batch is sharded on the
mesh's ``data`` axis, the train state is replicated, created directly on the
devices (``jit`` with ``out_shardings``) or restored from the latest Orbax
checkpoint in ``workdir`` together with the input iterator. After training
(or with ``config.mode = 'eval'``) the network is evaluated; results go to
``workdir/results.json``, and the run's config to ``workdir/config.json``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from arsr_jax import checkpointing, config_lib, losses, models, optim, sharding, steps, weights
from arsr_jax.data import pipeline
from arsr_jax.evaluation import sr_eval
from arsr_jax.writers import EventWriter, Progress

MODES = ("train", "eval")
TASKS = ("sr", "recognition", "evaluate")


def compute_dtype(name: str):
  """'auto' = bfloat16 on GPU/TPU, float32 on CPU; parameters always stay float32."""
  if name == "auto":
    name = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"Unknown compute_dtype {name!r}; use auto, float32 or bfloat16")
  return jnp.dtype(name)


def net_kwargs(section: ml_collections.ConfigDict, family, dtype) -> dict[str, Any]:
  kwargs = {k: v for k, v in section.to_dict().items() if k != "name"}
  if models.accepts(section.name, "dtype", family) and "dtype" not in kwargs:
    kwargs["dtype"] = dtype
  return kwargs


def build(config: ml_collections.ConfigDict):
  """Networks, objective (+ its frozen variables), optimizer and schedule named by the config."""
  check(config)
  dtype = compute_dtype(config.compute_dtype)
  model = models.build_model(config.model.name, config.scale, **net_kwargs(config.model, models.MODELS, dtype))
  discriminator = None
  if config.discriminator.get("name"):
    discriminator = models.build_discriminator(
        config.discriminator.name, **net_kwargs(config.discriminator, models.DISCRIMINATORS, dtype))
  objective, frozen = losses.build_objective(config.loss, dtype)
  pipeline.flow_fn(config)  # validates data.flow_source and data.tvl1 early
  steps_total = config.train.num_steps
  schedule = optim.build_schedule(config.optimizer, steps_total)
  tx = optim.build_optimizer(config.optimizer, steps_total)
  if discriminator is None:
    tx = optim.per_network({"generator": tx})
  else:
    tx = optim.per_network({"generator": tx,
                            "discriminator": optim.build_optimizer(config.optimizer_d, steps_total)})
  return Built(model, discriminator, objective, frozen, tx, schedule)


def check(config: ml_collections.ConfigDict) -> None:
  config_lib.validate(config)
  if config.mode not in MODES:
    raise ValueError(f"Unknown mode {config.mode!r}; use one of {MODES}")
  if config.task not in TASKS:
    raise ValueError(f"Unknown task {config.task!r}; use one of {TASKS}")


@dataclasses.dataclass(frozen=True)
class Built:
  model: Any
  discriminator: Any
  objective: Any
  frozen: Any
  tx: Any
  schedule: Any


def _init_shapes(config, model) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Shapes of one network input (LR frame, K-window or clip) and one HR frame."""
  d, h = config.data, config.data.patch_size // config.scale
  frames = () if steps.input_ndim(model) == 4 else (d.input_frames if d.input_frames > 1 else d.clip_length,)
  return (1, *frames, h, h, 3), (1, d.patch_size, d.patch_size, 3)


@dataclasses.dataclass(frozen=True)
class Job:
  """What a task trains and how it is evaluated; ``train_and_evaluate`` runs any Job.

  init_fn: rng -> TrainState (jitted with replicated out_shardings).
  train_step: (state, batch, frozen, rng) -> (state, clu metrics with 'nonfinite').
  frozen: fixed variables the step reads (e.g. VGG features), replicated.
  iterator: per-process batch size -> checkpointable grain iterator.
  evaluate: (state, mesh, writer) -> results dict (JSON-able, with 'step').
  table: results -> markdown.
  """
  init_fn: Callable[[jax.Array], steps.TrainState]
  train_step: Callable
  frozen: Any
  iterator: Callable[[int], Any]
  evaluate: Callable
  table: Callable[[dict[str, Any]], str]
  describe: Callable[[steps.TrainState], str]


def sr_job(config: ml_collections.ConfigDict) -> Job:
  """The SR recipes: generator (+ discriminator), objective, SR-quality evaluation."""
  b = build(config)
  lr_shape, hr_shape = _init_shapes(config, b.model)
  init_fn = steps.make_init_fn(b.model, b.tx, lr_shape, b.discriminator, hr_shape,
                               ema=bool(config.train.ema_decay))
  aux_names = _aux_names(b.objective, b.frozen, config, b.model)
  train_step, _ = steps.make_train_step(b.model, b.objective, b.tx, b.schedule, aux_names, b.discriminator,
                                        config.loss.get("gan_weight", 0.0), config.loss.get("gan_type", "ragan"),
                                        _call_kwargs(config), pipeline.flow_fn(config), config.train.ema_decay)

  def evaluate(state, mesh, writer):
    generator = state.ema_params if state.ema_params is not None else state.params["generator"]
    variables = {"params": generator, **state.model_state["generator"]}
    return sr_eval.evaluate(config, b.model, variables, mesh, writer, int(state.step))

  def describe(state):
    n = sum(x.size for x in jax.tree.leaves(state.params["generator"]))
    return f"{config.model.name}: {n} generator parameters"

  return Job(init_fn, train_step, b.frozen, lambda batch: pipeline.train_iterator(config, batch, config.seed),
             evaluate, sr_eval.results_table, describe)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from ``workdir`` if it holds checkpoints), then evaluates.

  Returns the evaluation results (also in ``workdir/results.json``), or
  {'step', 'finished': False} when ``train.steps_per_run`` stopped early.
  """
  check(config)
  if config.task == "evaluate":
    from arsr_jax.evaluation import protocol  # noqa: PLC0415
    return protocol.run(config, workdir)
  if config.task == "recognition":
    from arsr_jax.recognition import task  # noqa: PLC0415
    job = task.recognition_job(config)  # resolves config.recognizer.num_classes
  else:
    job = sr_job(config)
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  per_process_batch = sharding.check_batch_size(config.train.batch_size, mesh)
  sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  abstract_state = checkpointing.abstract(jax.eval_shape(job.init_fn, init_rng), repl)
  mngr = checkpointing.manager(workdir, max_to_keep=config.train.keep_checkpoints)
  latest = mngr.latest_step()
  writer = EventWriter(os.path.join(workdir, "tensorboard"))

  if config.mode == "eval":
    if latest is None:
      raise FileNotFoundError(f"mode=eval: no checkpoint in {mngr.directory}; train first")
    state = checkpointing.restore(mngr, latest, abstract_state, None, config)
  else:
    data_iter = job.iterator(per_process_batch)
    if latest is None:
      state = jax.jit(job.init_fn, out_shardings=repl)(init_rng)
      if config.train.get("init_from"):
        state = _init_from(state, config.train.init_from, repl)
      logging.info("Initialized %s", job.describe(state))
    else:
      state = checkpointing.restore(mngr, latest, abstract_state, data_iter, config)
      logging.info("Resuming from step %d", int(state.step))
    _write_config(workdir, config)
    state = _train(config, job, mesh, state, data_iter, step_rng, mngr, writer)
  mngr.wait_until_finished()
  mngr.close()

  if int(state.step) < config.train.num_steps:
    logging.info("Stopped at step %d of %d (train.steps_per_run); run again to resume.",
                 int(state.step), config.train.num_steps)
    writer.close()
    return {"step": int(state.step), "finished": False}
  results = job.evaluate(state, mesh, writer)
  if jax.process_index() == 0:
    sr_eval.write_results(workdir, results)
    print(job.table(results))
  writer.close()
  return results


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """workdir/config.json: what evaluation needs to rebuild the network (atomic write)."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  os.replace(path + ".tmp", path)


def _init_from(state: steps.TrainState, workdir: str, sharding_: jax.sharding.Sharding) -> steps.TrainState:
  """Copies the generator parameters of ``workdir``'s latest checkpoint into ``state``.

  ``workdir`` may also be an official ESRGAN/BasicSR RRDBNet ``.pth`` file
  (models/convert.py), for a ``rrdbnet`` generator.

  The source must be a sub-network of the new generator (same names and
  shapes): a smaller progressive stage into a bigger one, a PSNR-trained
  generator into a GAN, DUF into ToSR2. New tensors keep their initialization.
  """
  if workdir.endswith((".pth", ".pt")):  # official ESRGAN / BasicSR RRDBNet weights
    from arsr_jax.models import convert  # noqa: PLC0415
    params = convert.load_rrdbnet_weights(workdir, jax.device_get(state.params["generator"]))
    logging.info("Initialized the generator from the PyTorch state dict %s", workdir)
    params = jax.device_put(params, sharding_)
    ema = params if state.ema_params is not None else None
    return state.replace(params=dict(state.params, generator=params), ema_params=ema)
  step, source = checkpointing.load_latest_state(workdir)
  src = weights.flatten(source["params"]["generator"])
  dst = weights.flatten(jax.device_get(state.params["generator"]))
  missing = [k for k in src if k not in dst]
  bad = [f"{k}: {tuple(src[k].shape)} vs {tuple(dst[k].shape)}" for k in src
         if k in dst and tuple(src[k].shape) != tuple(dst[k].shape)]
  if missing or bad:
    raise ValueError(f"train.init_from={workdir} (step {step}) is not a sub-network of this generator: "
                     + "; ".join(f"{what} {items[:6]}" for what, items in
                                 (("not in this model:", missing), ("shape mismatch:", bad)) if items))
  merged = weights.unflatten({k: src.get(k, v) for k, v in dst.items()})
  logging.info("Initialized %d of %d generator tensors from %s (step %d)", len(src), len(dst), workdir, step)
  merged = jax.device_put(merged, sharding_)
  ema = merged if state.ema_params is not None else None
  return state.replace(params=dict(state.params, generator=merged), ema_params=ema)


def _call_kwargs(config):
  """Extra network arguments per step: the progressive fade-in alpha 0 -> 1 over train.fade_steps."""
  fade = config.train.get("fade_steps")
  if not fade:
    return lambda step: {}
  return lambda step: {"alpha": jnp.clip(step.astype(jnp.float32) / fade, 0.0, 1.0)}


def _train(config, job: Job, mesh, state, data_iter, rng, mngr, writer):
  tcfg = config.train
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  p_train_step = jax.jit(job.train_step, in_shardings=(repl, batched, repl, repl), out_shardings=(repl, repl),
                         donate_argnums=(0,))
  frozen = jax.device_put(job.frozen, repl)
  start = int(state.step)
  if start >= tcfg.num_steps:
    logging.info("Checkpoint is at step %d >= train.num_steps=%d: nothing to train", start, tcfg.num_steps)
    return state
  stop = tcfg.num_steps if not tcfg.get("steps_per_run") else min(tcfg.num_steps, start + tcfg.steps_per_run)
  progress = Progress(tcfg.num_steps, start)
  acc, checked = None, start
  for step in range(start, stop):
    batch = sharding.to_global(next(data_iter), mesh)
    state, m = p_train_step(state, batch, frozen, rng)
    acc = m if acc is None else acc.merge(m)
    done = step + 1
    is_log = done % tcfg.log_every == 0 or done == stop
    is_ckpt = done % tcfg.checkpoint_every == 0 or done == stop
    if is_log or is_ckpt:
      values = {k: float(v) for k, v in acc.compute().items()}
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
        acc = None
      if is_ckpt:
        checkpointing.save(mngr, done, state, data_iter, config)
  writer.flush()
  return state


def _aux_names(objective, frozen, config, model) -> list[str]:
  """Names of the objective's logged terms (traced abstractly on one example)."""
  sampler = pipeline.sample_patch(config).sampler  # validated
  _, hr_shape = _init_shapes(config, model)
  p, span = config.data.patch_size, {"frame": (), "pair": (2,), "clip": (config.data.clip_length,)}
  lead = (1,) + span[sampler]
  flow_lead = (1, config.data.clip_length) if sampler == "clip" else (1,)
  batch = {"hr": jax.ShapeDtypeStruct(lead + hr_shape[1:], jnp.float32),
           "flow": jax.ShapeDtypeStruct(flow_lead + (p, p, 2), jnp.float32)}
  if config.data.with_labels:
    from arsr_jax.data import recognition_data  # noqa: PLC0415
    multi = recognition_data.is_multilabel(config)
    batch["label"] = jax.ShapeDtypeStruct((1, recognition_data.num_classes(config)) if multi else (1,),
                                          jnp.float32 if multi else jnp.int32)
  if config.model.get("attention"):
    batch["attention"] = jax.ShapeDtypeStruct(lead + hr_shape[1:-1] + (1,), jnp.float32)
  _, aux = jax.eval_shape(objective, batch["hr"], batch, frozen)
  return sorted(aux)
