"""TV-L1 throughput, work and accuracy: JAX (this package) against OpenCV's DualTVL1.

  python benchmarks/flow_bench.py [--batch 8] [--rounds 3] [--size 320x240] [--pairs auto]
                                  [--opencv-pairs 3] [--no-chairs] [--save_pairs F.npz]

Prints ONE JSON object:
  * pairs/s of ``tvl1_flow`` on one device, compacting (the default: only the
    pairs still running are stepped) and at full batch width (``compact=False``,
    the batch waits for its slowest pair), and of ``cv2.optflow.DualTVL1OpticalFlow``
    with the same parameters (OpenCV defaults), on the same grey pairs; rounds
    alternate so that load from other processes affects all alike; compilation
    is timed separately and warm-up excluded;
  * the pairs: ``--pairs auto`` takes consecutive frames of the real clips in
    shared/data/clips (TV-L1 stops early, so its cost depends on the motion),
    else the FlyingChairs pairs, else a moving synthetic texture; or a folder of
    videos, or an .npz written by ``--save_pairs`` (for a machine without PyAV);
  * ``steps``: the primal-dual steps the pairs ran (per warp, by level) against
    the maximum, and the work each mode did over the useful work (pixel-steps);
  * ``roofline``: ``roofline.summary`` of the full-width program with every loop
    at its maximum trips (an UPPER bound, "bound": "upper"); and
    ``roofline_at_measured_work``: the same costs split into fixed, per-outer-
    iteration and per-step parts (XLA's figures at 0 and 1 trips) and scaled by
    the work each mode measured on these pairs (the compacting program's fixed
    part includes its reordering); measured/predicted on a GPU;
  * the end-point error (mean over pixels, px) of both modes, OpenCV and zero
    flow on each full-resolution FlyingChairs pair in shared/data/flow/flyingchairs.
OpenCV numbers are null when ``cv2.optflow`` is missing. ``--aot h100`` (or h200) takes the
roofline costs from the same programs compiled for that GPU without one (``aot.py``: XLA:GPU's
fusions instead of XLA:CPU's); the timings and the measured work stay this host's.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import sys
import time

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAIRS = ROOT.parent / "shared" / "data" / "flow" / "flyingchairs"
CLIPS = ROOT.parent / "shared" / "data" / "clips"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm")

try:
  import cv2
  cv2.optflow.DualTVL1OpticalFlow_create  # noqa: B018
except (ImportError, AttributeError):
  cv2 = None

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import aot  # noqa: E402

if __name__ == "__main__" and aot.requested():
  aot.setup()  # before jax is imported
import jax  # noqa: E402
import roofline  # noqa: E402
from arsr_jax.flow import io as flow_io  # noqa: E402
from arsr_jax.flow import tvl1  # noqa: E402

TINY_PARAMS = tvl1.TVL1Params(nscales=1, warps=1, inner_iterations=5, outer_iterations=2)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--rounds", type=int, default=3, help="timed batches per mode (and OpenCV rounds)")
  parser.add_argument("--size", default="320x240", help="WxH of the throughput pairs")
  parser.add_argument("--pairs", default="auto", help="auto | chairs | synthetic | a folder of videos | an .npz")
  parser.add_argument("--save_pairs", default="", help="write the grey pairs (at --size) to this .npz and exit")
  parser.add_argument("--opencv-pairs", type=int, default=3, help="OpenCV pairs per round")
  parser.add_argument("--no-chairs", action="store_true", help="skip the full-size EPE comparison")
  parser.add_argument("--compile_only", action="store_true", help="compile and upper-bound roofline only")
  parser.add_argument("--tiny", action="store_true", help="TINY_PARAMS instead of OpenCV's (a smoke check)")
  aot.add_argument(parser, "roofline of the programs compiled for that GPU (deviceless)")
  parser.add_argument("--step", choices=("auto", "split", "fused"), default="auto",
                      help="TV-L1 iteration form (tvl1_step.py); auto: the platform's (split on CPU)")
  parser.add_argument("--storage", choices=tvl1.STORAGE_DTYPES, default="float32",
                      help="TVL1Params.storage: dtype of p and the data term between steps")
  args = parser.parse_args(argv)
  aot.check(parser, args)
  return args


def opencv_tvl1(params: tvl1.TVL1Params):
  """An OpenCV DualTVL1 object with ``params`` (OpenCV 5 spells ``innnerIterations``)."""
  kwargs = dict(tau=params.tau, lambda_=params.lambda_, theta=params.theta, nscales=params.nscales,
                warps=params.warps, epsilon=params.epsilon, outerIterations=params.outer_iterations,
                scaleStep=params.scale_step, gamma=params.gamma,
                medianFiltering=params.median_filtering)
  for inner in ("innnerIterations", "innerIterations"):
    try:
      return cv2.optflow.DualTVL1OpticalFlow_create(**kwargs, **{inner: params.inner_iterations})
    except (cv2.error, TypeError):
      continue
  raise RuntimeError("cannot create cv2.optflow.DualTVL1OpticalFlow with these parameters")


def load_chairs():
  """[(name, grey0, grey1, gt flow)] for the FlyingChairs pairs (uint8 (H, W), (H, W, 2))."""
  pairs = []
  for gt_path in sorted(CHAIRS.glob("*-gt.flo")):
    stem = gt_path.name[:-len("-gt.flo")]
    grey = [np.asarray(Image.open(CHAIRS / f"{stem}-img{k}.ppm").convert("L")) for k in (0, 1)]
    pairs.append((stem, grey[0], grey[1], flow_io.read_flo(gt_path)))
  return pairs


def load_pairs(source: str, count: int, width: int, height: int) -> tuple[np.ndarray, str]:
  """(count, 2, H, W) uint8 grey pairs at width x height, and what they are.

  Videos: pair k is frames (2j, 2j + 1) of clip k mod #clips, j = k // #clips, so that a
  batch mixes clips. Fewer distinct pairs than ``count`` are cycled.
  """
  if source == "auto":
    source = str(CLIPS) if CLIPS.is_dir() else ("chairs" if CHAIRS.is_dir() else "synthetic")
  path = pathlib.Path(source)
  if source.endswith(".npz"):
    with np.load(path) as z:
      pairs, what = z["pairs"], str(z["what"])
    if pairs.shape[2:] != (height, width):
      raise SystemExit(f"--pairs {path}: pairs of {pairs.shape[3]}x{pairs.shape[2]}, need {width}x{height}")
  elif path.is_dir():
    from arsr_jax.media import video
    videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
      raise SystemExit(f"--pairs {path}: no videos there")
    per_clip = -(-count // len(videos))
    grey = [[np.asarray(Image.fromarray(f).convert("L").resize((width, height), Image.BILINEAR))
             for f in video.read_video(v, max_frames=2 * per_clip)] for v in videos]
    pairs = np.stack([grey[k % len(videos)][2 * j:2 * j + 2] for j in range(per_clip) for k in range(len(videos))
                      if len(grey[k % len(videos)]) >= 2 * j + 2])
    what = f"consecutive frames of {len(videos)} videos in {path.name}"
  elif source == "chairs" and CHAIRS.is_dir():
    pairs = np.stack([[np.asarray(Image.fromarray(g).resize((width, height), Image.BILINEAR)) for g in (g0, g1)]
                      for _, g0, g1, _ in load_chairs()])
    what = "FlyingChairs pairs, resized"
  elif source in ("synthetic", "chairs"):
    rng = np.random.default_rng(0)  # a smooth random texture moving by (1.5, -0.7) px
    big = np.asarray(Image.fromarray(rng.integers(0, 255, (height // 8, width // 8), np.uint8))
                     .resize((width + 8, height + 8), Image.BICUBIC))
    pairs = np.stack([[big[4:4 + height, 4:4 + width], big[5:5 + height, 2:2 + width]]])
    what = "synthetic texture moving (1.5, -0.7) px"
  else:
    raise SystemExit(f"--pairs {source}: not a folder of videos, an .npz, 'chairs' or 'synthetic'")
  return np.resize(pairs, (max(count, len(pairs)),) + pairs.shape[1:])[:max(count, 1)], what


def tvl1_trips(params: tvl1.TVL1Params) -> tuple[int, int]:
  """Maximum trips of TV-L1's early-stopping loops, outermost first (for ``roofline.cost``)."""
  return params.outer_iterations, -(-params.inner_iterations // tvl1.STEPS_PER_TRIP)


def epe(flow, gt) -> float:
  return float(np.mean(np.linalg.norm(np.asarray(flow, np.float64) - gt, axis=-1)))


def work(stats, batch: int, compact: bool, params: tvl1.TVL1Params, level_px) -> dict:
  """Pixel-steps and pixel-outer-iterations a batch ran, per pair, from ``tvl1_flow``'s stats.

  A width-w stage that takes the warp from step a to step b runs w * (b - a) steps and
  ceil(b / inner) - floor(a / inner) outer iterations (median filters) of w pairs.
  """
  ends = np.asarray(stats["stage_ends"], np.int64)  # (levels, warps, stages)
  widths = np.asarray(tvl1.stage_widths(batch) if compact else [batch])
  starts = np.concatenate([np.zeros_like(ends[..., :1]), ends[..., :-1]], axis=-1)
  inner = params.inner_iterations
  outer = np.where(ends > starts, -(-ends // inner) - starts // inner, 0)
  px = np.asarray(level_px, np.float64)[:, None]
  steps = np.asarray(stats["steps"], np.int64)  # (N, levels, warps)
  return {"px_steps": float((px * ((ends - starts) * widths).sum(-1)).sum() / batch),
          "px_outer": float((px * (outer * widths).sum(-1)).sum() / batch),
          "useful_px_steps": float((px[None] * steps).sum() / batch)}


def measured_cost(parts: dict, fixed: dict, done: dict, params: tvl1.TVL1Params, level_px) -> dict:
  """Roofline cost of one batch at the work measured: fixed + per-outer-iteration + per-step parts.

  ``parts``: the full-width program's costs at (outer, inner) trips (0, 0), (1, 0), (1, 1): one
  trip of every loop of every level and warp at full width. ``fixed``: the program's own cost at
  (0, 0); a trip of the innermost loop runs ``tvl1.STEPS_PER_TRIP`` steps (with an odd
  inner_iterations, the last trip of an outer iteration runs one, counted as one). ``done``:
  ``work`` averaged over batches. Per pair and pixel, a trip of all loops is
  ``warps * sum(level_px)`` pixel-trips, which the measured pixel-trips scale.
  """
  unit = params.warps * float(np.sum(level_px))
  out, split = {}, {}
  for key in ("flops", "bytes"):
    per_outer, per_step = loop_costs(parts, key)
    split[key] = {"fixed": fixed[key], "outer": per_outer * done["px_outer"] / unit,
                  "steps": per_step * done["px_steps"] / unit}
    out[key] = sum(split[key].values())
  return {**out, "loops": "measured work", "bound": "measured", "by_part": split}


def loop_costs(parts: dict, key: str) -> tuple[float, float]:
  """(one outer iteration, one primal-dual step) of ``key`` from ``measured_cost``'s ``parts``; a trip
  of the innermost loop runs ``tvl1.STEPS_PER_TRIP`` steps."""
  return (parts[(1, 0)][key] - parts[(0, 0)][key],
          (parts[(1, 1)][key] - parts[(1, 0)][key]) / tvl1.STEPS_PER_TRIP)


def main(args) -> None:
  if args.step != "auto":  # for before/after comparisons of the iteration's two forms
    from arsr_jax.flow import tvl1_step
    tvl1.primal_dual_step = functools.partial(tvl1_step.primal_dual_step, form=args.step)
  width, height = (int(v) for v in args.size.split("x"))
  params = dataclasses.replace(TINY_PARAMS if args.tiny else tvl1.TVL1Params(), storage=args.storage)
  n_pairs = args.batch * max(args.rounds, 1)
  pairs, what = load_pairs(args.pairs, n_pairs, width, height)
  if args.save_pairs:
    pathlib.Path(args.save_pairs).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.save_pairs, pairs=pairs, what=what)
    print(json.dumps({"saved_pairs": args.save_pairs, "pairs": len(pairs), "what": what}))
    return
  batches = [(pairs[r * args.batch:(r + 1) * args.batch, 0], pairs[r * args.batch:(r + 1) * args.batch, 1])
             for r in range(args.rounds)]
  level_px = [h * w for h, w in tvl1.pyramid_shapes(height, width, params)]
  modes = {"compact": True, "full_batch": False}
  program = lambda mode: jax.jit(  # noqa: E731
      lambda a, b: tvl1.tvl1_flow(a, b, params, compact=modes[mode], return_stats=True))
  fns, compile_s = {}, {}
  for mode in modes:
    t0 = time.perf_counter()
    fns[mode] = program(mode).lower(*batches[0]).compile()
    compile_s[mode] = round(time.perf_counter() - t0, 2)
  on_gpu = jax.default_backend() == "gpu"
  costed = fns
  if args.aot:  # the same programs, compiled for a GPU this host does not have
    target = aot.target(args.aot)
    costed = {m: program(m).lower(*aot.specs(batches[0], target)).compile() for m in modes}
  upper = roofline.safe_cost(costed["full_batch"], tvl1_trips(params))
  base = {"device": jax.devices()[0].device_kind, "platform": jax.default_backend(), "frame_size_wh": [width, height],
          "batch": args.batch, "params": "tiny" if args.tiny else "OpenCV defaults", "pairs": what,
          "jax_compile_s": compile_s, "roofline_peaks": roofline.peaks(),
          "roofline_program": f"compiled for {args.aot} (deviceless)" if args.aot else "compiled here",
          "step_form": args.step, "storage": params.storage}
  if args.compile_only:
    print(json.dumps({**base, "roofline": roofline.summary(upper, "float32", args.batch, "pairs")}))
    return
  for fn in fns.values():
    jax.block_until_ready(fn(*batches[0]))  # warm-up

  seconds, done, steps = {m: 0.0 for m in fns}, {m: [] for m in fns}, None
  cv_time, cv_pairs = 0.0, 0
  cv_tvl1 = opencv_tvl1(params) if cv2 is not None else None
  for r in range(args.rounds):
    for mode, fn in fns.items():
      t0 = time.perf_counter()
      _, stats = jax.block_until_ready(fn(*batches[r]))
      seconds[mode] += time.perf_counter() - t0
      done[mode].append(work(stats, args.batch, mode == "compact", params, level_px))
      if steps is None:  # the first batch's steps per pair, level and warp
        steps = np.asarray(stats["steps"])
    if cv_tvl1 is not None:
      for k in range(args.opencv_pairs):
        a, b = pairs[(r * args.opencv_pairs + k) % len(pairs)]
        t0 = time.perf_counter()
        cv_tvl1.calc(a, b, None)
        cv_time += time.perf_counter() - t0
        cv_pairs += 1
  rate = {m: args.batch * args.rounds / s for m, s in seconds.items()}
  cv_rate = cv_pairs / cv_time if cv_pairs else None
  mean = {m: {k: float(np.mean([d[k] for d in v])) for k in v[0]} for m, v in done.items()}
  max_steps = params.outer_iterations * params.inner_iterations
  parts = {t: roofline.safe_cost(costed["full_batch"], t) for t in ((0, 0), (1, 0), (1, 1))}
  at_work = {}
  if all(parts.values()):
    for mode in fns:
      fixed = parts[(0, 0)] if mode == "full_batch" else roofline.safe_cost(costed[mode], (0, 0))
      cost = measured_cost(parts, fixed, mean[mode], params, level_px)
      at_work[mode] = roofline.summary(cost, "float32", args.batch, "pairs", seconds[mode] / args.rounds, on_gpu)
      at_work[mode]["bytes_by_part"] = cost["by_part"]["bytes"]  # fixed (pyramid, warping), median filters, steps
  bytes_per_pixel = None  # of one primal-dual step; of one outer iteration (median filter and loop entry)
  if all(parts.values()):
    per_px = args.batch * params.warps * float(np.sum(level_px))  # pixels of one trip of every loop
    outer, step = loop_costs(parts, "bytes")
    bytes_per_pixel = {"step": round(step / per_px, 1), "outer_iteration": round(outer / per_px, 1)}

  result = {
      **base, "device_count_used": 1, "rounds": args.rounds,
      "jax_pairs_per_s": round(rate["compact"], 3),
      "jax_pairs_per_s_full_batch": round(rate["full_batch"], 3),
      "compact_speedup": round(rate["compact"] / rate["full_batch"], 3),
      "opencv_pairs_per_s": round(cv_rate, 3) if cv_rate else None,
      "opencv_threads": cv2.getNumThreads() if cv2 is not None else None,
      "jax_over_opencv": round(rate["compact"] / cv_rate, 2) if cv_rate else None,
      "host_cpus": os.cpu_count(), "host_load_avg_1min": round(os.getloadavg()[0], 2),
      "steps": {"mean_per_warp_by_level": steps.mean(axis=(0, 2)).round(1).tolist(), "max_per_warp": max_steps,
                "px_steps_over_max": round(mean["compact"]["useful_px_steps"]
                                           / (params.warps * max_steps * sum(level_px)), 4),
                "work_over_useful": {m: round(v["px_steps"] / v["useful_px_steps"], 3) for m, v in mean.items()}},
      "roofline": roofline.summary(upper, "float32", args.batch, "pairs"),
      "roofline_at_measured_work": at_work or None,
      "bytes_per_pixel": bytes_per_pixel,
  }
  chairs = load_chairs() if not args.no_chairs else []
  if chairs:
    grey0 = np.stack([g0 for _, g0, _, _ in chairs])
    grey1 = np.stack([g1 for _, _, g1, _ in chairs])
    flows = {m: np.asarray(tvl1.tvl1_flow(grey0, grey1, params, compact=c)) for m, c in modes.items()}
    result["flyingchairs_epe"] = {
        name: {"jax": round(epe(flows["compact"][i], gt), 4),
               "jax_full_batch": round(epe(flows["full_batch"][i], gt), 4),
               "opencv": round(epe(cv_tvl1.calc(g0, g1, None), gt), 4) if cv_tvl1 else None,
               "zero_flow": round(epe(np.zeros_like(gt), gt), 4)}
        for i, (name, g0, g1, gt) in enumerate(chairs)}
  print(json.dumps(result))


if __name__ == "__main__":
  main(parse_args())
