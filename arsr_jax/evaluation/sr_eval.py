"""SR quality evaluator: bicubic vs the model on the eval split.

PSNR/SSIM on Y (border crop: ``metrics.image.border_for``, the scale unless
eval.border) over all pixels and over moving pixels (|HR flow| >
eval.moving_threshold px), averaged over every HR frame of the split. Results
are a JSON-able dict (the job writes ``results.json`` and ``eval/step_N.json``)
rendered by ``table`` as markdown.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from arsr_jax import sharding
from arsr_jax.data import pipeline
from arsr_jax.evaluation import batched
from arsr_jax.media import degrade
from arsr_jax.metrics import image as image_metrics
from arsr_jax.steps import sr as sr_steps
from arsr_jax.writers import EventWriter, markdown_table

METHODS = ("bicubic", "model")


class SREvaluator:
  """``evaluator(variables, mesh, step, writer) -> results`` for an SR network built from a config."""

  def __init__(self, ecfg: ml_collections.ConfigDict, data: ml_collections.ConfigDict, model, *, scale: int,
               name: str, faded: bool = False):
    """``ecfg``, ``data``: the config's eval and data sections; ``name`` the model's (results);
    ``faded``: a progressive network, evaluated with its fade-in complete (alpha 1)."""
    self.ecfg, self.data, self.model, self.scale, self.name = ecfg, data, model, scale, name
    self.call_kwargs = {"alpha": 1.0} if faded else {}
    self.eval_step = sr_steps.make_eval_step(model, image_metrics.border_for(scale, ecfg.get("border")),
                                             ecfg.moving_threshold, self.call_kwargs, pipeline.flow_fn(data))

  def __call__(self, variables, mesh, step: int, writer: EventWriter | None = None) -> dict[str, Any]:
    ecfg, data = self.ecfg, self.data
    per_process = sharding.check_batch_size(ecfg.batch_size, mesh, "eval.batch_size")
    first: list[dict[str, np.ndarray]] = []

    def items():
      for item in pipeline.eval_items(data, ecfg.get("max_clips")):
        if len(first) < 4:
          first.append(item)
        yield item

    batches = batched.padded_batches(items(), per_process, f"eval split of {data.name}")
    total = batched.num_batches(pipeline.eval_item_count(data, ecfg.get("max_clips")), per_process)
    vals = batched.map_batches(lambda b: self.eval_step(variables, b), batches, mesh, total=total,
                               what="eval batches", desc=f"evaluating {self.name}")
    results: dict[str, Any] = {"step": step, "dataset": data.name, "split": data.eval_split,
                               "scale": self.scale, "num_frames": int(vals["bicubic_psnr"].size),
                               "moving_threshold_px": ecfg.moving_threshold, "model_name": self.name}
    for method in METHODS:
      results[method] = {key: image_metrics.mean_of(vals[f"{method}_{key}"]) for key in sr_steps.EVAL_KEYS}
    if writer is not None:
      writer.scalars(step, {f"eval/{m}_{k}": v for m in METHODS for k, v in results[m].items() if v is not None})
      if first:
        write_samples(writer, step, self.model, variables, batched.stack_items(first), self.call_kwargs)
    return results

  @staticmethod
  def table(results: dict[str, Any]) -> str:
    return results_table(results)


def write_samples(writer: EventWriter, step: int, model, variables, batch,
                  call_kwargs: dict[str, Any], n: int = 4) -> None:
  """LR (nearest-upscaled) | bicubic | SR | HR side by side, for the first frames (one jitted call).

  Panels are at the model's output size (intermediate progressive stages output less).
  """
  @jax.jit
  def panels(variables, lr, hr):
    first = sr_steps.as_float({"lr": lr, "hr": hr})
    sr, _ = sr_steps.split_output(sr_steps.apply_sr(model, variables, first["lr"], train=False, **call_kwargs))
    hr = sr_steps.match_target(sr, {"hr": first["hr"]})["hr"]
    lr = sr_steps.lr_frames_for(first["lr"], hr)
    factor = hr.shape[-2] // lr.shape[-2]
    lr_big = jnp.repeat(jnp.repeat(lr, factor, axis=-3), factor, axis=-2)
    fold = lambda x: jnp.clip(x.reshape((-1,) + x.shape[-3:])[:n].astype(jnp.float32), 0, 1)  # noqa: E731
    return jnp.concatenate([fold(lr_big), fold(degrade.bicubic_upsample(lr, factor)), fold(sr), fold(hr)], axis=2)

  image = panels(variables, jnp.asarray(batch["lr"][:n]), jnp.asarray(batch["hr"][:n]))
  writer.images(step, {"eval/lr_bicubic_sr_hr": np.asarray(image)})
  writer.flush()


def results_table(results: dict[str, Any]) -> str:
  """Markdown table of the eval results."""
  rows = [[results["model_name"] if method == "model" else method, *(_fmt(results[method][k]) for k in sr_steps.EVAL_KEYS)]
          for method in METHODS]
  return (f"\nEval at step {results['step']} on {results['dataset']}:{results['split']} "
          f"({results['num_frames']} frames, x{results['scale']}, moving = |flow| > "
          f"{results['moving_threshold_px']} px)\n\n"
          + markdown_table(["method", "PSNR-Y", "SSIM-Y", "PSNR-Y moving", "SSIM-Y moving"], rows))


def _fmt(v: float | None) -> str:
  if v is None:
    return "n/a"
  return "inf" if not np.isfinite(v) else f"{v:.3f}"
