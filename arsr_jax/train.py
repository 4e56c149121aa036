"""``train_and_evaluate(config, workdir)``: the one training loop of arsr_jax.

Data-parallel over every device of every process: the batch is sharded on the
mesh's ``data`` axis, the train state is replicated, created directly on the
devices (``jit`` with ``out_shardings``) or restored from the latest Orbax
checkpoint in ``workdir`` together with the input iterator. After training
(or with ``config.mode = 'eval'``) the SR model is evaluated against bicubic;
results go to ``workdir/results.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from arsr_jax import checkpointing, losses, models, optim, sharding, steps
from arsr_jax.data import degrade, pipeline
from arsr_jax.writers import EventWriter, Progress

MODES = ("train", "eval")


def build(config: ml_collections.ConfigDict):
  """Model, objective, optimizer and schedule named by the config."""
  if config.mode not in MODES:
    raise ValueError(f"Unknown mode {config.mode!r}; use one of {MODES}")
  model_kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  model = models.build_model(config.model.name, config.scale, **model_kwargs)
  objective = losses.build_objective(config.loss)
  schedule = optim.build_schedule(config.optimizer, config.train.num_steps)
  tx = optim.build_optimizer(config.optimizer, config.train.num_steps)
  return model, objective, tx, schedule


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from ``workdir`` if it holds checkpoints), then evaluates."""
  model, objective, tx, schedule = build(config)
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  per_process_batch = sharding.check_batch_size(config.train.batch_size, mesh)
  sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  lr_patch = config.data.patch_size // config.scale
  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)

  init_fn = steps.make_init_fn(model, tx, (1, lr_patch, lr_patch, 3))
  abstract_state = checkpointing.abstract(jax.eval_shape(init_fn, init_rng), repl)
  mngr = checkpointing.manager(workdir, max_to_keep=config.train.keep_checkpoints)
  latest = mngr.latest_step()
  writer = EventWriter(os.path.join(workdir, "tensorboard"))

  if config.mode == "eval":
    if latest is None:
      raise FileNotFoundError(f"mode=eval: no checkpoint in {mngr.directory}; train first")
    state = checkpointing.restore(mngr, latest, abstract_state, None, config)
  else:
    data_iter = pipeline.train_iterator(config, per_process_batch, config.seed)
    if latest is None:
      state = jax.jit(init_fn, out_shardings=repl)(init_rng)
      logging.info("Initialized %s: %d parameters", config.model.name,
                   sum(x.size for x in jax.tree.leaves(state.params)))
    else:
      state = checkpointing.restore(mngr, latest, abstract_state, data_iter, config)
      logging.info("Resuming from step %d", int(state.step))
    state = _train(config, model, objective, tx, schedule, mesh, state, data_iter, step_rng, mngr, writer)
  mngr.wait_until_finished()
  mngr.close()

  if int(state.step) < config.train.num_steps:
    logging.info("Stopped at step %d of %d (train.steps_per_run); run again to resume.",
                 int(state.step), config.train.num_steps)
    writer.close()
    return {"step": int(state.step), "finished": False}
  variables = {"params": state.params, **state.model_state}
  results = evaluate(config, model, variables, mesh, writer, int(state.step))
  if jax.process_index() == 0:
    _write_results(workdir, results)
    print(results_table(results))
  writer.close()
  return results


def _train(config, model, objective, tx, schedule, mesh, state, data_iter, rng, mngr, writer):
  tcfg = config.train
  aux_names = _aux_names(objective, config)
  train_step, _ = steps.make_train_step(model, objective, tx, schedule, aux_names)
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  p_train_step = jax.jit(train_step, in_shardings=(repl, batched, repl), out_shardings=(repl, repl),
                         donate_argnums=(0,))
  start = int(state.step)
  if start >= tcfg.num_steps:
    logging.info("Checkpoint is at step %d >= train.num_steps=%d: nothing to train", start, tcfg.num_steps)
    return state
  stop = tcfg.num_steps if not tcfg.get("steps_per_run") else min(tcfg.num_steps, start + tcfg.steps_per_run)
  progress = Progress(tcfg.num_steps, start)
  acc, checked = None, start
  for step in range(start, stop):
    batch = sharding.to_global(next(data_iter), mesh)
    state, m = p_train_step(state, batch, rng)
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


def _aux_names(objective, config) -> list[str]:
  p = config.data.patch_size
  shapes = {"hr": (1, p, p, 3), "flow": (1, p, p, 2)}
  batch = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
  _, aux = jax.eval_shape(objective, jax.ShapeDtypeStruct((1, p, p, 3), jnp.float32), batch)
  return sorted(aux)


def evaluate(config, model, variables, mesh, writer: EventWriter, step: int) -> dict[str, Any]:
  """PSNR/SSIM (Y, border crop = scale) of bicubic and the model on the eval split."""
  ecfg = config.eval
  per_process_batch = sharding.check_batch_size(ecfg.batch_size, mesh, "eval.batch_size")
  eval_step = steps.make_eval_step(model, config.scale, ecfg.get("border", config.scale), ecfg.moving_threshold)
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  p_eval = jax.jit(eval_step, in_shardings=(repl, batched), out_shardings=batched)
  per_frame: dict[str, list[np.ndarray]] = {}
  first = None
  for batch in pipeline.eval_batches(config, per_process_batch, ecfg.get("max_clips")):
    out = p_eval(variables, sharding.to_global(batch, mesh))
    out = multihost_utils.process_allgather(out, tiled=True) if jax.process_count() > 1 else jax.device_get(out)
    for k, v in out.items():
      per_frame.setdefault(k, []).append(np.asarray(v))
    if first is None:
      first = batch
  vals = {k: np.concatenate(v) for k, v in per_frame.items()}
  valid = vals.pop("valid").astype(bool)
  results: dict[str, Any] = {"step": step, "dataset": config.data.name, "split": config.data.eval_split,
                             "scale": config.scale, "num_frames": int(valid.sum()),
                             "moving_threshold_px": ecfg.moving_threshold}
  for method in ("bicubic", "model"):
    results[method] = {key: _nanmean(vals[f"{method}_{key}"][valid]) for key in steps.EVAL_KEYS}
  results["model_name"] = config.model.name
  if first is not None:
    _write_samples(writer, step, model, variables, first, config.scale)
  return results


def _nanmean(x: np.ndarray) -> float | None:
  x = x[np.isfinite(x)]
  return float(x.mean()) if x.size else None


def _write_samples(writer: EventWriter, step: int, model, variables, batch, scale: int, n: int = 4) -> None:
  """LR (nearest-upscaled) | bicubic | SR | HR side by side, for the first frames."""
  lr = jnp.asarray(batch["lr"][:n])
  sr = jnp.clip(model.apply(variables, lr, train=False), 0, 1)
  bic = jnp.clip(degrade.bicubic_upsample(lr, scale), 0, 1)
  lr_big = jnp.repeat(jnp.repeat(lr, scale, axis=1), scale, axis=2)
  writer.images(step, {"eval/lr_bicubic_sr_hr": np.concatenate(
      [np.asarray(lr_big), np.asarray(bic), np.asarray(sr), batch["hr"][:n]], axis=2)})
  writer.flush()


def _write_results(workdir: str, results: dict[str, Any]) -> None:
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  for path in (os.path.join(workdir, "eval", f"step_{results['step']}.json"), os.path.join(workdir, "results.json")):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(results, f, indent=2)
    os.replace(tmp, path)


def results_table(results: dict[str, Any]) -> str:
  """Markdown table of the eval results."""
  head = "| method | PSNR-Y | SSIM-Y | PSNR-Y moving | SSIM-Y moving |"
  rows = [f"\nEval at step {results['step']} on {results['dataset']}:{results['split']} "
          f"({results['num_frames']} frames, x{results['scale']}, moving = |flow| > "
          f"{results['moving_threshold_px']} px)\n", head, "|---|---|---|---|---|"]
  for method in ("bicubic", "model"):
    r = results[method]
    name = results["model_name"] if method == "model" else method
    cells = [f"{r[k]:.3f}" if r[k] is not None else "n/a" for k in steps.EVAL_KEYS]
    rows.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(rows)
