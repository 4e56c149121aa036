"""Make the low-resolution test input of a high-resolution clip, with the project's bicubic downsampling.

  python -m arsr_jax.degrade HR_INPUT LR_OUTPUT [--scale 4] [--max_frames N] [--overwrite]
      [--codec libx264|libx265|ffv1] [--pix_fmt yuv420p|yuv444p] [--crf 18] [--preset medium]
  arsr-degrade -i clip.mp4 -o clip_lr.mp4 -s 4

Each frame is cut to a multiple of 2 x scale pixels (the bottom rows and right columns beyond it, as
the SR benchmarks' "modcrop"; at most 2 x scale - 1 of each), then downsampled by ``scale`` with
``arsr_jax.media.degrade.bicubic_downsample`` (antialiased Keys cubic, MATLAB ``imresize``'s), the
degradation the models were trained on. The LR sizes are thus even (H.264 4:2:0 needs them; ffmpeg's
``scale=iw/4:-2`` can give odd widths) and ``enhance`` at the same scale gives back the cut HR size.
INPUT is a video, an image or a folder of frames (as ``enhance``); the output keeps the source's frame
times, display matrix (rotation), colour tags and audio, is written to a temporary file and renamed
when complete; an existing OUTPUT is refused unless --overwrite. Exit status 2: refused (usage);
1: failed while working.
"""

from __future__ import annotations

import os
import sys
import time

import jax
from absl import app, flags

from arsr_jax import enhance_frames, enhance_io
from arsr_jax.media import degrade

FLAGS = flags.FLAGS


def lr_size(height: int, width: int, scale: int) -> tuple[int, int]:
  """(h, w) of the LR frames: the largest even sizes with h * scale <= height, w * scale <= width."""
  return height // (2 * scale) * 2, width // (2 * scale) * 2


def prepare(src: str, dst: str, scale: int, *, overwrite: bool = False,
            encoding: enhance_io.Encoding = enhance_io.Encoding(), fps: float = enhance_io.DEFAULT_FPS
            ) -> tuple[str, enhance_io.Source]:
  """(output path, source) of a run; raises ValueError / OSError (one line) for bad arguments, before any work.
  ``dst``: a .mp4/.mkv/.mov file, a frame pattern (out/%06d.png), or a folder (NAME_x{scale}.mp4 in it)."""
  if scale < 2:
    raise ValueError(f"--scale {scale}: must be an integer >= 2")
  encoding.check()
  if os.path.exists(src) and enhance_io.kind_of(src) == "videos":
    raise ValueError(f"{src} is a folder of videos; degrade takes one video, image or frame folder")
  (src, dst, _), = enhance_io.plan(src, dst, overwrite=overwrite, suffix=f"_x{scale}", encoding=encoding)
  source = enhance_io.Source(src, fps)
  if min(lr_size(source.height, source.width, scale)) < 2:
    raise ValueError(f"{src}: {source.width}x{source.height} is too small to downsample x{scale} to even sizes")
  return dst, source


def degrade_video(src: str, dst: str, scale: int, *, max_frames: int | None = None, overwrite: bool = False,
                  encoding: enhance_io.Encoding = enhance_io.Encoding(), fps: float = enhance_io.DEFAULT_FPS,
                  stream=None) -> dict:
  """Writes the x``scale`` bicubic downsampling of ``src`` to ``dst`` (see ``prepare``). Returns {'input',
  'output', 'frames', 'input_size', 'output_size', 'cropped', 'seconds'} (sizes and crops [width, height])."""
  stream = stream if stream is not None else sys.stderr
  if max_frames is not None and max_frames < 1:
    raise ValueError(f"--max_frames must be >= 1, got {max_frames}")
  dst, source = prepare(src, dst, scale, overwrite=overwrite, encoding=encoding, fps=fps)
  h, w = lr_size(source.height, source.width, scale)
  hr_h, hr_w = h * scale, w * scale
  down = jax.jit(lambda f: degrade.bicubic_downsample(f[:hr_h, :hr_w], scale))
  rate = source.rate or enhance_io.DEFAULT_FPS
  times = enhance_frames.Times(rate, source.time_base)
  start = time.perf_counter()
  out = enhance_io.Output(dst, rate, w, h, source, encoding, times.time_base)
  try:
    for frame in times.strip(source.frames(max_frames)):
      out.write(jax.device_get(down(frame)), times.next())
    out.close()
    out.commit(overwrite)
  except BaseException:
    out.discard()
    raise
  seconds = time.perf_counter() - start
  cropped = [source.width - hr_w, source.height - hr_h]
  note = f" (cut {cropped[0]} columns, {cropped[1]} rows first)" if any(cropped) else ""
  print(f"wrote {dst}: {out.frames} frame{'s' if out.frames != 1 else ''}, {source.width}x{source.height} -> "
        f"{w}x{h}{note}, bicubic x{scale}, in {seconds:.1f} s", file=stream)
  return {"input": src, "output": dst, "frames": out.frames, "input_size": [source.width, source.height],
          "output_size": [w, h], "cropped": cropped, "seconds": seconds}


def main(argv):
  if FLAGS.input or FLAGS.output:
    if len(argv) != 1 or not (FLAGS.input and FLAGS.output):
      raise app.UsageError("give INPUT and OUTPUT either as -i and -o or as two positional arguments", exitcode=2)
    argv = [argv[0], FLAGS.input, FLAGS.output]
  if len(argv) != 3:
    raise app.UsageError("usage: python -m arsr_jax.degrade HR_INPUT LR_OUTPUT [--scale 4] [options]; got "
                         f"{len(argv) - 1} positional argument(s)", exitcode=2)
  encoding = enhance_io.Encoding(FLAGS.codec, FLAGS.pix_fmt, FLAGS.crf, FLAGS.preset)
  try:
    if FLAGS.max_frames is not None and FLAGS.max_frames < 1:
      raise ValueError(f"--max_frames must be >= 1, got {FLAGS.max_frames}")
    prepare(argv[1], argv[2], FLAGS.scale, overwrite=FLAGS.overwrite, encoding=encoding, fps=FLAGS.fps)
  except (OSError, ValueError) as e:  # refused before any work: a usage error
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  try:
    degrade_video(argv[1], argv[2], FLAGS.scale, max_frames=FLAGS.max_frames, overwrite=FLAGS.overwrite,
                  encoding=encoding, fps=FLAGS.fps)
  except KeyboardInterrupt:
    print("error: stopped; the unfinished output was removed", file=sys.stderr)
    sys.exit(130)
  except Exception as e:  # noqa: BLE001 -- one line, no traceback
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def define_flags() -> None:
  flags.DEFINE_string("input", None, "HR_INPUT (instead of the first positional argument).", short_name="i")
  flags.DEFINE_string("output", None, "LR_OUTPUT (instead of the second positional argument).", short_name="o")
  flags.DEFINE_integer("scale", 4, "Downsampling factor (an integer >= 2; the SR models are x4 and x8).", short_name="s")
  flags.DEFINE_integer("max_frames", None, "Only the first N frames.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing output (refused otherwise).")
  flags.DEFINE_float("fps", enhance_io.DEFAULT_FPS, "Frames/s of a frame-folder input.")
  flags.DEFINE_enum("codec", "libx264", list(enhance_io.CODECS), "Video encoder; ffv1 is lossless (.mkv).")
  flags.DEFINE_enum("pix_fmt", "yuv420p", list(enhance_io.PIX_FMTS), "Output pixel format.")
  flags.DEFINE_integer("crf", None, "x264/x265 constant rate factor (default 18; 0 lossless).")
  flags.DEFINE_enum("preset", None, list(enhance_io.PRESETS), "x264/x265 speed preset (default: medium).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
