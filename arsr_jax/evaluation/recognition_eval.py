"""Recognizer evaluator: accuracy (or macro F1) of an action recognizer on the HR eval split.

TSN's test sampling (eval.num_segments segments per video, one centre view); two-head
networks (ST-ResNet) are scored by their fusion (its own 1 : 1 unless protocol.fusion_weights
is set) and per stream. This is the
protocol's 'hr' ceiling for one network.
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from arsr_jax import sharding
from arsr_jax.data import recognition_data
from arsr_jax.evaluation import batched
from arsr_jax.metrics import recognition as recognition_metrics
from arsr_jax.steps import recognition as rec_steps
from arsr_jax.writers import EventWriter, markdown_table


class RecognitionEvaluator:
  """``evaluator(variables, mesh, step, writer) -> results`` for a recognizer built from a config."""

  def __init__(self, config: ml_collections.ConfigDict, model, kind: str, prepare=None):
    """``prepare(batch) -> batch``: runs in the eval step first (the frozen SR of data.sr_input)."""
    self.config, self.model, self.kind = config, model, kind
    self.eval_step = rec_steps.make_eval_step(model, kind, prepare)

  def logits(self, variables, mesh) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(logits per head (N, C), labels) of every eval video, in split order."""
    per_process = sharding.check_batch_size(self.config.eval.batch_size, mesh, "eval.batch_size")
    batches = batched.padded_batches(recognition_data.eval_items(self.config, self.kind), per_process,
                                     f"eval split of {self.config.data.name}")
    total = batched.num_batches(recognition_data.eval_count(self.config), per_process)
    out = batched.map_batches(lambda b: self.eval_step(variables, b), batches, mesh, ride_along=("label",),
                              total=total, what="eval batches", desc=f"evaluating {self.config.recognizer.name}")
    labels = out.pop("label")
    out.pop(batched.INDEX)
    return out, labels

  def __call__(self, variables, mesh, step: int, writer: EventWriter | None = None) -> dict[str, Any]:
    config = self.config
    logits, labels = self.logits(variables, mesh)
    weights = rec_steps.fusion_weights(True, tuple(config.protocol.fusion_weights))  # two heads: ST-ResNet
    fused = np.asarray(rec_steps.scores(logits, weights))
    results: dict[str, Any] = {"step": step, "dataset": config.data.name, "split": config.data.eval_split,
                               "recognizer": config.recognizer.name, "input": self.kind,
                               "sr_input": config.data.get("sr_input", ""),
                               "num_videos": int(labels.shape[0]), "num_segments": config.eval.num_segments}
    results.update(score_summary(fused, labels, config.recognizer.num_classes, config.protocol.threshold))
    if "spatial" in logits:
      results["spatial_accuracy"] = recognition_metrics.accuracy(logits["spatial"], labels) if labels.ndim == 1 else None
      results["temporal_accuracy"] = recognition_metrics.accuracy(logits["temporal"], labels) if labels.ndim == 1 else None
    if writer is not None:
      writer.scalars(step, {f"eval/{k}": v for k, v in results.items()
                            if isinstance(v, float) and (k.endswith("accuracy") or k == "macro_f1")})
      writer.flush()
    return results

  @staticmethod
  def table(results: dict[str, Any]) -> str:
    frames = f"{results['sr_input']} SR of" if results.get("sr_input") else "HR"
    head = (f"\n{results['recognizer']} ({results['input']}) on {frames} {results['dataset']}:{results['split']}, "
            f"{results['num_videos']} videos, step {results['step']}\n")
    keys = [k for k in ("accuracy", "spatial_accuracy", "temporal_accuracy", "macro_f1")
            if results.get(k) is not None]
    return head + markdown_table(keys, [[f"{100 * results[k]:.2f}" for k in keys]])


def score_summary(score: np.ndarray, labels: np.ndarray, num_classes: int, threshold: float) -> dict[str, Any]:
  """accuracy + per-class accuracy (single-label) or macro F1 + per-class F1 (multi-label, sigmoid)."""
  if labels.ndim == 2:
    pred = recognition_metrics.multilabel_predictions(1.0 / (1.0 + np.exp(-score)), threshold)
    f1, per_class = recognition_metrics.macro_f1(pred, labels.astype(bool))
    return {"macro_f1": float(f1), "per_class_f1": [float(x) for x in per_class]}
  per_class = recognition_metrics.per_class_accuracy(score, labels, num_classes)
  return {"accuracy": float(recognition_metrics.accuracy(score, labels)),
          "per_class_accuracy": [None if np.isnan(x) else float(x) for x in per_class]}
