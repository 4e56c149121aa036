"""``config.task='evaluate'``: compare SR methods by how recognizable their output is.

  python -m arsr_jax.main --config configs/evaluate.py --workdir DIR \\
      --config.evaluate.spatial=W_RGB --config.evaluate.temporal=W_FLOW \\
      --config.evaluate.methods='bicubic,hr,vdsr=W_VDSR,sosr+tosr=W_SOSR:W_TOSR'

For every method (``evaluate.methods``: bicubic, HR, or SR workdirs for the
spatial and the temporal stream) on the eval split: spatial, temporal and
fused (TSN weights) accuracy of the frozen recognizers restored from their
workdirs, per-class accuracy, PSNR/SSIM (Y) of the SR frames, the warping
error of consecutive SR frames under the HR flow, and -- with a clip
recognizer (I3D, 3D ResNets) -- clip-level accuracy, or TinyVIRAT's macro F1
for multi-label data. Writes DIR/results.json, DIR/plots/ (method-vs-bicubic
per-class scatter plots, temporal profiles), TensorBoard images, and prints
the table. Per-video scores are kept in DIR/scores.npz for further analysis.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from arsr_jax import sharding
from arsr_jax.data import pipeline, recognition_data
from arsr_jax.evaluation import frozen, plots, protocol_steps as ps
from arsr_jax.evaluation import recognition_metrics as rm
from arsr_jax.flow import tvl1
from arsr_jax.recognition import task, train_steps
from arsr_jax.writers import EventWriter


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
    spatial, _, temporal = sources.partition(":")
    if not sources or (not _ and name not in (ps.BICUBIC, ps.HR) and "=" not in entry):
      raise ValueError(f"evaluate.methods entry {entry!r}: use 'bicubic', 'hr' or NAME=SPATIAL[:TEMPORAL]")
    methods.append(Method(name, spatial, temporal or spatial))
  if not methods or len({m.name for m in methods}) != len(methods):
    raise ValueError(f"evaluate.methods={spec!r}: need at least one method, with distinct names")
  return methods


def run(config, workdir: str) -> dict[str, Any]:
  e, d = config.evaluate, config.data
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  from arsr_jax import train  # noqa: PLC0415
  dtype = train.compute_dtype(config.compute_dtype)
  num_classes = recognition_data.num_classes(config)
  recs = _load_recognizers(e, repl, dtype, num_classes)
  source = pipeline.get_source(d.name, d.eval_split, d.get("data_dir"))
  n = len(source) if not config.eval.get("max_clips") else min(len(source), config.eval.max_clips)
  scale = _data_scale(config, source[0])
  srs = {}
  for m in parse_methods(e.methods):
    for src in (m.spatial, m.temporal):
      if src not in (ps.BICUBIC, ps.HR) and src not in srs:
        srs[src] = frozen.load_sr(src, repl, dtype)
        if srs[src].scale != scale:
          raise ValueError(f"SR checkpoint {src} is x{srs[src].scale}; {d.name}:{d.eval_split} has x{scale} LR")
  labels = None  # read with the videos (one pass over the data per method)
  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  writer = EventWriter(os.path.join(workdir, "tensorboard"))
  results: dict[str, Any] = {"dataset": d.name, "split": d.eval_split, "num_videos": n, "scale": scale,
                             "num_segments": config.eval.num_segments,
                             "recognizers": {k: r.source for k, r in recs.items()}, "methods": {}}
  all_scores = {}
  for m in parse_methods(e.methods):
    start = time.perf_counter()
    sp, tp = (srs.get(x, x) for x in (m.spatial, m.temporal))
    out = {}
    two = {k: r for k, r in recs.items() if k in ("spatial", "temporal", "two_stream")}
    if two:
      out.update(_run_two_stream(config, source, n, sp, tp, two, mesh))
    if "clip" in recs:
      out.update(_run_clips(config, source, n, sp, recs["clip"], mesh, scale))
    labels = out.pop("label")
    res = _summarize(out, labels, num_classes, e)
    res["seconds"] = round(time.perf_counter() - start, 2)
    res["sources"] = {"spatial": m.spatial, "temporal": m.temporal}
    results["methods"][m.name] = res
    all_scores.update({f"{m.name}/{k}": v for k, v in out.items()})
    logging.info("%s: %s (%.1f s)", m.name, {k: v for k, v in res.items() if isinstance(v, float)}, res["seconds"])
  if jax.process_index() == 0:
    _plots(workdir, results, writer)
    _profiles(config, workdir, source, srs, writer)
    np.savez_compressed(os.path.join(workdir, "scores.npz"), labels=labels, **all_scores)
    tmp = os.path.join(workdir, "results.json.tmp")
    with open(tmp, "w") as f:
      json.dump(results, f, indent=2)
    os.replace(tmp, os.path.join(workdir, "results.json"))
    print(results_table(results))
  writer.close()
  return results


def _data_scale(config, first) -> int:
  """HR / LR size ratio of the data; natively small video (no HR) takes the SR methods' scale."""
  if "hr" in first and "lr" in first:
    return first["hr"].shape[1] // first["lr"].shape[1]
  scales = {frozen.load_run_config(src).scale for m in parse_methods(config.evaluate.methods)
            for src in (m.spatial, m.temporal) if src not in (ps.BICUBIC, ps.HR)}
  if len(scales) > 1:
    raise ValueError(f"SR methods of different scales {sorted(scales)} on natively small video")
  return scales.pop() if scales else config.scale


def _load_recognizers(e, repl, dtype, num_classes) -> dict[str, frozen.FrozenRecognizer]:
  recs = {}
  for key in ("spatial", "temporal", "two_stream", "clip"):
    if e.get(key):
      recs[key] = frozen.load_recognizer(e[key], repl, dtype, num_classes)
  want = {"spatial": ("rgb",), "temporal": ("flow",), "two_stream": ("two_stream",), "clip": ("clip",)}
  for key, rec in recs.items():
    if rec.kind not in want[key]:
      raise ValueError(f"evaluate.{key}={rec.source} is a {rec.kind!r} recognizer; {key} needs {want[key]}")
  if not recs:
    raise ValueError("task='evaluate' needs recognizers: evaluate.spatial and/or evaluate.temporal (TSN), "
                     "evaluate.two_stream (ST-ResNet) or evaluate.clip (I3D / 3D ResNet workdir, or "
                     f"'{frozen.I3D_KINETICS}')")
  if "two_stream" in recs and ({"spatial", "temporal"} & set(recs)):
    raise ValueError("Give evaluate.two_stream or evaluate.spatial/temporal, not both")
  return recs


def _run_two_stream(config, source, n, sp, tp, recs, mesh) -> dict[str, np.ndarray]:
  e = config.evaluate
  new_length = next((r.new_length for k, r in recs.items() if k != "spatial"), config.data.new_length)
  for sr in (sp, tp):
    if not isinstance(sr, str) and sr.is_clip_model:
      raise ValueError(f"SR checkpoint {sr.name} is a clip model; evaluate it with a clip recognizer "
                       "(evaluate.clip), the two-stream path needs frame or K-window SR")
  if "hr" not in source[0]:
    raise ValueError(f"{config.data.name} stores no HR frames: evaluate it with a clip recognizer (evaluate.clip)")
  flow_stored = "flow" in source[0]
  step = ps.make_two_stream_step(sp, tp, recs, flow_params(e, recs), e.flow_bound,
                                 config.eval.get("border", 0) or 0, flow_stored)
  def sample(ex):
    out = ps.sample_two_stream(ex, config.eval.num_segments, new_length, ps.input_frames(sp),
                               ps.input_frames(tp), "two_stream" in recs)
    return dict(out, label=recognition_data.label_of(ex))
  return _map_videos(config, source, n, sample, step, mesh)


def flow_params(e, recs) -> tvl1.TVL1Params:
  """TV-L1 for the SR frames: evaluate.tvl1 if set, else what the temporal stream was trained on."""
  if e.tvl1:
    return tvl1.TVL1Params.from_config(e.tvl1)
  trained = next((r.tvl1 for k, r in recs.items() if k != "spatial" and r.tvl1), None)
  if trained:
    logging.info("TV-L1 of the SR frames uses the temporal stream's training parameters %s", trained)
  return tvl1.TVL1Params.from_config(trained or {})


def _map_videos(config, source, n, sample, step, mesh) -> dict[str, np.ndarray]:
  """Runs ``step`` over every video (sharded batches of eval.batch_size videos); per-video outputs."""
  per_process = sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  batched = sharding.batch_sharded(mesh)
  def with_labels(batch):  # labels (if sampled) ride along, so videos are read once
    out = step({k: v for k, v in batch.items() if k != "label"})
    return dict(out, label=batch["label"]) if "label" in batch else out

  p_step = jax.jit(with_labels, in_shardings=(batched,), out_shardings=batched)
  outputs: dict[str, list[np.ndarray]] = {}
  mine = list(range(jax.process_index(), n, jax.process_count()))
  per_proc_total = -(-n // jax.process_count())
  num_batches = -(-per_proc_total // per_process)
  template, start = None, time.perf_counter()

  def host_batch(b: int) -> dict[str, np.ndarray]:
    nonlocal template
    items = []
    for i in mine[b * per_process:(b + 1) * per_process]:
      try:
        items.append(sample(source[i]))
      except ValueError as err:
        raise ValueError(f"Video {source[i].get('id', i)} of {config.data.name}:{config.data.eval_split}: "
                         f"{err}") from err
    template = template or (items[0] if items else sample(source[0]))
    items += [{k: np.zeros_like(v) for k, v in template.items()}] * (per_process - len(items))
    return pipeline.stack_items(items)

  def collect(out) -> None:
    out = multihost_utils.process_allgather(out, tiled=True) if jax.process_count() > 1 else jax.device_get(out)
    for k, v in out.items():
      outputs.setdefault(k, []).append(np.asarray(v))

  pending = None
  for b in range(num_batches):
    # Dispatch is asynchronous: batch b's host sampling overlaps the device's work on batch b-1.
    out = p_step(sharding.to_global(host_batch(b), mesh))
    if pending is not None:
      collect(pending)
    pending = out
    if (b + 1) % 10 == 0 or b + 1 == num_batches:
      rate = (b + 1) * per_process / (time.perf_counter() - start)
      logging.info("  %d/%d batches, %.2f videos/s per process", b + 1, num_batches, rate)
  collect(pending)
  return _unpad({k: np.concatenate(v) for k, v in outputs.items()}, n, per_process, num_batches)


def _unpad(out: dict[str, np.ndarray], n: int, per_process: int, num_batches: int) -> dict[str, np.ndarray]:
  """Gathered rows are ordered (batch, process, item); returns video order 0..n-1."""
  procs = jax.process_count()
  order = np.full(num_batches * per_process * procs, -1)
  for p in range(procs):
    mine = list(range(p, n, procs))
    for j, vid in enumerate(mine):
      b, r = divmod(j, per_process)
      order[(b * procs + p) * per_process + r] = vid
  keep = order >= 0
  rows = np.argsort(order[keep])
  return {k: v[keep][rows] for k, v in out.items()}


def _run_clips(config, source, n, sp, rec, mesh, scale: int) -> dict[str, np.ndarray]:
  """Clip recognizer over consecutive windows; 'clip' scores (N, C): mean softmax or max sigmoid."""
  e = config.evaluate
  if sp == ps.HR and "hr" not in source[0]:
    raise ValueError(f"{config.data.name} stores no HR frames (natively small video): method 'hr' is unavailable")
  step = jax.jit(ps.make_clip_step(sp, rec, e.input_size or None))
  multilabel = np.asarray(recognition_data.label_of(source[0])).ndim == 1
  agg, labels = [], []
  for i in range(n):  # videos have their own number of windows (and, natively small video, size)
    example = source[i]
    labels.append(recognition_data.label_of(example))
    clips = ps.sample_clips(example, e.clip_length, ps.input_frames(sp), scale, e.lr_size)
    w = clips["hr"].shape[0]
    pad = -w % 8  # bounds recompilation to one shape per 8 windows
    batch = {key: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for key, v in clips.items()}
    logits = np.asarray(jax.device_get(step(batch))["logits"])[:w]
    agg.append(rm.multilabel_video_scores(logits[None], np.ones((1, w), bool))[0] if multilabel
               else _softmax(logits).mean(0))
    if (i + 1) % 100 == 0 or i + 1 == n:
      logging.info("  %d/%d videos (clip recognizer)", i + 1, n)
  return {"clip": np.stack(agg), "label": np.stack(labels)}


def _softmax(x: np.ndarray) -> np.ndarray:
  x = x - x.max(-1, keepdims=True)
  return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def _summarize(out: dict[str, np.ndarray], labels: np.ndarray, num_classes: int, e) -> dict[str, Any]:
  res: dict[str, Any] = {}
  streams = {k: out[k] for k in ("spatial", "temporal") if k in out}
  if len(streams) == 2:
    streams["fusion"] = np.asarray(train_steps.scores(streams, tuple(e.fusion_weights)))
  if "clip" in out:
    streams["clip"] = out["clip"]
  for name, score in streams.items():
    if labels.ndim == 2 and name == "clip":  # already probabilities: threshold directly
      pred = rm.multilabel_predictions(score, e.threshold)
      f1, per_class = rm.macro_f1(pred, labels.astype(bool))
      res[f"{name}_macro_f1"], res[f"{name}_per_class_f1"] = float(f1), [float(x) for x in per_class]
      continue
    summary = task.score_summary(score, labels, num_classes, e.threshold)
    res.update({f"{name}_{k}": v for k, v in summary.items()})
  for key in ("psnr", "ssim", "warp_error"):
    if key in out:
      vals = out[key][np.isfinite(out[key])]
      res[key] = float(vals.mean()) if vals.size else None
  return res


def _plots(workdir: str, results: dict[str, Any], writer: EventWriter) -> None:
  """Per-class accuracy of each method against bicubic (the paper's Fig. 6), one PNG per method/stream."""
  methods = results["methods"]
  if ps.BICUBIC not in methods:
    return
  for name, res in methods.items():
    if name == ps.BICUBIC:
      continue
    for stream in ("fusion", "spatial", "temporal", "clip"):
      key = f"{stream}_per_class_accuracy"
      if key not in res:
        continue
      x = np.asarray([np.nan if v is None else v for v in methods[ps.BICUBIC][key]], float)
      y = np.asarray([np.nan if v is None else v for v in res[key]], float)
      path = os.path.join(workdir, "plots", f"scatter_{_safe(name)}_{stream}.png")
      image = plots.scatter_png(path, x, y, title=f"{name} vs bicubic ({stream})", xlabel="bicubic accuracy",
                                ylabel=f"{name} accuracy")
      writer.images(0, {f"plots/scatter_{name}_{stream}": image[None]})


def _profiles(config, workdir: str, source, srs: dict, writer: EventWriter) -> None:
  """Temporal profiles (one row over time) of the first videos: HR, bicubic and each SR network."""
  methods = {"bicubic": ps.BICUBIC, **{sr.name: sr for sr in srs.values() if not sr.is_clip_model}}
  # Jitted once per method (not per video): same-size videos reuse the compiled function.
  run = {name: jax.jit(lambda a, b, sr=sr: ps.super_resolve(sr, a, b)) for name, sr in methods.items()}
  for i in range(min(config.evaluate.profiles, len(source))):
    example = source[i]
    if "hr" not in example or example["hr"].shape[0] < 2:  # natively small video: no HR to compare
      continue
    row = example["hr"].shape[1] // 2
    t = example["hr"].shape[0]
    clips = {"hr": example["hr"]}
    for name, sr in methods.items():
      lr = example["lr"][pipeline.lr_window(t, np.arange(t), ps.input_frames(sr))]
      clips[name] = np.asarray(run[name](lr, example["hr"]))
    # One labelled panel per method: time runs down, x runs right, enlarged 4x (nearest) to be seen.
    panels = [np.repeat(np.repeat(rm.temporal_profiles({k: v}, row), 4, 0), 4, 1) for k, v in clips.items()]
    image = plots.image_grid(panels, list(clips), columns=len(panels))
    path = os.path.join(workdir, "plots", f"profile_{i}.png")
    from arsr_jax.flow import vis  # noqa: PLC0415
    vis.save_png(path, image)
    writer.images(0, {f"plots/profile_{i}": np.asarray(image)[None]})
  writer.flush()


def _safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def results_table(results: dict[str, Any]) -> str:
  cols = [("spatial_accuracy", "spatial"), ("temporal_accuracy", "temporal"), ("fusion_accuracy", "fusion"),
          ("clip_accuracy", "clip"), ("clip_macro_f1", "clip F1"), ("psnr", "PSNR-Y"), ("ssim", "SSIM-Y"),
          ("warp_error", "warp err")]
  present = [(k, h) for k, h in cols if any(r.get(k) is not None for r in results["methods"].values())]
  rows = [f"\nRecognition of SR output on {results['dataset']}:{results['split']} ({results['num_videos']} videos, "
          f"x{results['scale']}, {results['num_segments']} segments)\n",
          "| method | " + " | ".join(h for _, h in present) + " |", "|---" * (len(present) + 1) + "|"]
  for name, r in results["methods"].items():
    cells = []
    for k, _ in present:
      v = r.get(k)
      cells.append("n/a" if v is None else (f"{100 * v:.2f}" if "accuracy" in k or "f1" in k else
                                             f"{v:.4f}" if k in ("ssim", "warp_error") else f"{v:.2f}"))
    rows.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(rows)
