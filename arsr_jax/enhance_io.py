"""What ``enhance`` and ``degrade`` read and write: sources (videos, images, frame folders), encoder
options, where each input goes (``plan``), outputs written atomically (video files, PNG frame
sequences, images), and the JSON run report.

Frames are uint8 RGB (H, W, 3) throughout; frame times are seconds (Fractions) or None.
"""

from __future__ import annotations

import dataclasses
import datetime
import fractions
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

import av
import numpy as np
from PIL import Image, ImageOps

from arsr_jax.media import video

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".ts",
                    ".3gp", ".ogv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OUTPUT_EXTENSIONS = (".mp4", ".mkv", ".mov")
# codec -> containers it may be written to (FFV1 is lossless and lives in Matroska).
CODECS = {"libx264": (".mp4", ".mkv", ".mov"), "libx265": (".mp4", ".mkv", ".mov"), "ffv1": (".mkv",)}
PIX_FMTS = ("yuv420p", "yuv444p")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
DEFAULT_FPS = 25  # frames/s of an image sequence (and of a video that states none)
FRAME_PATTERN = "%06d.png"  # frames of a PNG sequence, numbered from 1 as ffmpeg's image2 muxer does


@dataclasses.dataclass(frozen=True)
class Encoding:
  """Video encoder options: ``codec`` in CODECS, ``pix_fmt`` in PIX_FMTS, ``crf`` (x264/x265; None = 18),
  ``preset`` (x264/x265 speed, None = the encoder's default 'medium')."""
  codec: str = "libx264"
  pix_fmt: str = "yuv420p"
  crf: int | None = None
  preset: str | None = None

  def check(self) -> None:
    """Raises ValueError (one line) for an option the encoder cannot take or PyAV lacks."""
    if self.codec not in CODECS:
      raise ValueError(f"--codec {self.codec}: use one of {', '.join(CODECS)}")
    if self.codec not in av.codecs_available:
      raise ValueError(f"--codec {self.codec}: this PyAV/FFmpeg build has no {self.codec} encoder")
    if self.pix_fmt not in PIX_FMTS:
      raise ValueError(f"--pix_fmt {self.pix_fmt}: use one of {', '.join(PIX_FMTS)}")
    if self.codec == "ffv1" and (self.crf is not None or self.preset):
      raise ValueError("--codec ffv1 is lossless: it takes no --crf or --preset")
    if self.crf is not None and not 0 <= self.crf <= 51:
      raise ValueError(f"--crf {self.crf}: must be 0 (lossless) .. 51 (worst)")
    if self.preset and self.preset not in PRESETS:
      raise ValueError(f"--preset {self.preset}: use one of {', '.join(PRESETS)}")

  def check_container(self, path: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext not in CODECS[self.codec]:
      raise ValueError(f"output {path}: {self.codec} cannot be written to {ext or 'a file without extension'}; "
                       f"use {'/'.join(CODECS[self.codec])}")

  @property
  def extension(self) -> str:
    return CODECS[self.codec][0]

  @property
  def crf_or_default(self) -> int | None:
    return None if self.codec == "ffv1" else (18 if self.crf is None else self.crf)


def kind_of(path: str) -> str:
  """'video', 'image', 'frames' (a folder of images, no videos), 'videos' (a folder of videos)."""
  if os.path.isdir(path):
    names = [f.lower() for f in os.listdir(path) if not f.startswith(".")]
    if any(f.endswith(VIDEO_EXTENSIONS) for f in names):
      return "videos"
    if any(f.endswith(IMAGE_EXTENSIONS) for f in names):
      return "frames"
    raise ValueError(f"{path} holds no video or image files (looked for {', '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)})")
  return "image" if path.lower().endswith(IMAGE_EXTENSIONS) else "video"


def read_image(path: str) -> np.ndarray:
  """uint8 RGB (H, W, 3) of an image file, turned upright by its EXIF orientation; ValueError naming it."""
  try:
    with Image.open(path) as im:
      return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
  except (OSError, Image.DecompressionBombError) as e:
    raise ValueError(f"cannot read image {path}: {e}") from e


class Source:
  """One input: a video file, an image file, or a folder of frames (sorted by name, one video at
  ``fps``). Attributes: kind, height, width, rate (Fraction), time_base, audio (a file to copy audio
  from, or None), props (``video.frame_properties``), total (frames, 0 if unknown)."""

  def __init__(self, path: str, fps: float = DEFAULT_FPS):
    self.path, self.kind = path, kind_of(path)
    if self.kind == "videos":
      raise ValueError(f"{path} is a folder of videos, not one input")
    if self.kind == "video":
      info = video.video_info(path)
      self.height, self.width, self.rate, self.total = info["height"], info["width"], info["rate"], 0
      self.time_base, self.props = video.time_base(path), video.frame_properties(path)
      self.audio = path if info["audio"] else None
      self.audio_codec, self.total = info["audio"], video.count_frames(path, info)
      return
    self.files = ([path] if self.kind == "image" else
                  [os.path.join(path, f) for f in sorted(os.listdir(path))
                   if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)])
    self.height, self.width = read_image(self.files[0]).shape[:2]
    self.rate = fractions.Fraction(fps).limit_denominator(1001)
    self.time_base, self.audio, self.audio_codec, self.total = None, None, None, len(self.files)
    self.props = {"display_matrix": None, "rotation": 0, "color": {}, "pix_fmt": "rgb24", "bits": 8}

  def frames(self, max_frames: int | None = None) -> Iterator[tuple[np.ndarray, fractions.Fraction | None]]:
    """(frame, time) pairs in order; frames of a folder must all have the first one's size."""
    if self.kind == "video":
      yield from video.iter_frames(self.path, max_frames, times=True)
      return
    for f in self.files[:max_frames]:
      frame = read_image(f)
      if frame.shape[:2] != (self.height, self.width):
        raise ValueError(f"{f}: {frame.shape[1]}x{frame.shape[0]} differs from the first frame's "
                         f"{self.width}x{self.height} (a frame folder is one video)")
      yield frame, None


def plan(input_path: str, output_path: str, *, overwrite: bool = False, skip_existing: bool = False,
         output_format: str = "auto", suffix: str = "_out", encoding: Encoding = Encoding()
         ) -> list[tuple[str, str, bool]]:
  """(input, output, skip) triples for INPUT and OUTPUT (see ``arsr_jax.enhance``); raises ValueError /
  FileNotFoundError / FileExistsError (one line) for a missing input, a bad, clashing or existing output."""
  if not os.path.exists(input_path):
    raise FileNotFoundError(f"input not found: {input_path}")
  if overwrite and skip_existing:
    raise ValueError("--overwrite and --skip_existing contradict each other: pass one")
  if output_format not in ("auto", "video", "png"):
    raise ValueError(f"--output_format {output_format}: use auto, video or png")
  kind = kind_of(input_path)
  sources = ([os.path.join(input_path, f) for f in sorted(os.listdir(input_path)) if not f.startswith(".")
              and os.path.isfile(os.path.join(input_path, f)) and f.lower().endswith(VIDEO_EXTENSIONS)]
             if kind == "videos" else [input_path])
  ext = os.path.splitext(output_path)[1].lower()
  png = output_format == "png"
  if "%" in os.path.basename(output_path):  # a PNG frame pattern
    if not output_path.lower().endswith(".png") or output_format == "video" or kind == "videos":
      raise ValueError(f"output {output_path}: a frame pattern (e.g. out/%06d.png) takes one input and writes PNG")
    try:
      output_path % 1
    except (TypeError, ValueError) as e:
      raise ValueError(f"output {output_path}: not a frame pattern such as out/%06d.png ({e})") from e
    jobs = [(input_path, output_path)]
  elif ext and not os.path.isdir(output_path):  # a file
    if kind == "videos":
      raise ValueError(f"INPUT {input_path} is a folder, so OUTPUT must be a folder; {output_path} is a file")
    if kind == "image" and ext not in IMAGE_EXTENSIONS:
      raise ValueError(f"output {output_path}: an image input is written to an image file (.png, .jpg) or a folder")
    if kind != "image" and (ext not in OUTPUT_EXTENSIONS or png):
      raise ValueError(f"output {output_path}: use a {'/'.join(OUTPUT_EXTENSIONS)} file name, a folder, or a "
                       f"frame pattern such as out/%06d.png")
    if kind != "image":
      encoding.check_container(output_path)
    jobs = [(input_path, output_path)]
  else:  # a folder
    def target(src):
      name = os.path.splitext(os.path.basename(os.path.normpath(src)))[0] + suffix
      if kind_of(src) == "image":
        return os.path.join(output_path, name + ".png")
      if png:
        return os.path.join(output_path, name, FRAME_PATTERN)
      return os.path.join(output_path, name + encoding.extension)
    jobs = [(src, target(src)) for src in sources]
  if output_format == "video" and any(d.lower().endswith(".png") for _, d in jobs):
    raise ValueError(f"--output_format video: {input_path} is an image; write it to an image or a folder")
  outputs = [dst for _, dst in jobs]
  clashes = sorted({d for d in outputs if outputs.count(d) > 1})
  if clashes:
    raise ValueError(f"several inputs would be written to the same file: {', '.join(clashes)}")
  for src, dst in jobs:
    if os.path.exists(dst) and os.path.samefile(src, dst):
      raise ValueError(f"output {dst} is the input itself")
  existing = [d for d in outputs if output_exists(d)]
  if existing and not overwrite and not skip_existing:
    raise FileExistsError(f"output exists: {', '.join(existing)}; pass --overwrite to replace "
                          f"{'it' if len(existing) == 1 else 'them'} or --skip_existing to skip "
                          f"{'it' if len(existing) == 1 else 'them'}")
  return [(src, dst, skip_existing and dst in existing) for src, dst in jobs]


class Output:
  """Where one input's frames go, written to a temporary name and moved into place by ``commit``.

  ``dst`` is a video file (ends in an OUTPUT_EXTENSIONS), an image file (.png/.jpg), or a PNG frame
  pattern (contains %d, e.g. out/%06d.png; frames numbered from 1). A video output keeps the source's
  audio, display matrix and colour tags (``video.VideoEncoder``); PNG frames are written upright.
  """

  def __init__(self, dst: str, rate, width: int, height: int, source: Source, encoding: Encoding,
               time_base=None):
    self.dst, self.frames = dst, 0
    self.folder = os.path.dirname(os.path.abspath(dst))
    self._made_folder = not os.path.isdir(self.folder)
    os.makedirs(self.folder, exist_ok=True)
    self.rotation, self._encoder, self._tmp = source.props["rotation"], None, None
    name = os.path.basename(dst).replace("%", "")
    if "%" in dst:
      self._tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=self.folder)
    elif dst.lower().endswith(IMAGE_EXTENSIONS):
      fd, self._tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".partial{os.path.splitext(dst)[1]}", dir=self.folder)
      os.close(fd)
    else:
      fd, self._tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".partial{os.path.splitext(dst)[1]}", dir=self.folder)
      os.close(fd)
      try:
        self._encoder = video.VideoEncoder(
            self._tmp, rate, width, height, crf=encoding.crf_or_default, audio_from=source.audio,
            time_base=time_base, color=source.props["color"], display_matrix=source.props["display_matrix"],
            codec=encoding.codec, pix_fmt=encoding.pix_fmt, preset=encoding.preset)
      except BaseException:
        self.discard()
        raise

  @property
  def written(self) -> str:
    """The temporary file (video or image) holding what was written so far."""
    return self._tmp

  def write(self, frame: np.ndarray, time=None) -> None:
    if self._encoder is not None:
      self._encoder.write(frame, time)
    else:
      image = Image.fromarray(video.upright(frame, self.rotation))
      image.save(os.path.join(self._tmp, FRAME_PATTERN % (self.frames + 1)) if os.path.isdir(self._tmp) else self._tmp,
                 format="PNG" if self._tmp.lower().endswith(".png") or os.path.isdir(self._tmp) else None)
    self.frames += 1

  def close(self) -> None:
    if self._encoder is not None:
      self._encoder.close()

  def commit(self, overwrite: bool) -> None:
    """Moves the finished output into place (an output that appeared meanwhile is refused unless ``overwrite``)."""
    if os.path.isdir(self._tmp):
      targets = [self.dst % (i + 1) for i in range(self.frames)]
      if not overwrite and any(os.path.exists(t) for t in targets):
        raise FileExistsError(f"output {self.dst} appeared while it was being written; pass --overwrite to replace it")
      for i, t in enumerate(targets):
        os.replace(os.path.join(self._tmp, FRAME_PATTERN % (i + 1)), t)
      os.rmdir(self._tmp)
      return
    if os.path.exists(self.dst) and not overwrite:
      raise FileExistsError(f"output {self.dst} appeared while it was being written; pass --overwrite to replace it")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp made it private; give it a new file's usual mode
    os.replace(self._tmp, self.dst)

  def discard(self) -> None:
    """Removes what was written (a failed or stopped run), and the output folder if this made it."""
    if self._encoder is not None:
      self._encoder.__exit__(RuntimeError, None, None)
    if self._tmp and os.path.isdir(self._tmp):
      shutil.rmtree(self._tmp, ignore_errors=True)
    elif self._tmp and os.path.exists(self._tmp):
      os.remove(self._tmp)
    if self._made_folder and os.path.isdir(self.folder) and not os.listdir(self.folder):
      os.rmdir(self.folder)


def output_exists(dst: str) -> bool:
  """Whether ``dst`` (a file, or a frame pattern: its first frame) exists."""
  return os.path.exists(dst % 1 if "%" in dst else dst)


def write_report(path: str, run: dict[str, Any]) -> None:
  """Appends ``run`` to the JSON report at ``path`` ({'runs': [...]}, created if needed), atomically."""
  runs = read_report(path)
  runs.append(run)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=folder)
  with os.fdopen(fd, "w") as f:
    json.dump({"runs": runs}, f, indent=1, default=str)
  os.chmod(tmp, 0o644)
  os.replace(tmp, path)


def read_report(path: str) -> list[dict[str, Any]]:
  """The runs of an existing report ([] if there is none); ValueError if ``path`` is something else."""
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      runs = json.load(f)["runs"]
    if not isinstance(runs, list):
      raise TypeError
    return runs
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"--report {path} exists and is not an enhance report; choose another path") from e


def now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
