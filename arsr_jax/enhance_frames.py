"""Frame-level steps of ``enhance``: the output size (--outscale), the Lanczos resize to it, the labelled
side-by-side view, and the frame times handed from decoding to encoding.

Frames are uint8 RGB (H, W, 3); times are seconds (Fractions).
"""

from __future__ import annotations

import collections
import fractions
import math

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def parse_outscale(text: str | None) -> tuple[str, float] | None:
  """--outscale: '2.5' -> ('factor', 2.5); '1080p' -> ('height', 1080); None/'' -> None."""
  if text is None or str(text).strip() == "":
    return None
  t = str(text).strip().lower()
  try:
    value = float(t[:-1]) if t.endswith("p") else float(t)
  except ValueError:
    value = -1.0
  if not value > 0 or (t.endswith("p") and value != int(value)):
    raise ValueError(f"--outscale {text!r}: expected a factor such as 2 or 3.5, or a height such as 1080p")
  return ("height", int(value)) if t.endswith("p") else ("factor", value)


def output_size(height: int, width: int, scale: int, outscale: tuple[str, float] | None, rotation: int = 0,
                even: bool = True) -> tuple[int, int]:
  """(H, W) written for (height, width) input frames: x ``scale``, or as ``outscale`` asks (a factor of the
  input, or the displayed height: the stored width for a video turned by 90 degrees), rounded to even
  numbers when ``even`` (yuv420p)."""
  if outscale is None:
    h, w = height * scale, width * scale
  elif outscale[0] == "factor":
    h, w = round(height * outscale[1]), round(width * outscale[1])
  else:
    shown = width if rotation % 180 else height
    f = outscale[1] / shown
    h, w = round(height * f), round(width * f)
  if even:
    h, w = max(2, round(h / 2) * 2), max(2, round(w / 2) * 2)
  return h, w


class Resizer:
  """uint8 frames (h, w, 3) -> (H, W, 3), antialiased Lanczos-3 (``jax.image.resize``), rounded: Real-ESRGAN's
  --outscale resize (``RealESRGANer.enhance``: cv2.resize INTER_LANCZOS4 of the model's output), as
  ``srvgg.Outscale`` does."""

  def __init__(self, height: int, width: int):
    self.size = (height, width)
    self._fn = jax.jit(lambda x: jnp.round(jnp.clip(
        jax.image.resize(x.astype(jnp.float32), (height, width, x.shape[-1]), "lanczos3", antialias=True),
        0, 255)).astype(jnp.uint8))

  def __call__(self, frame: np.ndarray) -> np.ndarray:
    return frame if frame.shape[:2] == self.size else np.asarray(self._fn(frame))


def label_patch(text: str, height: int) -> np.ndarray:
  """uint8 RGBA (h, w, 4): ``text`` in white on a translucent black box, sized for frames ``height`` tall."""
  size = max(10, height // 24)
  try:
    font = ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1: the fixed bitmap font
    font = ImageFont.load_default()
  left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
  pad = max(2, size // 4)
  image = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 160))
  ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=(255, 255, 255, 255))
  return np.asarray(image)


class SideBySide:
  """Joins (left, right) frames of (H, W, 3) into (H, 2W, 3): a label in the top-left corner of each half
  and a 2-pixel white divider on the seam (the right half's first two columns)."""

  def __init__(self, height: int, width: int, left: str, right: str):
    self.width = width
    self._labels = [(label_patch(t, height), x) for t, x in ((left, 0), (right, width))]

  def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    frame = np.concatenate([left, right], axis=1)
    h, w = frame.shape[:2]
    margin = max(2, h // 60)
    for patch, x0 in self._labels:
      ph, pw = min(patch.shape[0], h - margin), min(patch.shape[1], self.width - 2 * margin)
      if ph <= 0 or pw <= 0:
        continue
      y, x = margin, x0 + margin + (2 if x0 else 0)
      alpha = patch[:ph, :pw, 3:].astype(np.float32) / 255
      region = frame[y:y + ph, x:x + pw].astype(np.float32)
      frame[y:y + ph, x:x + pw] = np.round(region * (1 - alpha) + patch[:ph, :pw, :3] * alpha).astype(np.uint8)
    frame[:, self.width:self.width + 2] = 255
    return frame


class Times:
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
