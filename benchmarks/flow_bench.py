"""TV-L1 throughput and accuracy: JAX (this package) against OpenCV's DualTVL1.

  python benchmarks/flow_bench.py [--batch 8] [--rounds 3] [--size 320x240]
                                  [--opencv-pairs 3] [--no-chairs] [--cpu-devices N]

Prints ONE JSON object:
  * pairs/s of ``tvl1_flow`` (batched, sharded over all devices when there
    are several) and of ``cv2.optflow.DualTVL1OpticalFlow`` on the same grey
    320x240 pairs (the FlyingChairs pairs resized, cycled to fill a batch),
    with the same parameters (OpenCV defaults); JAX compilation is timed
    separately and warm-up excluded; JAX and OpenCV rounds alternate so that
    load from other processes affects both alike;
  * the end-point error (mean over pixels, px) of both, and of zero flow, on
    each full-resolution FlyingChairs pair in shared/data/flow/flyingchairs;
  * ``roofline``: ``roofline.summary`` of the compiled batch (predicted seconds and
    pairs/s on an H100 / H200, measured/predicted on a GPU). TV-L1's loops stop
    early, so XLA cannot know their trip counts: they are counted at their
    maximum (``outer_iterations`` median filterings x ``inner_iterations``
    primal-dual steps per warp), an UPPER bound on the work ("bound": "upper").
OpenCV numbers are null when ``cv2.optflow`` is missing. ``--cpu-devices N``
splits the host CPU into N XLA devices (one solver thread each) and shards the
batch over them.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np
from PIL import Image

CHAIRS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flow" / "flyingchairs"

try:
  import cv2
  cv2.optflow.DualTVL1OpticalFlow_create  # noqa: B018
except (ImportError, AttributeError):
  cv2 = None


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--rounds", type=int, default=3, help="timed JAX batches (and OpenCV rounds)")
  parser.add_argument("--size", default="320x240", help="WxH of the throughput pairs")
  parser.add_argument("--opencv-pairs", type=int, default=3, help="OpenCV pairs per round")
  parser.add_argument("--no-chairs", action="store_true", help="skip the full-size EPE comparison")
  parser.add_argument("--cpu-devices", type=int, default=0, help="XLA host devices (0: default)")
  parser.add_argument("--compile_only", action="store_true", help="compile and roofline figures only")
  parser.add_argument("--tiny", action="store_true", help="TINY_PARAMS instead of OpenCV's (a smoke check)")
  args = parser.parse_args()
  if args.cpu_devices:  # must happen before jax is imported
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.cpu_devices}")
  return args


ARGS = parse_args() if __name__ == "__main__" else None
import jax  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import roofline  # noqa: E402
from arsr_jax.flow import io as flow_io  # noqa: E402
from arsr_jax.flow import tvl1  # noqa: E402


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


TINY_PARAMS = tvl1.TVL1Params(nscales=1, warps=1, inner_iterations=5, outer_iterations=2)


def tvl1_trips(params: tvl1.TVL1Params) -> tuple[int, int]:
  """Maximum trips of TV-L1's early-stopping loops, outermost first (for ``roofline.cost``)."""
  return params.outer_iterations, params.inner_iterations


def epe(flow, gt) -> float:
  return float(np.mean(np.linalg.norm(np.asarray(flow, np.float64) - gt, axis=-1)))


def main(args) -> None:
  width, height = (int(v) for v in args.size.split("x"))
  params = TINY_PARAMS if args.tiny else tvl1.TVL1Params()
  chairs = load_chairs()
  if chairs:
    sources = [(g0, g1) for _, g0, g1, _ in chairs]
  else:  # no data: a smooth random texture moving by (1.5, -0.7) px
    rng = np.random.default_rng(0)
    big = np.asarray(Image.fromarray(rng.integers(0, 255, (height // 8, width // 8), np.uint8))
                     .resize((width + 8, height + 8), Image.BICUBIC))
    sources = [(big[4:4 + height, 4:4 + width], big[5:5 + height, 2:2 + width])]
  pairs = [tuple(np.asarray(Image.fromarray(g).resize((width, height), Image.BILINEAR)) for g in p)
           for p in sources]
  # Round r: JAX solves batch r (pairs r*B .. r*B+B-1, cycling), OpenCV the next
  # --opencv-pairs pairs, cycling too: both see the pairs equally often.
  batches = [tuple(np.stack([pairs[(r * args.batch + i) % len(pairs)][k] for i in range(args.batch)])
                   for k in (0, 1)) for r in range(args.rounds)]

  run = tvl1.tvl1_flow_sharded if jax.device_count() > 1 else tvl1.tvl1_flow
  t0 = time.perf_counter()
  batch_fn = jax.jit(lambda a, b: run(a, b, params)).lower(*batches[0]).compile()
  compile_s = time.perf_counter() - t0
  cost = roofline.safe_cost(batch_fn, tvl1_trips(params))
  on_gpu, per_device = jax.default_backend() == "gpu", args.batch / jax.device_count()
  if args.compile_only:
    print(json.dumps({"device": jax.devices()[0].device_kind, "frame_size_wh": [width, height],
                      "batch": args.batch, "jax_compile_s": round(compile_s, 2),
                      "roofline": roofline.summary(cost, "float32", per_device, "pairs"),
                      "roofline_peaks": roofline.peaks()}))
    return
  jax.block_until_ready(batch_fn(*batches[0]))  # warm-up

  jax_time, cv_time, cv_pairs = 0.0, 0.0, 0
  cv_tvl1 = opencv_tvl1(params) if cv2 is not None else None
  for r in range(args.rounds):
    t0 = time.perf_counter()
    jax.block_until_ready(batch_fn(*batches[r]))
    jax_time += time.perf_counter() - t0
    if cv_tvl1 is not None:
      for k in range(args.opencv_pairs):
        a, b = pairs[(r * args.opencv_pairs + k) % len(pairs)]
        t0 = time.perf_counter()
        cv_tvl1.calc(a, b, None)
        cv_time += time.perf_counter() - t0
        cv_pairs += 1
  jax_rate = args.batch * args.rounds / jax_time
  cv_rate = cv_pairs / cv_time if cv_pairs else None

  result = {
      "device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
      "device_count": jax.device_count(), "frame_size_wh": [width, height],
      "batch": args.batch, "rounds": args.rounds, "params": "tiny" if args.tiny else "OpenCV defaults",
      "jax_compile_s": round(compile_s, 2),
      "jax_pairs_per_s": round(jax_rate, 3),
      "opencv_pairs_per_s": round(cv_rate, 3) if cv_rate else None,
      "opencv_threads": cv2.getNumThreads() if cv2 is not None else None,
      "jax_over_opencv": round(jax_rate / cv_rate, 2) if cv_rate else None,
      "host_cpus": os.cpu_count(), "host_load_avg_1min": round(os.getloadavg()[0], 2),
      "roofline": roofline.summary(cost, "float32", per_device, "pairs", jax_time / args.rounds, on_gpu),
      "roofline_peaks": roofline.peaks(),
  }
  if chairs and not args.no_chairs:
    grey0 = np.stack([g0 for _, g0, _, _ in chairs])
    grey1 = np.stack([g1 for _, _, g1, _ in chairs])
    flows = np.asarray(run(grey0, grey1, params))
    result["flyingchairs_epe"] = {
        name: {"jax": round(epe(flows[i], gt), 4),
               "opencv": round(epe(cv_tvl1.calc(g0, g1, None), gt), 4) if cv_tvl1 else None,
               "zero_flow": round(epe(np.zeros_like(gt), gt), 4)}
        for i, (name, g0, g1, gt) in enumerate(chairs)}
  print(json.dumps(result))


if __name__ == "__main__":
  main(ARGS)
