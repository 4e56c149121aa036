"""``config.task='protocol'``: compare SR methods by how recognizable their output is.

  python -m arsr_jax.main --config configs/protocol.py --workdir DIR \\
      --config.protocol.spatial=W_RGB --config.protocol.temporal=W_FLOW \\
      --config.protocol.methods='bicubic,hr,vdsr=W_VDSR,sosr+tosr=W_SOSR:W_TOSR'

For every method (``protocol.methods``: bicubic, HR, or SR workdirs for the
spatial and the temporal stream) on the eval split: spatial, temporal and
fused accuracy of the frozen recognizers restored from their workdirs (scores
averaged over eval.num_segments segments and protocol.views test views, TSN's
10 by default; fusion by each recognizer's own rule, TSN 1 : 1.5, ST-ResNet
1 : 1, unless protocol.fusion_weights is set), per-class accuracy, PSNR/SSIM
(Y) of the SR frames, the warping error of consecutive SR frames under the HR
flow, and -- with a clip recognizer (I3D, 3D ResNets) -- clip-level accuracy,
or TinyVIRAT's macro F1 for multi-label data. Writes DIR/results.json, DIR/plots/ (method-vs-bicubic
per-class scatter plots, temporal profiles), TensorBoard images, and prints
the table. Per-video scores (and per-stream confusion matrices) are kept in
DIR/scores.npz for further analysis.

This module orchestrates; the per-method computations are steps/protocol.py,
the figures evaluation/plots.py and evaluation/profiles.py.
"""

from __future__ import annotations

import dataclasses
import io
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from arsr_jax import config_lib, fileio, precision, sharding
from arsr_jax.data import pipeline, recognition_data
from arsr_jax.evaluation import batched, frozen, plots, profiles
from arsr_jax.evaluation.recognition_eval import score_summary
from arsr_jax.flow import tvl1
from arsr_jax.metrics import image as image_metrics
from arsr_jax.metrics import recognition as recognition_metrics
from arsr_jax.steps import protocol as protocol_steps
from arsr_jax.steps import recognition as rec_steps
from arsr_jax.writers import EventWriter, markdown_table


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  spatial: str  # 'bicubic', 'hr' or an SR workdir
  temporal: str


def parse_methods(spec: str) -> list[Method]:
  """'bicubic,hr,vdsr=W1,sosr+tosr=W2:W3' -> Methods (one side = both streams)."""
  methods = []
  for entry in (e.strip() for e in spec.split(",") if e.strip()):
    name, _, sources = entry.partition("=")
    sources = sources or name
    spatial, colon, temporal = sources.partition(":")
    if not sources or (not colon and name not in (protocol_steps.BICUBIC, protocol_steps.HR) and "=" not in entry):
      raise ValueError(f"protocol.methods entry {entry!r}: use 'bicubic', 'hr' or NAME=SPATIAL[:TEMPORAL]")
    methods.append(Method(name, spatial, temporal or spatial))
  if not methods or len({m.name for m in methods}) != len(methods):
    raise ValueError(f"protocol.methods={spec!r}: need at least one method, with distinct names")
  return methods


def run(config, workdir: str) -> dict[str, Any]:
  """Evaluates every method of ``config.protocol.methods``; writes and returns the results."""
  e, d = config.protocol, config.data
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  dtype = precision.compute_dtype(config.compute_dtype)
  num_classes = recognition_data.num_classes(d)
  recs = _load_recognizers(e, repl, dtype, num_classes)
  for rec in recs.values():
    check_trained_on(rec, d.name, num_classes)
  source = pipeline.get_source(d.name, d.eval_split, d.get("data_dir"))
  n = len(source) if not config.eval.get("max_clips") else min(len(source), config.eval.max_clips)
  scale = _data_scale(config, source[0])
  srs = {}
  for m in parse_methods(e.methods):
    for src in (m.spatial, m.temporal):
      if src not in (protocol_steps.BICUBIC, protocol_steps.HR) and src not in srs:
        srs[src] = frozen.load_sr(src, repl, dtype)
        if srs[src].scale != scale:
          raise config_lib.Mismatch(
              f"SR checkpoint {src} is x{srs[src].scale}; {d.name}:{d.eval_split} has x{scale} LR")
  workdir = fileio.path(workdir)
  writer = EventWriter(workdir / "tensorboard")
  results: dict[str, Any] = {"dataset": d.name, "split": d.eval_split, "num_videos": n, "scale": scale,
                             "num_segments": config.eval.num_segments,
                             "recognizers": {k: r.source for k, r in recs.items()}, "methods": {}}
  if {"spatial", "temporal", "two_stream"} & set(recs):  # two-stream path: its test views and fusion
    results["views"] = e.views
    results["fusion_weights"] = list(rec_steps.fusion_weights("two_stream" in recs, tuple(e.fusion_weights)))
  all_scores, labels = {}, None
  for m in parse_methods(e.methods):
    start = time.perf_counter()
    sp, tp = (srs.get(x, x) for x in (m.spatial, m.temporal))
    out = {}
    two = {k: r for k, r in recs.items() if k in ("spatial", "temporal", "two_stream")}
    if two:
      out.update(_run_two_stream(config, source, n, sp, tp, two, mesh, scale, m.name))
    if "clip" in recs:
      out.update(_run_clips(config, source, n, sp, recs["clip"], mesh, scale, m.name))
    labels = out.pop("label")
    res, confusion = _summarize(out, labels, num_classes, e, results.get("fusion_weights"))
    res["seconds"] = round(time.perf_counter() - start, 2)
    res["sources"] = {"spatial": m.spatial, "temporal": m.temporal}
    results["methods"][m.name] = res
    all_scores.update({f"{m.name}/{k}": v for k, v in out.items()})
    all_scores.update({f"{m.name}/confusion_{k}": v for k, v in confusion.items()})
    logging.info("%s: %s (%.1f s)", m.name, {k: v for k, v in res.items() if isinstance(v, float)}, res["seconds"])
  if jax.process_index() == 0:
    plots.per_class_scatter(workdir, results, writer)
    methods = {"bicubic": protocol_steps.BICUBIC, **{sr.name: sr for sr in srs.values() if not sr.is_clip_model}}
    profiles.draw_profiles(workdir, source, methods, e.profiles, writer)
    buf = io.BytesIO()
    np.savez_compressed(buf, labels=labels, **all_scores)
    fileio.write_bytes(workdir / "scores.npz", buf.getvalue())
    fileio.write_json(workdir / "results.json", results)
    print(results_table(results))
  writer.close()
  return results


def _data_scale(config, first) -> int:
  """HR / LR size ratio of the data; natively small video (no HR) takes the SR methods' scale."""
  if "hr" in first and "lr" in first:
    return first["hr"].shape[1] // first["lr"].shape[1]
  scales = {frozen.load_run_config(src).scale for m in parse_methods(config.protocol.methods)
            for src in (m.spatial, m.temporal) if src not in (protocol_steps.BICUBIC, protocol_steps.HR)}
  if len(scales) > 1:
    raise ValueError(f"SR methods of different scales {sorted(scales)} on natively small video")
  return scales.pop() if scales else config.scale


def check_trained_on(rec: frozen.FrozenRecognizer, name: str, num_classes: int) -> None:
  """Refuses a recognizer trained on another dataset (or config: another frame size) than the
  evaluation data, naming both."""
  if not rec.dataset or rec.dataset == name:
    return
  size = f", {rec.input_size} px input" if rec.input_size else ""
  raise config_lib.Mismatch(f"Recognizer {rec.source} was trained on {rec.dataset} ({rec.num_classes} classes{size}); "
                            f"the evaluation data is {name} ({num_classes} classes). Evaluate on its data "
                            f"(--config.data.name={rec.dataset}; configs/protocol.py:smoke for smoke recognizers) "
                            f"or use recognizers trained on {name}.")


def _load_recognizers(e, repl, dtype, num_classes) -> dict[str, frozen.FrozenRecognizer]:
  recs = {}
  for key in ("spatial", "temporal", "two_stream", "clip"):
    if e.get(key):
      recs[key] = frozen.load_recognizer(e[key], repl, dtype, num_classes)
  want = {"spatial": ("rgb",), "temporal": ("flow",), "two_stream": ("two_stream",), "clip": ("clip",)}
  for key, rec in recs.items():
    if rec.kind not in want[key]:
      raise ValueError(f"protocol.{key}={rec.source} is a {rec.kind!r} recognizer; {key} needs {want[key]}")
  if not recs:
    raise ValueError("task='protocol' needs recognizers: protocol.spatial and/or protocol.temporal (TSN), "
                     "protocol.two_stream (ST-ResNet) or protocol.clip (I3D / 3D ResNet workdir, or "
                     f"'{frozen.I3D_KINETICS}')")
  if "two_stream" in recs and ({"spatial", "temporal"} & set(recs)):
    raise ValueError("Give protocol.two_stream or protocol.spatial/temporal, not both")
  return recs


def _run_two_stream(config, source, n, sp, tp, recs, mesh, scale: int, name: str) -> dict[str, np.ndarray]:
  e = config.protocol
  flow_stack = next((r.flow_stack for k, r in recs.items() if k != "spatial"), config.data.flow_stack)
  for sr in (sp, tp):
    if not isinstance(sr, str) and sr.is_clip_model:
      raise ValueError(f"SR checkpoint {sr.name} is a clip model; evaluate it with a clip recognizer "
                       "(protocol.clip), the two-stream path needs frame or K-window SR")
  if "hr" not in source[0]:
    raise ValueError(f"{config.data.name} stores no HR frames: evaluate it with a clip recognizer (protocol.clip)")
  flow_stored = "flow" in source[0]
  step = protocol_steps.make_two_stream_step(sp, tp, recs, flow_params(e, recs), e.flow_bound,
                                 image_metrics.border_for(scale, config.eval.get("border")), flow_stored, views=e.views)

  def sample(ex):
    out = protocol_steps.sample_two_stream(ex, config.eval.num_segments, flow_stack, protocol_steps.input_frames(sp),
                               protocol_steps.input_frames(tp), "two_stream" in recs)
    return dict(out, label=recognition_data.label_of(ex))
  return map_videos(config, source, n, sample, step, mesh, desc=f"{name}: two-stream")


def flow_params(e, recs) -> tvl1.TVL1Params:
  """TV-L1 for the SR frames: protocol.tvl1 if set, else what the temporal stream was trained on."""
  if e.tvl1:
    return tvl1.TVL1Params.from_config(e.tvl1)
  trained = next((r.tvl1 for k, r in recs.items() if k != "spatial" and r.tvl1), None)
  if trained:
    logging.info("TV-L1 of the SR frames uses the temporal stream's training parameters %s", trained)
  return tvl1.TVL1Params.from_config(trained or {})


def map_videos(config, source, n: int, sample, step, mesh, desc: str = "evaluating") -> dict[str, np.ndarray]:
  """Runs ``step`` over videos 0..n-1 of ``source`` (``sample(example)`` -> host arrays, with
  'label'), sharded in batches of eval.batch_size videos; per-video outputs and labels in order."""
  per_process = sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")

  def items():
    for i in batched.local_indices(n):
      example = source[i]
      try:
        item = sample(example)
      except ValueError as err:
        raise ValueError(f"Video {example.get('id', i)} of {config.data.name}:{config.data.eval_split}: "
                         f"{err}") from err
      yield dict(item, index=np.int32(i))

  batches = batched.padded_batches(items(), per_process, f"{config.data.name}:{config.data.eval_split}")
  total = batched.num_batches(len(batched.local_indices(n)), per_process)
  out = batched.map_batches(step, batches, mesh, ride_along=("label",), total=total, what="video batches",
                            desc=desc)
  out.pop(batched.INDEX)
  return out


def _run_clips(config, source, n, sp, rec, mesh, scale: int, name: str) -> dict[str, np.ndarray]:
  """Clip recognizer over consecutive windows; 'clip' scores (N, C): mean softmax or max sigmoid.

  Windows of every video are batched together (eval.batch_size windows, sharded),
  so the windows of one video may span batches; scores are aggregated per video.
  """
  e = config.protocol
  if sp == protocol_steps.HR and "hr" not in source[0]:
    raise ValueError(f"{config.data.name} stores no HR frames (natively small video): method 'hr' is unavailable")
  step = protocol_steps.make_clip_step(sp, rec, e.input_size or None)
  per_process = sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")

  def items():
    for i in batched.local_indices(n):
      example = source[i]
      clips = protocol_steps.sample_clips(example, e.clip_length, protocol_steps.input_frames(sp), scale, e.lr_size)
      label = recognition_data.label_of(example)
      for w in range(clips["lr"].shape[0]):
        yield {"lr": clips["lr"][w], "hr": clips["hr"][w], "label": label, "index": np.int32(i)}

  def checked():
    shape = None
    for item in items():
      if shape is not None and item["lr"].shape != shape:
        raise ValueError(f"Video {int(item['index'])} of {config.data.name} has LR windows {item['lr'].shape}, "
                         f"others {shape}: set protocol.lr_size to resize every video to one size")
      shape = item["lr"].shape
      yield item

  batches = batched.padded_batches(checked(), per_process, f"{config.data.name}:{config.data.eval_split}")
  windows = protocol_steps.sample_clips(source[0], e.clip_length, protocol_steps.input_frames(sp), scale, e.lr_size)["lr"].shape[0]
  total = batched.num_batches(len(batched.local_indices(n)) * windows, per_process)  # as if all were as long
  out = batched.map_batches(step, batches, mesh, ride_along=("label",), total=total, what="window batches",
                            desc=f"{name}: clips")
  index, logits = out[batched.INDEX], out["logits"]
  videos, first = np.unique(index, return_index=True)  # every video has >= 1 window
  if len(videos) != n:
    raise ValueError(f"Clip path: {n - len(videos)} of {n} videos gave no window")
  multilabel = out["label"].ndim == 2
  agg = []
  for i in range(n):
    w = logits[index == i]
    agg.append(recognition_metrics.multilabel_video_scores(w[None], np.ones((1, len(w)), bool))[0] if multilabel
               else np.asarray(jax.nn.softmax(w, axis=-1)).mean(0))
  return {"clip": np.stack(agg), "label": out["label"][first]}


def _summarize(out: dict[str, np.ndarray], labels: np.ndarray, num_classes: int, e, fusion=None
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(results of one method, confusion matrix (C, C) per single-label stream); ``fusion``: the
  (spatial, temporal) weights of the fused score."""
  res: dict[str, Any] = {}
  confusion = {}
  streams = {k: out[k] for k in ("spatial", "temporal") if k in out}
  if len(streams) == 2:
    streams["fusion"] = np.asarray(rec_steps.scores(streams, tuple(fusion)))
  if "clip" in out:
    streams["clip"] = out["clip"]
  for name, score in streams.items():
    if labels.ndim == 2 and name == "clip":  # already probabilities: threshold directly
      pred = recognition_metrics.multilabel_predictions(score, e.threshold)
      f1, per_class = recognition_metrics.macro_f1(pred, labels.astype(bool))
      res[f"{name}_macro_f1"], res[f"{name}_per_class_f1"] = float(f1), [float(x) for x in per_class]
      continue
    summary = score_summary(score, labels, num_classes, e.threshold)
    res.update({f"{name}_{k}": v for k, v in summary.items()})
    if labels.ndim == 1:
      confusion[name] = recognition_metrics.confusion_matrix(np.argmax(score, -1), labels, num_classes)
  for key in ("psnr", "ssim", "warp_error"):
    if key in out:
      res[key] = image_metrics.mean_of(out[key])
  return res, confusion


def results_table(results: dict[str, Any]) -> str:
  cols = [("spatial_accuracy", "spatial"), ("temporal_accuracy", "temporal"), ("fusion_accuracy", "fusion"),
          ("clip_accuracy", "clip"), ("clip_macro_f1", "clip F1"), ("psnr", "PSNR-Y"), ("ssim", "SSIM-Y"),
          ("warp_error", "warp err")]
  present = [(k, h) for k, h in cols if any(r.get(k) is not None for r in results["methods"].values())]
  fmt = lambda k, v: "n/a" if v is None else (f"{100 * v:.2f}" if "accuracy" in k or "f1" in k else  # noqa: E731
                                              f"{v:.4f}" if k in ("ssim", "warp_error") else f"{v:.2f}")
  rows = [[name, *(fmt(k, r.get(k)) for k, _ in present)] for name, r in results["methods"].items()]
  return (f"\nRecognition of SR output on {results['dataset']}:{results['split']} ({results['num_videos']} videos, "
          f"x{results['scale']}, {results['num_segments']} segments{_views_text(results)})\n\n"
          + markdown_table(["method", *(h for _, h in present)], rows))


def _views_text(results: dict[str, Any]) -> str:
  """', 10 views per segment (corners, centre, mirrored), fusion 1 : 1.5' for the table header
  ('' without two-stream recognizers)."""
  views = results.get("views")
  if views is None:
    return ""
  text = f", {views} view{'s' if views != 1 else ''} per segment" + (
      " (corners, centre, mirrored)" if views == 10 else " (centre crop)")
  if results.get("fusion_weights"):
    text += ", fusion {:g} : {:g}".format(*results["fusion_weights"])
  return text
