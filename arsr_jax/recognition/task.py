"""``config.task='recognition'``: train an action recognizer on HR clips, evaluate it on HR.

The trained recognizer is the frozen black box of the evaluation protocol
(evaluation/protocol.py), which restores it from this run's workdir. Here it
is evaluated on the HR test videos with TSN's test sampling (eval.num_segments
segments) -- the protocol's 'hr' ceiling for this one network.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from arsr_jax import optim, recognition, sharding
from arsr_jax.data import recognition_data
from arsr_jax.evaluation import recognition_metrics as rm
from arsr_jax.recognition import train_steps


def recognition_job(config: ml_collections.ConfigDict):
  """The ``train.Job`` of a recognizer; sets ``config.recognizer.num_classes`` from the data."""
  from arsr_jax import train  # noqa: PLC0415  (train imports this module lazily)
  if not config.recognizer.get("name"):
    raise ValueError(f"task='recognition' needs recognizer.name; one of {sorted(recognition.RECOGNIZERS)}")
  kind = recognition_data.input_kind(config.recognizer)
  n = recognition_data.num_classes(config)
  have = config.recognizer.get("num_classes")
  if have not in (None, n):
    raise ValueError(f"recognizer.num_classes={have} but {config.data.name} has {n} classes")
  with config.unlocked():
    config.recognizer.num_classes = n
    if kind in ("flow", "two_stream"):  # the network's input channels follow the data's flow stacks
      length = config.recognizer.get("new_length")
      if length not in (None, config.data.new_length):
        raise ValueError(f"recognizer.new_length={length} differs from data.new_length={config.data.new_length}")
      config.recognizer.new_length = config.data.new_length
  dtype = train.compute_dtype(config.compute_dtype)
  model = recognition.build_recognizer(config.recognizer.name,
                                       **train.net_kwargs(config.recognizer, recognition.RECOGNIZERS, dtype))
  schedule = optim.build_schedule(config.optimizer, config.train.num_steps)
  tx = optim.per_network({"recognizer": optim.build_optimizer(config.optimizer, config.train.num_steps)})
  source = recognition_data.recognition_source(config, config.data.train_split, kind)
  example = recognition_data.sampler(config, kind, train=True).sample(source[0], None)
  init_fn = train_steps.make_init_fn(model, tx, kind, example)

  def evaluate(state, mesh, writer):
    variables = {"params": state.params["recognizer"], **state.model_state["recognizer"]}
    results = evaluate_hr(config, model, kind, variables, mesh)
    results["step"] = int(state.step)
    writer.scalars(results["step"], {f"eval/{k}": v for k, v in results.items()
                                     if isinstance(v, float) and (k.endswith("accuracy") or k == "macro_f1")})
    writer.flush()
    return results

  def describe(state):
    n_params = sum(x.size for x in jax.tree.leaves(state.params["recognizer"]))
    return f"{config.recognizer.name} ({kind} input, {n} classes): {n_params} parameters"

  return train.Job(init_fn, train_steps.make_train_step(model, tx, schedule, kind), {},
                   lambda batch: recognition_data.train_iterator(config, kind, batch, config.seed),
                   evaluate, results_table, describe)


def collect_logits(eval_step, variables, batches, mesh) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
  """Runs ``eval_step`` over padded batches; returns (logits per head, labels, valid) on the host."""
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  p_eval = jax.jit(eval_step, in_shardings=(repl, batched), out_shardings=batched)
  logits: dict[str, list[np.ndarray]] = {}
  labels, valid = [], []
  for batch in batches:
    out = p_eval(variables, sharding.to_global({k: v for k, v in batch.items() if k not in ("label", "valid")},
                                               mesh))
    out = multihost_utils.process_allgather(out, tiled=True) if jax.process_count() > 1 else jax.device_get(out)
    for k, v in out.items():
      logits.setdefault(k, []).append(np.asarray(v))
    lab = {"label": batch["label"], "valid": batch["valid"]}
    if jax.process_count() > 1:
      lab = multihost_utils.process_allgather(lab, tiled=True)
    labels.append(np.asarray(lab["label"]))
    valid.append(np.asarray(lab["valid"]))
  valid_all = np.concatenate(valid).astype(bool)
  return ({k: np.concatenate(v)[valid_all] for k, v in logits.items()}, np.concatenate(labels)[valid_all],
          valid_all)


def evaluate_hr(config, model, kind: str, variables, mesh) -> dict[str, Any]:
  """Accuracy of the recognizer on the HR eval split (TSN test sampling)."""
  per_process = sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  batches = recognition_data.eval_batches(config, kind, per_process)
  logits, labels, _ = collect_logits(train_steps.make_eval_step(model, kind), variables, batches, mesh)
  fused = np.asarray(train_steps.scores(logits, tuple(config.evaluate.fusion_weights)))
  results: dict[str, Any] = {"dataset": config.data.name, "split": config.data.eval_split,
                             "recognizer": config.recognizer.name, "input": kind,
                             "num_videos": int(labels.shape[0]), "num_segments": config.eval.num_segments}
  results.update(score_summary(fused, labels, config.recognizer.num_classes, config.evaluate.threshold))
  if "spatial" in logits:
    results["spatial_accuracy"] = rm.accuracy(logits["spatial"], labels) if labels.ndim == 1 else None
    results["temporal_accuracy"] = rm.accuracy(logits["temporal"], labels) if labels.ndim == 1 else None
  return results


def score_summary(score: np.ndarray, labels: np.ndarray, num_classes: int, threshold: float) -> dict[str, Any]:
  """accuracy + per-class accuracy (single-label) or macro F1 + per-class F1 (multi-label, sigmoid)."""
  if labels.ndim == 2:
    pred = rm.multilabel_predictions(1.0 / (1.0 + np.exp(-score)), threshold)
    f1, per_class = rm.macro_f1(pred, labels.astype(bool))
    return {"macro_f1": float(f1), "per_class_f1": [float(x) for x in per_class]}
  per_class = rm.per_class_accuracy(score, labels, num_classes)
  return {"accuracy": float(rm.accuracy(score, labels)),
          "per_class_accuracy": [None if np.isnan(x) else float(x) for x in per_class]}


def results_table(results: dict[str, Any]) -> str:
  head = (f"\n{results['recognizer']} ({results['input']}) on HR {results['dataset']}:{results['split']}, "
          f"{results['num_videos']} videos, step {results['step']}\n")
  keys = [k for k in ("accuracy", "spatial_accuracy", "temporal_accuracy", "macro_f1") if results.get(k) is not None]
  return head + "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n| " + " | ".join(
      f"{100 * results[k]:.2f}" for k in keys) + " |"
