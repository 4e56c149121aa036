"""SR quality evaluation: bicubic vs the model on the eval split.

PSNR/SSIM on Y (border crop = scale) over all pixels and over moving pixels
(|HR flow| > eval.moving_threshold px), averaged over every HR frame of the
split. Results are a JSON-able dict, written to ``workdir/results.json`` and
``workdir/eval/step_N.json`` and rendered as a markdown table.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from arsr_jax import sharding, steps
from arsr_jax.data import degrade, pipeline
from arsr_jax.writers import EventWriter


def evaluate(config, model, variables, mesh, writer: EventWriter | None, step: int) -> dict[str, Any]:
  ecfg = config.eval
  per_process_batch = sharding.check_batch_size(ecfg.batch_size, mesh, "eval.batch_size")
  call_kwargs = {"alpha": 1.0} if config.train.get("fade_steps") else {}
  eval_step = steps.make_eval_step(model, ecfg.get("border", config.scale), ecfg.moving_threshold,
                                   call_kwargs, pipeline.flow_fn(config))
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  p_eval = jax.jit(eval_step, in_shardings=(repl, batched), out_shardings=batched)
  per_frame: dict[str, list[np.ndarray]] = {}
  first = None
  for batch in pipeline.eval_batches(config, per_process_batch, ecfg.get("max_clips")):
    out = p_eval(variables, sharding.to_global(batch, mesh))
    out = multihost_utils.process_allgather(out, tiled=True) if jax.process_count() > 1 else jax.device_get(out)
    for k, v in out.items():
      per_frame.setdefault(k, []).append(np.asarray(v))
    first = batch if first is None else first
  vals = {k: np.concatenate(v) for k, v in per_frame.items()}
  valid = vals.pop("valid").astype(bool)
  results: dict[str, Any] = {"step": step, "dataset": config.data.name, "split": config.data.eval_split,
                             "scale": config.scale, "num_frames": int(valid.sum()),
                             "moving_threshold_px": ecfg.moving_threshold, "model_name": config.model.name}
  for method in ("bicubic", "model"):
    results[method] = {key: _nanmean(vals[f"{method}_{key}"][valid]) for key in steps.EVAL_KEYS}
  if writer is not None and first is not None:
    writer.scalars(step, {f"eval/{m}_{k}": v for m in ("bicubic", "model")
                          for k, v in results[m].items() if v is not None})
    write_samples(writer, step, model, variables, first, call_kwargs)
  return results


def _nanmean(x: np.ndarray) -> float | None:
  x = x[np.isfinite(x)]
  return float(x.mean()) if x.size else None


def write_samples(writer: EventWriter, step: int, model, variables, batch,
                  call_kwargs: dict[str, Any], n: int = 4) -> None:
  """LR (nearest-upscaled) | bicubic | SR | HR side by side, for the first frames.

  Panels are at the model's output size (intermediate progressive stages output less).
  """
  lr_in = jnp.asarray(batch["lr"][:n])
  sr, _ = steps.split_output(steps.apply_sr(model, variables, lr_in, train=False, **call_kwargs))
  hr = steps.match_target(sr, {"hr": jnp.asarray(batch["hr"][:n])})["hr"]
  lr = steps.lr_frames_for(lr_in, hr)
  factor = hr.shape[-2] // lr.shape[-2]
  bic = degrade.bicubic_upsample(lr, factor)
  lr_big = jnp.repeat(jnp.repeat(lr, factor, axis=-3), factor, axis=-2)
  fold = lambda x: np.clip(np.asarray(x).reshape((-1,) + x.shape[-3:])[:n], 0, 1)  # noqa: E731
  writer.images(step, {"eval/lr_bicubic_sr_hr": np.concatenate([fold(lr_big), fold(bic), fold(sr), fold(hr)],
                                                                axis=2)})
  writer.flush()


def write_results(workdir: str, results: dict[str, Any]) -> None:
  """Atomically writes results.json (latest) and eval/step_N.json."""
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  for path in (os.path.join(workdir, "eval", f"step_{results['step']}.json"),
               os.path.join(workdir, "results.json")):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(results, f, indent=2)
    os.replace(tmp, path)


def results_table(results: dict[str, Any]) -> str:
  """Markdown table of the eval results."""
  rows = [f"\nEval at step {results['step']} on {results['dataset']}:{results['split']} "
          f"({results['num_frames']} frames, x{results['scale']}, moving = |flow| > "
          f"{results['moving_threshold_px']} px)\n",
          "| method | PSNR-Y | SSIM-Y | PSNR-Y moving | SSIM-Y moving |", "|---|---|---|---|---|"]
  for method in ("bicubic", "model"):
    r = results[method]
    name = results["model_name"] if method == "model" else method
    cells = [f"{r[k]:.3f}" if r[k] is not None else "n/a" for k in steps.EVAL_KEYS]
    rows.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(rows)
