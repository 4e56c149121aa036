"""Extracts TV-L1 flow from a video into TSN / mmaction2-style flow images.

  python -m arsr_jax.flow INPUT.mp4 OUTDIR [--batch N] [--vis] [--max-frames N]
      [--overwrite] [--bound 20] [--tau 0.25 --lambda 0.15 ... (TVL1Params)]

For T frames it writes, for i = 1 .. T-1 (flow from frame i-1 to frame i):
  OUTDIR/flow_x_{i:05d}.png, OUTDIR/flow_y_{i:05d}.png   uint8 grey, the u / v
      components quantised as round((clip(f, -bound, bound) + bound) * 255 / (2 bound))
  OUTDIR/flow_vis_{i:05d}.png   Middlebury colour wheel (with --vis)

Frames are decoded as a stream and their pairs sent to the accelerator in
batches of --batch (the last one padded, so everything compiles once); writing
PNGs of one batch overlaps with computing the next. A progress bar (pairs,
total, pairs/s, ETA) goes to stderr from the start; the total is the
container's frame count, else duration x fps, else a count of its packets.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import jax
import numpy as np

from arsr_jax.media.video import count_frames, iter_frames, video_info
from arsr_jax.flow.io import TSN_BOUND, quantize_flow
from arsr_jax.flow.tvl1 import TVL1Params, tvl1_flow, tvl1_flow_sharded
from arsr_jax.flow.vis import flow_to_color, save_png
from arsr_jax.writers import ProgressBar


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m arsr_jax.flow", description=__doc__.split("\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("input", help="video file readable by FFmpeg/PyAV")
  parser.add_argument("outdir", help="output folder for the flow PNGs")
  parser.add_argument("--batch", type=int, default=8, help="frame pairs per accelerator call")
  parser.add_argument("--max-frames", type=int, default=None, help="use only the first N frames")
  parser.add_argument("--vis", action="store_true", help="also write colour-wheel images")
  parser.add_argument("--bound", type=float, default=TSN_BOUND, help="quantisation bound (px)")
  parser.add_argument("--overwrite", action="store_true", help="allow a non-empty OUTDIR")
  for field in dataclasses.fields(TVL1Params):
    flag = "--" + field.name.rstrip("_").replace("_", "-")
    parser.add_argument(flag, dest=field.name, type=type(field.default), default=field.default,
                        help=f"TVL1Params.{field.name}")
  return parser


def _batches(frames, batch: int):
  """Groups consecutive frames into (frame0s, frame1s, count) batches of pairs."""
  prev, first, second = None, [], []
  for frame in frames:
    if prev is not None:
      first.append(prev)
      second.append(frame)
      if len(first) == batch:
        yield np.stack(first), np.stack(second), batch
        first, second = [], []
    prev = frame
  if first:
    count = len(first)
    pad = [first[-1]] * (batch - count)  # keep the compiled batch shape
    yield np.stack(first + pad), np.stack(second + [second[-1]] * len(pad)), count


def _write(outdir: str, start: int, flow, count: int, bound: float, vis: bool) -> None:
  quantized = np.asarray(quantize_flow(flow[:count], bound))
  flow = np.asarray(flow[:count]) if vis else None
  for k in range(count):
    index = start + k
    save_png(os.path.join(outdir, f"flow_x_{index:05d}.png"), quantized[k, ..., 0])
    save_png(os.path.join(outdir, f"flow_y_{index:05d}.png"), quantized[k, ..., 1])
    if vis:
      save_png(os.path.join(outdir, f"flow_vis_{index:05d}.png"), flow_to_color(flow[k]))


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  if args.batch < 1:
    return _fail(f"--batch must be >= 1, got {args.batch}")
  if args.max_frames is not None and args.max_frames < 2:
    return _fail(f"--max-frames must be >= 2 (one frame pair), got {args.max_frames}")
  try:
    params = TVL1Params(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TVL1Params)})
  except ValueError as e:
    return _fail(str(e))
  if os.path.exists(args.outdir) and not os.path.isdir(args.outdir):
    return _fail(f"output path {args.outdir} exists and is not a folder")
  if os.path.isdir(args.outdir) and os.listdir(args.outdir) and not args.overwrite:
    return _fail(f"output folder {args.outdir} is not empty; pass --overwrite to write into it")
  try:
    total = max(count_frames(args.input, video_info(args.input)) - 1, 0)
  except (OSError, ValueError) as e:
    return _fail(str(e))
  if args.max_frames:
    total = min(total, args.max_frames - 1) if total else args.max_frames - 1
  created = not os.path.exists(args.outdir)
  os.makedirs(args.outdir, exist_ok=True)
  flow_fn = tvl1_flow_sharded if jax.device_count() > 1 else tvl1_flow

  bar = ProgressBar(total, desc=f"TV-L1 flow of {os.path.basename(args.input)}", unit="pairs")
  done, pending = 0, None
  try:
    for frame0, frame1, count in _batches(iter_frames(args.input, args.max_frames), args.batch):
      flow = flow_fn(frame0, frame1, params)  # asynchronous dispatch
      if pending is not None:  # write the previous batch while this one runs
        _write(args.outdir, done + 1, *pending, args.bound, args.vis)
        done += pending[1]
        bar.update(pending[1])
      pending = (flow, count)
    if pending is None:
      raise ValueError(f"{args.input} has fewer than 2 frames: no flow to compute")
    _write(args.outdir, done + 1, *pending, args.bound, args.vis)
    done += pending[1]
    bar.update(pending[1])
  except (OSError, ValueError) as e:
    if created and not os.listdir(args.outdir):
      os.rmdir(args.outdir)
    return _fail(str(e))
  bar.close()
  print(f"wrote flow for {done} frame pairs of {args.input} to {args.outdir}", file=sys.stderr)
  return 0


def _fail(message: str) -> int:
  print(f"error: {message}", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
