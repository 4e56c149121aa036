"""Super-resolve your own videos, images and frame folders with a trained SR network.

  python -m arsr_jax.enhance INPUT OUTPUT [-n MODEL] [-s 4] [--outscale 2.5|1080p] [--dtype bfloat16]
      [--side_by_side] [--recognize] [--codec libx264|libx265|ffv1] [--pix_fmt yuv420p|yuv444p]
      [--crf 18] [--preset medium] [--suffix _out] [--skip_existing|--overwrite] [--report PATH]
  python -m arsr_jax.enhance -i INPUT -o OUTPUT ...    (Real-ESRGAN's short flags: -i -o -n -s)

INPUT: a video, an image (.png/.jpg/...), a folder of frames (images sorted by name: one video at
--fps), or a folder of videos. OUTPUT: a video file (.mp4/.mkv/.mov), an image file (image input), a
PNG frame pattern (e.g. out/%06d.png), or a folder (created if needed): INPUT/NAME.ext ->
OUTPUT/NAME{--suffix}.mp4 (.mkv for FFV1; NAME{--suffix}.png for an image; NAME{--suffix}/%06d.png with
--output_format png). The network is restored frozen from an SR workdir written by ``arsr_jax.main``,
or is a shipped pretrained model (``arsr_jax.pretrained.names()``) or a Real-ESRGAN peer
(``ncnn_import.MODELS``); without --model the shipped model of --scale (default 4). Frames are
decoded with PyAV, super-resolved in batches (inference.py; tiled when they do not fit the memory
budget), resized when --outscale asks (Lanczos, as Real-ESRGAN), and written with the source's frame
times, display matrix, colour tags and audio. Outputs are written to temporary names and moved into
place when complete; a failed or stopped run (SIGINT, SIGTERM) leaves nothing behind; an existing
output is refused unless --overwrite (or skipped with --skip_existing); in a folder, a video that
fails is reported and the others still run. Each run is appended to a JSON report
(OUTPUT's folder/enhance_report.json, or --report). Exit status: 2 refused before any work (usage),
1 videos failed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from typing import Any, TextIO

import jax
import jax.numpy as jnp
from absl import app, flags, logging

from arsr_jax import enhance_frames, enhance_io, enhance_recognize, inference, precision, pretrained, sharding
from arsr_jax.enhance_io import OUTPUT_EXTENSIONS
from arsr_jax.evaluation import frozen
from arsr_jax.models import ncnn_import
from arsr_jax.writers import ProgressBar

FLAGS = flags.FLAGS
DTYPES = ("float32", "bfloat16", "float16")
REPORT_NAME = "enhance_report.json"
HOW_TO_TRAIN = ("train one and pass its workdir, e.g. `python -m arsr_jax.main --config configs/vdsr.py "
                "--workdir workdirs/vdsr` (or configs/vdsr.py:smoke for a minute-long CPU run), then "
                "`--model workdirs/vdsr`")


@dataclasses.dataclass(frozen=True)
class Options:
  """What ``enhance`` does with each input (the command-line options)."""
  side_by_side: bool = False
  max_frames: int | None = None
  overwrite: bool = False
  skip_existing: bool = False
  recognize: bool = False
  tile: int | None = None  # LR pixels, 0 = whole frames, None = automatic (tiles when frames do not fit)
  tile_overlap: int | None = None  # LR pixels; None = twice the network's measured receptive radius
  memory_budget: int | None = None  # bytes per device call; None = the device's free memory
  batch: int = 8  # output frames per device call (clip models: batch // T windows, at least one)
  crf: int | None = None  # shorthand for encoding.crf
  clip_length: int = 0  # clip models: frames per window (0 = the training clip length)
  outscale: str | None = None  # output factor ('2.5') or height ('1080p'); None = the model's scale
  dtype: str | None = None  # SR compute dtype (DTYPES); None = the model's own (see load_model)
  suffix: str = "_out"  # appended to NAME for outputs put in a folder
  output_format: str = "auto"  # 'auto' (from OUTPUT; images -> png, else video), 'video' or 'png'
  encoding: enhance_io.Encoding = enhance_io.Encoding()
  fps: float = enhance_io.DEFAULT_FPS  # frames/s of a frame folder
  report: str | None = None  # JSON report path; None = OUTPUT's folder / REPORT_NAME

  def __post_init__(self):
    if self.crf is not None and self.encoding.crf is None:
      object.__setattr__(self, "encoding", dataclasses.replace(self.encoding, crf=self.crf))


def enhance(input_path: str, output_path: str, model: str | None, scale: int | None = None,
            options: Options = Options(), stream: TextIO | None = None) -> list[dict[str, Any]]:
  """Super-resolves INPUT (a video, an image, a frame folder or a folder of videos) into OUTPUT.

  Returns one dict per input (also appended to the JSON report): {'input', 'output', 'status': 'ok',
  'frames', 'input_size', 'output_size' ([width, height]), 'model', 'scale', 'outscale', 'dtype',
  'seconds', 'frames_per_s', ...}, status 'skipped' (--skip_existing) or 'failed' with 'error' (the
  others are still processed). Raises before any work for a bad option, model, input or existing output.
  """
  stream = stream if stream is not None else sys.stderr
  options.encoding.check()
  if options.recognize:
    enhance_recognize.check_recognition()
  if options.max_frames is not None and options.max_frames < 1:
    raise ValueError(f"--max_frames must be >= 1, got {options.max_frames}")
  if options.dtype is not None and options.dtype not in DTYPES:
    raise ValueError(f"--dtype {options.dtype}: use one of {', '.join(DTYPES)}")
  if not options.fps > 0:
    raise ValueError(f"--fps {options.fps}: must be > 0")
  outscale = enhance_frames.parse_outscale(options.outscale)
  jobs = plan(input_path, output_path, options)
  if options.recognize and any(enhance_io.kind_of(src) != "video" or not dst.lower().endswith(OUTPUT_EXTENSIONS)
                               for src, dst, _ in jobs):
    raise ValueError("--recognize compares videos: it needs video inputs and video outputs")
  report = options.report or os.path.join(report_folder(output_path), REPORT_NAME)
  enhance_io.read_report(report)  # refuses a path that is not a report before any work
  mesh = sharding.make_mesh()
  sr, clip_length = load_model(model, mesh, scale, options.dtype)
  if scale is not None and scale != sr.scale:
    raise ValueError(f"--model {model} upscales x{sr.scale}, but --scale={scale} was asked: use a model "
                     f"trained with --config.scale={scale}, or drop --scale (--outscale resizes the output)")
  upscaler = inference.from_frozen(sr, options.clip_length or clip_length, mesh, batch=options.batch,
                                   tile=options.tile, overlap=options.tile_overlap,
                                   bicubic=options.side_by_side, memory_budget=options.memory_budget)
  name = os.path.basename(os.path.normpath(model)) if model and os.path.isdir(model) else (model or sr.name)
  common = {"model": name, "scale": sr.scale, "outscale": options.outscale, "dtype": dtype_name(sr, options.dtype)}
  recognizer = enhance_recognize.Recognizer() if options.recognize else None
  results, run = [], {"started": enhance_io.now(), "input": input_path, "output": output_path, **common,
                      "codec": options.encoding.codec, "pix_fmt": options.encoding.pix_fmt}
  try:
    for src, dst, skip in jobs:
      if skip:
        print(f"skipped {src}: {dst} exists (--skip_existing)", file=stream)
        results.append({"input": src, "output": dst, "status": "skipped", **common})
        continue
      try:
        results.append({**common, **enhance_video(src, dst, upscaler, options, recognizer, stream, outscale, name)})
      except Exception as e:  # noqa: BLE001 -- one video's failure (out of memory included) must not stop the rest
        message = describe_error(e, src)
        results.append({"input": src, "output": dst, "status": "failed", "error": message, **common})
        if len(jobs) == 1:
          raise VideoFailed(message) from e
        print(f"error: {message}", file=stream)
  finally:
    if results:
      enhance_io.write_report(report, {**run, "inputs": results})
  return results


def report_folder(output_path: str) -> str:
  """Where the report goes by default: OUTPUT if a folder, else the folder of the file or frame pattern."""
  if os.path.isdir(output_path) or not os.path.splitext(output_path)[1]:
    return output_path
  return os.path.dirname(os.path.abspath(output_path))


def dtype_name(sr: frozen.FrozenSR, asked: str | None) -> str:
  model = getattr(sr.model, "net", sr.model)
  return asked or jnp.dtype(getattr(model, "dtype", jnp.float32)).name


def describe_error(e: BaseException, src: str | None = None) -> str:
  """One line naming the video and the problem; the accelerator running out of memory (XLA's
  RESOURCE_EXHAUSTED) or the host (MemoryError) gets a hint."""
  text = (str(e).strip().splitlines() or [type(e).__name__])[0]
  if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or text == "MemoryError":
    text = (f"out of memory ({text[:200]}); pass a smaller --memory_budget, or --tile 128 --batch 1 "
            f"(a smaller tile and batch use less memory)")
  return f"{src}: {text}" if src and src not in text else text


def with_dtype(model, dtype: str, name: str):
  """``model`` computing in ``dtype`` (its ``dtype`` field; an ``Outscale``'s inner net's); parameters stay float32."""
  if "dtype" in getattr(model, "__dataclass_fields__", {}):
    return model.clone(dtype=jnp.dtype(dtype))
  if hasattr(model, "net"):
    return model.clone(net=with_dtype(model.net, dtype, name))
  raise ValueError(f"--dtype {dtype}: model {name} ({type(model).__name__}) has no compute dtype; use float32")


def load_model(spec: str | None, mesh: jax.sharding.Mesh, scale: int | None = None, dtype: str | None = None
               ) -> tuple[frozen.FrozenSR, int]:
  """(the frozen SR network, its training clip length) of an SR workdir or a pretrained model name.

  No ``spec``: the shipped model of ``scale`` (default 4; ``pretrained.DEFAULTS``). A name that is
  not a folder: ``arsr_jax.pretrained.load(name)`` (frame models: clip length 1). ``dtype`` (DTYPES):
  the compute dtype; None = a workdir's ``compute_dtype`` (auto: bfloat16 on accelerators), float32
  for shipped and Real-ESRGAN models.
  """
  if not spec:
    spec = pretrained.default(scale or 4)
  if os.path.isdir(spec):
    config = frozen.load_run_config(spec)
    compute = jnp.dtype(dtype) if dtype else precision.compute_dtype(config.get("compute_dtype", "auto"))
    sr = frozen.load_sr(spec, sharding.replicated(mesh), compute)
    return sr, int(config.data.get("clip_length", 1))
  if spec in ncnn_import.MODELS:  # Real-ESRGAN's released weights, imported (x8: x4 then a Lanczos resize)
    model, variables = ncnn_import.load(spec, scale or ncnn_import.NATIVE_SCALE)
    model = with_dtype(model, dtype, spec) if dtype else model
    return frozen.FrozenSR(spec, model, jax.device_put(variables, sharding.replicated(mesh)), model.scale, 1, {}, 0), 1
  if spec not in pretrained.names():
    raise FileNotFoundError(f"--model {spec}: no such workdir, and no pretrained model of that name (shipped: "
                            f"{', '.join(pretrained.names()) or 'none'}; Real-ESRGAN: "
                            f"{', '.join(ncnn_import.MODELS)}); or "
                            + HOW_TO_TRAIN)
  card = pretrained.card(spec)
  model, variables = pretrained.load(spec)
  model = with_dtype(model, dtype, spec) if dtype else model
  variables = jax.device_put(variables, sharding.replicated(mesh))
  return frozen.FrozenSR(spec, model, variables, int(card["scale"]), 1, {}, int(card["steps"])), 1


def plan(input_path: str, output_path: str, options: Options | bool = Options()) -> list[tuple[str, str, bool]]:
  """(input, output, skip) triples (``enhance_io.plan``); ``options`` True/False: just --overwrite."""
  o = Options(overwrite=options) if isinstance(options, bool) else options
  return enhance_io.plan(input_path, output_path, overwrite=o.overwrite, skip_existing=o.skip_existing,
                         output_format=o.output_format, suffix=o.suffix, encoding=o.encoding)


def enhance_video(src: str, dst: str, upscaler: inference.Upscaler, options: Options,
                  recognizer: enhance_recognize.Recognizer | None = None, stream: TextIO | None = None,
                  outscale: tuple[str, float] | None = None, model_name: str = "SR") -> dict[str, Any]:
  """Super-resolves one input into ``dst`` (via a temporary name, moved into place when complete).

  The source's frame times (variable frame rates included), display matrix (rotation) and colour
  tags (primaries, transfer, matrix, range) are kept in a video output; a source of more than 8 bits
  is said to be written as 8-bit."""
  stream = stream if stream is not None else sys.stderr
  source = enhance_io.Source(src, options.fps)
  props, s = source.props, upscaler.scale
  upscaler.output_shape(source.height, source.width)
  to_video = dst.lower().endswith(OUTPUT_EXTENSIONS)
  even = to_video and options.encoding.pix_fmt == "yuv420p"
  height, width = enhance_frames.output_size(source.height, source.width, s, outscale, props["rotation"], even)
  resize = enhance_frames.Resizer(height, width) if outscale else lambda f: f[:height, :width]
  rate = source.rate
  if not rate:
    rate = enhance_io.DEFAULT_FPS
    print(f"warning: {src} does not state its frame rate; writing {rate} frames/s", file=stream)
  plan = upscaler.plan(source.height, source.width)
  if plan.tile or options.tile is None and plan.batch < upscaler.batch:
    print(f"{os.path.basename(src)}: {plan.describe(source.height, source.width)}", file=stream)
  total = source.total
  if options.max_frames:
    total = min(total, options.max_frames) if total else options.max_frames
  join = enhance_frames.SideBySide(height, width, "bicubic", model_name) if options.side_by_side else None
  times = enhance_frames.Times(rate, source.time_base)
  start = time.perf_counter()
  out = enhance_io.Output(dst, rate, width * (2 if join else 1), height, source, options.encoding, times.time_base)
  try:
    bar = ProgressBar(total, desc=os.path.basename(os.path.normpath(src)), stream=stream)
    for sr, bicubic in upscaler(times.strip(source.frames(options.max_frames))):
      frame = resize(sr)
      out.write(join(resize(bicubic), frame) if join else frame, times.next())
      bar.update()
    bar.close()
    out.close()
    seconds = time.perf_counter() - start
    result = {"input": src, "output": dst, "status": "ok", "frames": out.frames,
              "input_size": [source.width, source.height], "output_size": [width * (2 if join else 1), height],
              "seconds": seconds, "frames_per_s": out.frames / seconds, "rate": float(rate),
              "audio": source.audio_codec, "rotation": props["rotation"], "tile": plan.tile, "batch": plan.batch}
    if recognizer is not None:
      result["top5"] = recognizer.compare(src, out.written, out.frames, s, options.side_by_side, props["rotation"])
    out.commit(options.overwrite)
  except BaseException:
    out.discard()
    raise
  notes = [f"audio ({source.audio_codec}) kept"] if source.audio and to_video else []
  if props["rotation"]:
    notes.append(f"rotation {props['rotation']} degrees kept (display matrix)" if to_video
                 else f"turned upright (rotation {props['rotation']} degrees)")
  if props["bits"] > 8:
    notes.append(f"{props['bits']}-bit source ({props['pix_fmt']}) written as 8-bit"
                 + (f" {options.encoding.pix_fmt}" if to_video else ""))
  layout = f"{2 * width}x{height} (bicubic | {model_name})" if join else f"{width}x{height}"
  what = f"at {float(rate):.3g} frames/s" if to_video else "PNG" if dst.endswith(".png") else "image"
  print(f"wrote {dst}: {out.frames} frame{'s' if out.frames != 1 else ''}, {layout} {what}"
        f"{''.join(', ' + n for n in notes)}, in {seconds:.1f} s ({result['frames_per_s']:.2f} frames/s)",
        file=stream)
  if recognizer is not None:
    print(recognizer.table(result["top5"]), file=stream)
  return result


class VideoFailed(RuntimeError):
  """The one video of a run failed while it was being enhanced (the message names it; cause chained)."""


class Stopped(BaseException):
  """SIGTERM (e.g. ``timeout``, a job scheduler) while enhancing: unwinds like Ctrl-C, removing partial files."""


def stop_on_sigterm() -> None:
  def handle(signum, frame):
    raise Stopped(signal.Signals(signum).name)
  signal.signal(signal.SIGTERM, handle)


def parse_tile(text: str) -> int | None:
  """--tile: 'auto' -> None, else LR pixels (0 = whole frames)."""
  if str(text).strip().lower() == "auto":
    return None
  try:
    tile = int(text)
  except ValueError:
    tile = -1
  if tile < 0:
    raise app.UsageError(f"--tile {text!r}: expected auto, 0 (whole frames) or a tile side in LR pixels", exitcode=2)
  return tile


def main(argv):
  if FLAGS.input or FLAGS.output:
    if len(argv) != 1 or not (FLAGS.input and FLAGS.output):
      raise app.UsageError("give INPUT and OUTPUT either as -i/--input and -o/--output or as two positional "
                           "arguments, not both", exitcode=2)
    argv = [argv[0], FLAGS.input, FLAGS.output]
  if len(argv) != 3:
    raise app.UsageError("usage: python -m arsr_jax.enhance INPUT OUTPUT [--model MODEL] [options] (or -i INPUT "
                         f"-o OUTPUT); got {len(argv) - 1} positional argument(s)", exitcode=2)
  logging.set_verbosity(logging.ERROR)  # Orbax warns on every read-only restore
  budget = FLAGS.memory_budget or os.environ.get("ARSR_MEMORY_BUDGET")
  try:
    budget = inference.parse_bytes(budget, "--memory_budget") if budget else None
  except ValueError as e:
    raise app.UsageError(str(e), exitcode=2) from e
  encoding = enhance_io.Encoding(FLAGS.codec, FLAGS.pix_fmt, FLAGS.crf, FLAGS.preset)
  options = Options(side_by_side=FLAGS.side_by_side, max_frames=FLAGS.max_frames, overwrite=FLAGS.overwrite,
                    skip_existing=FLAGS.skip_existing, recognize=FLAGS.recognize, tile=parse_tile(FLAGS.tile),
                    tile_overlap=FLAGS.tile_overlap, memory_budget=budget, batch=FLAGS.batch,
                    clip_length=FLAGS.clip_length, outscale=FLAGS.outscale, dtype=FLAGS.dtype, suffix=FLAGS.suffix,
                    output_format=FLAGS.output_format, encoding=encoding, fps=FLAGS.fps, report=FLAGS.report)
  stop_on_sigterm()
  try:
    results = enhance(argv[1], argv[2], FLAGS.model, FLAGS.scale, options)
  except (Stopped, KeyboardInterrupt) as e:
    name = str(e) or "SIGINT"
    print(f"error: stopped by {name}; the unfinished output was removed", file=sys.stderr)
    sys.exit(128 + signal.Signals[name].value)
  except VideoFailed as e:  # the one video of the run failed while working on it
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except (OSError, ValueError, ModuleNotFoundError) as e:  # refused before any work: a usage error
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)  # exit status: 2 refused (as arsr_jax.main, absl, argparse), 1 videos failed
  except Exception as e:  # noqa: BLE001 -- one line, no traceback, for any other failure
    print(f"error: {describe_error(e)}", file=sys.stderr)
    sys.exit(1)
  failed = [r for r in results if r["status"] == "failed"]
  if failed:
    print(f"error: {len(failed)} of {len(results)} videos failed: {', '.join(r['input'] for r in failed)}",
          file=sys.stderr)
    sys.exit(1)


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  flags.DEFINE_string("input", None, "INPUT (instead of the first positional argument).", short_name="i")
  flags.DEFINE_string("output", None, "OUTPUT (instead of the second positional argument).", short_name="o")
  flags.DEFINE_string("model", None, "SR workdir trained by arsr_jax.main, a shipped pretrained model name or a "
                      "Real-ESRGAN peer (default: the shipped model of --scale, e.g. corpus_x4).", short_name="n")
  flags.DEFINE_integer("scale", None, "The model's SR factor, picks the shipped model (default: the model's); "
                       "--outscale resizes the output to any size.", short_name="s")
  flags.DEFINE_string("outscale", None, "Output size: a factor of the input (e.g. 2, 3.5) or a height such as 1080p "
                      "(width keeps the aspect ratio); the model's scale, then a Lanczos resize. Default: the model's scale.")
  flags.DEFINE_enum("dtype", None, list(DTYPES), "SR compute dtype (default: the model's own; float32 for shipped "
                    "models). bfloat16/float16 are for GPUs/TPUs: on a CPU they are slower, not faster.")
  flags.DEFINE_bool("side_by_side", False, "Write bicubic | SR side by side (twice the width), labelled, with a divider.")
  flags.DEFINE_integer("max_frames", None, "Only the first N frames of each video.")
  flags.DEFINE_bool("overwrite", False, "Replace existing outputs (refused otherwise).")
  flags.DEFINE_bool("skip_existing", False, "Skip inputs whose output exists (instead of refusing the run).")
  flags.DEFINE_string("suffix", "_out", "Appended to an input's name for outputs written into a folder.")
  flags.DEFINE_enum("output_format", "auto", ["auto", "video", "png"], "auto: from OUTPUT (images stay images); "
                    "png: a PNG frame sequence (OUTPUT a folder or a pattern such as out/%06d.png).")
  flags.DEFINE_float("fps", enhance_io.DEFAULT_FPS, "Frames/s of a frame-folder input.")
  flags.DEFINE_enum("codec", "libx264", list(enhance_io.CODECS), "Video encoder; ffv1 is lossless (.mkv).")
  flags.DEFINE_enum("pix_fmt", "yuv420p", list(enhance_io.PIX_FMTS), "Output pixel format (yuv444p: full colour "
                    "resolution; fewer players support it).")
  flags.DEFINE_integer("crf", None, "x264/x265 constant rate factor: 0 lossless, 18 near-lossless (default), 23, 51 worst.")
  flags.DEFINE_enum("preset", None, list(enhance_io.PRESETS), "x264/x265 speed preset (default: medium).")
  flags.DEFINE_string("report", None, f"JSON report each run is appended to (default: OUTPUT's folder/{REPORT_NAME}).")
  flags.DEFINE_bool("recognize", False, "Print the Kinetics-400 I3D's top-5 on bicubic and on SR "
                    "(pip install -e '.[recognition]').")
  flags.DEFINE_string("tile", "auto", "Process frames in tiles of this many LR pixels; 0 = whole frames; auto = "
                      "whole frames if they fit --memory_budget, else the largest tile that does (printed).")
  flags.DEFINE_string("memory_budget", None, "Memory one accelerator call may use, e.g. 8G or 512M (default: "
                      "$ARSR_MEMORY_BUDGET, else 90% of the device's free memory, on CPU half the available RAM).")
  flags.DEFINE_integer("tile_overlap", None, "Overlap of neighbouring tiles, LR pixels (default: twice the "
                       "network's receptive radius, measured on it, so tiles match whole frames).")
  flags.DEFINE_integer("batch", 8, "Output frames per accelerator call (clip models: at least one window).")
  flags.DEFINE_integer("clip_length", 0, "Clip models (DVSR): frames per window (0 = the training clip length).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
