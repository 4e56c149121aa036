"""Flow and motion pictures: Middlebury colour wheel, temporal profiles, PNG saving.

* ``flow_to_color``: the Middlebury colour coding (Baker et al., 2011): hue =
  direction, saturation = magnitude relative to the largest one, zero flow =
  white. Directions: +x (right) is red, +y (down) is yellow-orange, -x (left)
  is sky blue, -y (up) is violet.
* ``temporal_profile``: one image row followed over time, an image (T, W, 3)
  in which motion traces slanted streaks and temporal flicker shows as
  horizontal stripes (the papers' Fig. 4 / 9).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

__all__ = ["color_wheel", "flow_to_color", "temporal_profile", "save_png"]


def color_wheel() -> np.ndarray:
  """The 55 Middlebury wheel colours (55, 3), float in [0, 255], starting at red."""
  # (segment length, start colour, end colour) around the wheel.
  segments = [(15, (255, 0, 0), (255, 255, 0)),    # red -> yellow
              (6, (255, 255, 0), (0, 255, 0)),     # yellow -> green
              (4, (0, 255, 0), (0, 255, 255)),     # green -> cyan
              (11, (0, 255, 255), (0, 0, 255)),    # cyan -> blue
              (13, (0, 0, 255), (255, 0, 255)),    # blue -> magenta
              (6, (255, 0, 255), (255, 0, 0))]     # magenta -> red
  rows = []
  for n, start, end in segments:
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    rows.append(start + (end - start) / 255 * np.floor(255 * np.arange(n)[:, None] / n))
  return np.concatenate(rows).astype(np.float64)


def flow_to_color(flow, max_flow: float | None = None) -> np.ndarray:
  """Colour-codes flow (..., H, W, 2) in pixels as uint8 RGB (..., H, W, 3).

  Args:
    flow: u (x) in channel 0, v (y) in channel 1. NaN/inf and |f| > 1e9
      (Middlebury's "unknown") are shown black.
    max_flow: magnitude shown fully saturated; by default the largest finite
      magnitude of the input (a shared scale for a whole batch).
  """
  flow = np.asarray(flow, dtype=np.float64)
  if flow.ndim < 3 or flow.shape[-1] != 2:
    raise ValueError(f"flow_to_color: expected flow (..., H, W, 2), got {flow.shape}")
  unknown = ~np.all(np.isfinite(flow) & (np.abs(flow) <= 1e9), axis=-1)
  u = np.where(unknown, 0.0, flow[..., 0])
  v = np.where(unknown, 0.0, flow[..., 1])
  rad = np.hypot(u, v)
  if max_flow is None:
    max_flow = float(rad.max()) if rad.size else 0.0
  rad = rad / max(max_flow, np.finfo(np.float32).eps)

  wheel = color_wheel()
  ncols = len(wheel)
  angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]; -1 and 1 both at +x (red)
  fk = (angle + 1) / 2 * (ncols - 1)
  k0 = np.floor(fk).astype(int)
  k1 = (k0 + 1) % ncols
  f = (fk - k0)[..., None]
  col = ((1 - f) * wheel[k0] + f * wheel[k1]) / 255.0
  r = rad[..., None]
  inside = r <= 1
  col = np.where(inside, 1 - r * (1 - col), col * 0.75)  # desaturate towards white at 0
  col[unknown] = 0
  return np.floor(255 * np.clip(col, 0, 1)).astype(np.uint8)


def temporal_profile(frames, row: int) -> np.ndarray:
  """Row ``row`` of each frame, stacked over time.

  Args:
    frames: (T, H, W, C) with C in {1, 3}, or grey (T, H, W); uint8 or float.
    row: image row (0 <= row < H; negative values count from the bottom).

  Returns:
    (T, W, 3) image in the input's dtype (grey is repeated to 3 channels):
    time runs down, x runs right.
  """
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = frames[..., None]
  if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
    raise ValueError(f"temporal_profile: expected frames (T, H, W[, 1 or 3]), got {frames.shape}")
  h = frames.shape[1]
  if not -h <= row < h:
    raise ValueError(f"temporal_profile: row {row} outside frames of height {h}")
  profile = frames[:, row]
  return np.repeat(profile, 3, axis=-1) if profile.shape[-1] == 1 else profile


def save_png(path: str | os.PathLike, image) -> None:
  """Saves (H, W), (H, W, 1) or (H, W, 3) as PNG; uint8 as is, floats in [0, 1] scaled by 255."""
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise ValueError(f"save_png({os.fspath(path)}): expected (H, W) or (H, W, 3), got {image.shape}")
  if image.dtype != np.uint8:
    if not np.issubdtype(image.dtype, np.floating):
      raise ValueError(f"save_png({os.fspath(path)}): expected uint8 or float, got {image.dtype}")
    image = np.round(np.clip(np.nan_to_num(image), 0, 1) * 255).astype(np.uint8)
  Image.fromarray(image).save(path, format="PNG")
