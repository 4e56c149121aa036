"""Throughput of the evaluation protocol's two-stream pipeline (steps/protocol.py).

  python benchmarks/eval_bench.py                    # UCF101 size: 320x240 HR, x4, 25 segments, stacks of 5
  python benchmarks/eval_bench.py --size smoke       # 64x64, 3 segments of 3 flows (a CPU check)
  python benchmarks/eval_bench.py --frames ../shared/data/clips   # real frames (the default when present)
  python benchmarks/eval_bench.py --views 10 --crop 224    # the full protocol's 10 TSN views of 224 px crops

Frames: real video by default (``--frames``: a folder of videos, or the shared held-out clips when
they exist). TV-L1 stops early per pyramid level, so its cost depends on the motion in the frames:
uniform noise has no coherent motion and converges differently from real video. Each benchmark
video takes its segments from one clip (resized to the benchmark's HR size, LR by bicubic
downsampling, as the protocol does); ``--frames noise`` restores the old random frames.
A machine without PyAV or the clips (a lent GPU) takes them as an .npz written here:
  python benchmarks/eval_bench.py --save_frames .device/eval_frames.npz --batch 1   # then carry .device
  python benchmarks/eval_bench.py --frames .device/eval_frames.npz

Per method and video: the spatial SR of 25 LR frames, the temporal SR of 25 x 6 frames, TV-L1 on
the 25 x 5 SR frame pairs, TSN uint8 flow storage, the spatial and temporal ResNet-50 TSN streams,
PSNR/SSIM and the warping error, all in one jitted, batch-sharded step (random weights and
frames: the speed does not depend on them). Prints ONE JSON object:
  videos_per_s       the whole step (VDSR-20 SR for both streams), steady state;
  stage videos/s     SR only, TV-L1 only, recognition only (the same shapes, separately jitted;
                     not with --no_stages);
  ucf101_split1_min  minutes for UCF101 split 1's 3,783 test videos at that rate (target: <= 10,
                     i.e. >= 6.3 videos/s on one H100);
  opencv_tvl1        the reference pipeline's flow alone: OpenCV DualTVL1 (CPU, same parameters) on
                     a few pairs -> videos/s for 125 pairs per video, and our ratio over it;
  roofline           ``roofline.summary`` of the full step and of each stage: predicted seconds and
                     videos/s on an H100 / H200 (measured/predicted on a GPU); TV-L1's early-stopping
                     loops counted at their maximum trips, so an upper bound on the work;
  roofline_at_measured_work  the full step and the TV-L1 stage with TV-L1's loops counted at the
                     work the TV-L1 stage measured on these frames (``flow_bench.measured_cost``;
                     the step runs TV-L1 on the SR frames, the stage on the HR ones); not with
                     --no_stages or --compile_only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import aot  # noqa: E402

if __name__ == "__main__" and aot.requested():
  aot.setup()  # before jax is imported (flow_bench imports it)
import flow_bench  # noqa: E402
import roofline  # noqa: E402

SHARED_CLIPS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"
SIZES = {"ucf101": dict(h=240, w=320, segments=25, flow_stack=5, depth=50, width=64, layers=20, features=64),
         "smoke": dict(h=64, w=64, segments=3, flow_stack=3, depth=18, width=8, layers=4, features=16)}


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", choices=sorted(SIZES), default="ucf101")
  p.add_argument("--batch", type=int, default=0, help="videos per step (0: one per device)")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--opencv-pairs", type=int, default=2)
  p.add_argument("--dtype", default="auto")
  p.add_argument("--compile_only", action="store_true",
                 help="compile only: roofline upper bounds of the full step and the SR and recognition stages")
  aot.add_argument(p, "with --compile_only: the programs compiled for this GPU without one (aot.py)")
  p.add_argument("--no_stages", action="store_true", help="time the full step only")
  p.add_argument("--frames", default=str(SHARED_CLIPS) if SHARED_CLIPS.is_dir() else "noise",
                 help="folder of videos, an .npz from --save_frames, or 'noise' (default: the shared clips if present)")
  p.add_argument("--save_frames", default="", help="write the step's input frames to this .npz and exit")
  p.add_argument("--tiny_tvl1", action="store_true", help="1 scale, 1 warp, 2 x 5 iterations (a smoke check)")
  p.add_argument("--views", type=int, choices=(1, 10), default=1,
                 help="test views per segment (protocol.views; the figures in benchmarks/README are 1 view)")
  p.add_argument("--crop", type=int, default=0,
                 help="the recognizers' crop side (0: whole frames; the TSN recipes' is 224)")
  p.add_argument("--tvl1_storage", choices=("float32", "float16"), default="float32",
                 help="TVL1Params.storage: dtype of p and the data term between TV-L1 steps")
  args = p.parse_args()
  if args.aot and not args.compile_only:
    p.error("--aot needs --compile_only (nothing runs on a GPU this host does not have)")
  aot.check(p, args)
  return args


def timed(fn, args, rounds, trips=()):
  """(compile seconds, seconds per call after a warm-up, compiled program's ``roofline.cost``, program,
  the last call's output)."""
  import jax
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  out = jax.block_until_ready(compiled(*args))  # warm-up
  start = time.perf_counter()
  for _ in range(rounds):
    out = jax.block_until_ready(compiled(*args))
  return compile_s, (time.perf_counter() - start) / rounds, roofline.safe_cost(compiled, trips), compiled, out


def main():
  args = parse_args()
  import jax
  import jax.numpy as jnp
  from arsr_jax import models, precision, sharding
  from arsr_jax.evaluation import frozen
  from arsr_jax.flow import tvl1
  from arsr_jax.models import layers
  from arsr_jax.recognition import TSN
  from arsr_jax.steps import protocol as protocol_steps
  from arsr_jax.steps import recognition as rec_steps

  s = SIZES[args.size]
  mesh = sharding.make_mesh()
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  batch = args.batch or mesh.devices.size
  dtype = precision.compute_dtype(args.dtype, "gpu" if args.aot else None)
  h, w, seg, length = s["h"], s["w"], s["segments"], s["flow_stack"]
  rng = np.random.default_rng(0)
  key = jax.random.key(0)

  if args.frames == "noise":
    host = _noise_videos(rng, batch, seg, length, h, w)
  elif args.frames.endswith(".npz"):
    host = _load_videos(args.frames, batch, seg, length, h, w)
  else:
    host = _real_videos(args.frames, batch, seg, length, h, w)
  if args.save_frames:
    pathlib.Path(args.save_frames).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.save_frames, tp_hr=host["tp_hr"], tp_lr=host["tp_lr"])  # sp_* are their centres
    print(json.dumps({"saved_frames": args.save_frames, "videos": batch}))
    return

  gpu_opts = {"scan_unroll": layers.ACCELERATOR_UNROLL[False]} if args.aot else {}  # the loop a GPU runs
  sr_model = models.build_model("vdsr", 4, num_layers=s["layers"], features=s["features"], dtype=dtype, **gpu_opts)
  sr_vars = jax.device_put(sr_model.init(key, jnp.zeros((1, h // 4, w // 4, 3)), train=False), repl)
  sr = frozen.FrozenSR("vdsr", sr_model, sr_vars, 4, 1, {}, 0)
  recs = {}
  for name, modality, ch in (("spatial", "rgb", 3), ("temporal", "flow", 2 * length)):
    net = TSN(modality=modality, num_classes=101, depth=s["depth"], width=s["width"], flow_stack=length,
              dtype=dtype)
    v = net.init({"params": key, "dropout": key}, jnp.zeros((1, 1, h, w, ch)), train=False)
    recs[name] = frozen.FrozenRecognizer(net, jax.device_put(v, repl), modality, 101, length, 0, "random",
                                         crop_size=args.crop)
  params = tvl1.TVL1Params()  # OpenCV defaults, as the reference pipeline (denseflow) runs them
  if args.tiny_tvl1:
    params = tvl1.TVL1Params(nscales=1, warps=1, inner_iterations=5, outer_iterations=2)
  params = dataclasses.replace(params, storage=args.tvl1_storage)

  data = jax.device_put(host, batched)
  target = aot.target(args.aot) if args.aot else None  # a compile-only GPU
  step = protocol_steps.make_two_stream_step(sr, sr, recs, params, 20.0, 4, True, mesh=target.mesh if target else None,
                                 views=args.views)
  full = jax.jit(step) if args.aot else jax.jit(step, in_shardings=(batched,), out_shardings=batched)
  print(f"timing the full step on {batch} videos ...", file=sys.stderr)
  trips = flow_bench.tvl1_trips(params)  # TV-L1's early-stopping loops, at most
  per_device = batch / mesh.devices.size
  if not args.no_stages:  # the SR and recognition stages alone, on the step's shapes: (program, inputs)
    lr_frames = jax.device_put(host["tp_lr"].reshape((-1, 1, h // 4, w // 4, 3)), batched)
    stacks = jax.device_put(rng.normal(size=(batch, seg, h, w, 2 * length)).astype(np.float32), batched)
    rgb = jax.device_put(rng.random((batch, seg, h, w, 3)).astype(np.float32), batched)
    stages = {"sr": (jax.jit(lambda x: protocol_steps.super_resolve(sr, x, jnp.zeros(x.shape[:-4] + (h, w, 3)))), (lr_frames,)),
              "recognition": (jax.jit(lambda r, f: [rec_steps.apply(
                  recs[k].model, recs[k].variables, recs[k].kind,
                  {"rgb": protocol_steps.tsn_views(r, args.crop, args.views), "flow": protocol_steps.tsn_views(f, args.crop, args.views, True)},
                  train=False) for k in recs]), (rgb, stacks))}
  if args.compile_only:  # roofline upper bounds of the full step and of the SR and recognition stages
    start = time.perf_counter()
    programs = {"full": (full, (data,), trips)}
    if not args.no_stages:
      programs.update({name: (fn, a, ()) for name, (fn, a) in stages.items()})
    if target:  # the same programs, compiled by XLA:GPU for a GPU this host does not have
      programs = {name: (fn, aot.specs(a, target), t) for name, (fn, a, t) in programs.items()}
    costs = {name: roofline.safe_cost(fn.lower(*a).compile(), t) for name, (fn, a, t) in programs.items()}
    print(json.dumps({"size": args.size, "batch_videos": batch, "views": args.views, "crop": args.crop,
                      "dtype": dtype.name,
                      "compiled_for": f"{args.aot} (deviceless)" if args.aot else "this host",
                      "compile_s": round(time.perf_counter() - start, 2),
                      "roofline": {name: roofline.summary(c, dtype.name, per_device, "videos")
                                   for name, c in costs.items()},
                      "roofline_peaks": roofline.peaks()}))
    return
  compile_s, sec, cost, full_program, _ = timed(full, (data,), args.rounds, trips)
  out = {"size": args.size, "device": str(jax.devices()[0].device_kind), "devices": mesh.devices.size,
         "tvl1_storage": params.storage,
         "batch_videos": batch, "frame": f"{w}x{h}", "segments": seg, "flows_per_stack": length,
         "views": args.views, "crop": args.crop,
         "frames": "noise" if args.frames == "noise" else f"real ({pathlib.Path(args.frames).name})",
         "dtype": str(dtype), "compile_s": round(compile_s, 2), "videos_per_s": batch / sec}

  on_gpu = jax.default_backend() == "gpu"
  timings = [("full", sec, cost)]  # (name, seconds per call, roofline.cost)
  if not args.no_stages:  # stages, separately jitted on the same shapes
    timings.append(("sr", *timed(*stages["sr"], args.rounds)[1:3]))
    frames = jax.device_put(host["tp_hr"].reshape((-1, h, w, 3)).astype(np.float32) / 255.0, batched)

    compact = mesh.devices.size == 1  # the step compacts per device (tvl1_flow_sharded); here one device does

    def flow_only(f, compact=compact):  # the consecutive pairs of every stack: batch * seg * length of them
      stacks = f.reshape((-1, length + 1, h, w, 3))
      return tvl1.tvl1_flow(stacks[:, :-1].reshape((-1, h, w, 3)), stacks[:, 1:].reshape((-1, h, w, 3)), params,
                            compact=compact, return_stats=True)
    *flow_timing, flow_program, (_, stats) = timed(jax.jit(flow_only), (frames,), args.rounds, trips)
    timings.append(("tvl1", *flow_timing[1:]))
    at_work = _tvl1_at_work(stats, jax.jit(functools.partial(flow_only, compact=False)), frames,
                            {"full": full_program, "tvl1": flow_program}, params, compact, h, w)
    timings.append(("recognition", *timed(*stages["recognition"], args.rounds)[1:3]))
    out["stage_videos_per_s"] = {name: batch / t for name, t, _ in timings[1:]}
  out["roofline"] = {name: roofline.summary(c, dtype.name, per_device, "videos", t, on_gpu)
                     for name, t, c in timings}
  if not args.no_stages:
    seconds = {name: t for name, t, _ in timings}
    out["roofline_at_measured_work"] = {
        name: roofline.summary(c, dtype.name, per_device, "videos", seconds[name], on_gpu) if c else None
        for name, c in at_work.items()}
  out["roofline_peaks"] = roofline.peaks()
  out["ucf101_split1_min"] = 3783 / out["videos_per_s"] / 60
  out["target_videos_per_s"] = 6.3
  out["opencv_tvl1"] = _opencv(rng, h, w, args.opencv_pairs, seg * length, out["videos_per_s"])
  print(json.dumps(out, indent=2))


def _tvl1_at_work(stats, flow_full_width, frames, programs, params, compact, h, w) -> dict:
  """{name: roofline cost of ``programs[name]`` with TV-L1's loops at the work ``stats`` measured on ``frames``}."""
  pairs = int(stats["steps"].shape[0])
  level_px = [a * b for a, b in flow_bench.tvl1.pyramid_shapes(h, w, params)]
  done = flow_bench.work(stats, pairs, compact, params, level_px)
  width = flow_full_width.lower(frames).compile()  # every pair at every trip: the per-trip costs
  parts = {t: roofline.safe_cost(width, t) for t in ((0, 0), (1, 0), (1, 1))}
  if not all(parts.values()):
    return {name: None for name in programs}
  fixed = {name: roofline.safe_cost(p, (0, 0)) for name, p in programs.items()}
  return {name: flow_bench.measured_cost(parts, f, done, params, level_px) if f else None
          for name, f in fixed.items()}


def _noise_videos(rng, batch, seg, length, h, w):
  """Uniform random uint8 frames in the step's input layout."""
  return {"sp_lr": rng.integers(0, 256, (batch, seg, 1, h // 4, w // 4, 3), np.uint8),
          "sp_hr": rng.integers(0, 256, (batch, seg, h, w, 3), np.uint8),
          "tp_lr": rng.integers(0, 256, (batch, seg, length + 1, 1, h // 4, w // 4, 3), np.uint8),
          "tp_hr": rng.integers(0, 256, (batch, seg, length + 1, h, w, 3), np.uint8),
          "hr_flow": rng.normal(size=(batch, seg, length, h, w, 2)).astype(np.float16)}


def _real_videos(folder, batch, seg, length, h, w):
  """The step's inputs from real clips: video i of the batch samples ``seg`` evenly spaced stacks
  of ``length + 1`` consecutive frames from clip ``i mod #clips``, resized to h x w; the LR frames
  are their x4 bicubic downsampling (as the protocol's data). ``hr_flow`` is zeros: only the
  warping error reads it, and its cost does not depend on the values."""
  from arsr_jax.media import degrade, video
  paths = sorted(p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mkv", ".webm"))
  if not paths:
    raise SystemExit(f"--frames {folder}: no videos there (use --frames noise for random frames)")
  clips = []
  for i in range(batch):
    frames = video.read_video(paths[i % len(paths)], max_frames=seg * (length + 1) * 4)
    starts = np.linspace(0, max(0, len(frames) - length - 1), seg).astype(int)
    stacks = np.stack([frames[np.minimum(np.arange(a, a + length + 1), len(frames) - 1)] for a in starts])
    clips.append(np.asarray(degrade.resize(stacks.reshape((-1,) + frames.shape[1:]), h, w)))
  tp_hr = np.stack(clips).reshape((batch, seg, length + 1, h, w, 3))  # uint8
  tp_lr = np.asarray(degrade.bicubic_downsample(tp_hr, 4)).reshape((batch, seg, length + 1, 1, h // 4, w // 4, 3))
  return _inputs(tp_hr, tp_lr, length)


def _inputs(tp_hr, tp_lr, length):
  """The step's input dict from (batch, seg, length + 1, ...) HR and LR stacks; the spatial stream's
  frames are the stacks' centres."""
  batch, seg, _, h, w, _ = tp_hr.shape
  return {"sp_lr": tp_lr[:, :, length // 2], "sp_hr": tp_hr[:, :, length // 2], "tp_lr": tp_lr, "tp_hr": tp_hr,
          "hr_flow": np.zeros((batch, seg, length, h, w, 2), np.float16)}


def _load_videos(path, batch, seg, length, h, w):
  """``--save_frames`` output, its videos repeated to ``batch``; checks the benchmark size."""
  with np.load(path) as z:
    tp_hr, tp_lr = z["tp_hr"], z["tp_lr"]
  if tp_hr.shape[1:] != (seg, length + 1, h, w, 3):
    raise SystemExit(f"--frames {path}: frames of shape {tp_hr.shape[1:]}, this size needs "
                     f"{(seg, length + 1, h, w, 3)} (write them with the same --size)")
  return _inputs(*(np.resize(v, (batch,) + v.shape[1:]) for v in (tp_hr, tp_lr)), length)


def _opencv(rng, h, w, n, pairs_per_video, ours):
  if n <= 0:
    return None
  try:
    import cv2
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
  except (ImportError, AttributeError):
    return None
  a = (rng.random((h, w)) * 255).astype(np.uint8)
  b = np.roll(a, 1, axis=1)
  start = time.perf_counter()
  for _ in range(n):
    tvl1.calc(a, b, None)
  per_pair = (time.perf_counter() - start) / n
  videos_per_s = 1.0 / (per_pair * pairs_per_video)
  return {"pairs_per_s": 1.0 / per_pair, "videos_per_s": videos_per_s, "speedup_of_ours": ours / videos_per_s}


if __name__ == "__main__":
  main()
