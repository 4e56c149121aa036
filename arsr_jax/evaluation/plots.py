"""Figures drawn with PIL only (no matplotlib): per-class scatter plots and image grids.

* ``scatter_png``: one point per class, x = the baseline's per-class accuracy
  (bicubic), y = a method's, with the diagonal y = x and the numbers of classes
  above / below it (Fig. 6 of the SoSR/ToSR paper).
* ``image_grid``: images side by side with a caption above each.

Both return (H, W, 3) uint8 RGB arrays (e.g. for TensorBoard image summaries).
Text uses PIL's default font (``ImageFont.load_default()``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from arsr_jax import fileio

__all__ = ["ABOVE_COLOR", "BELOW_COLOR", "EQUAL_COLOR", "scatter_pixel", "scatter_png", "image_grid",
           "to_uint8", "encode_png", "per_class_scatter"]

ABOVE_COLOR = (31, 119, 180)   # blue: the method beats the baseline on that class
BELOW_COLOR = (214, 39, 40)    # red: the baseline is better
EQUAL_COLOR = (110, 110, 110)  # grey: a tie (on the diagonal)
GROUP_COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
_AXIS_COLOR = (0, 0, 0)
_GRID_COLOR = (225, 225, 225)
_DIAG_COLOR = (160, 160, 160)
# Margins of the plot box in pixels: left (tick labels + y label), top (title), right, bottom.
_LEFT, _TOP, _RIGHT, _BOTTOM = 56, 32, 16, 40


def to_uint8(image) -> np.ndarray:
  """uint8 as is; floats in [0, 1] scaled by 255 and rounded (NaN -> 0); grey (H, W) -> RGB."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.round(np.clip(np.nan_to_num(image.astype(np.float64)), 0, 1) * 255).astype(np.uint8)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected an image (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
  return image


def _plot_box(size: int) -> tuple[int, int, int, int]:
  """(x0, y0, x1, y1) pixel corners of the data area of a ``size`` x ``size`` scatter plot."""
  if size < _LEFT + _RIGHT + 32:
    raise ValueError(f"scatter plots need size >= {_LEFT + _RIGHT + 32}, got {size}")
  return _LEFT, _TOP, size - _RIGHT, size - _BOTTOM


def scatter_pixel(x: float, y: float, *, size: int = 480,
                  limits: tuple[float, float] = (0.0, 1.0)) -> tuple[int, int]:
  """(column, row) pixel of data point (x, y) in ``scatter_png``'s image (clipped to the box)."""
  x0, y0, x1, y1 = _plot_box(size)
  lo, hi = limits
  fx = min(max((x - lo) / (hi - lo), 0.0), 1.0)
  fy = min(max((y - lo) / (hi - lo), 0.0), 1.0)
  return int(round(x0 + fx * (x1 - x0))), int(round(y1 - fy * (y1 - y0)))


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
  left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
  return right - left, bottom - top


def scatter_png(path: str | os.PathLike | None, x, y, *, title: str = "", xlabel: str = "",
                ylabel: str = "", size: int = 480, limits: tuple[float, float] = (0.0, 1.0),
                radius: int = 3, groups=None) -> np.ndarray:
  """Scatter plot of paired values (e.g. per-class accuracies) against the diagonal y = x.

  Args:
    path: PNG file to write, or None to only return the image.
    x, y: (C,) values, e.g. bicubic's and a method's per-class accuracy; pairs with
      a NaN (a class absent from the split) are skipped.
    title, xlabel, ylabel: text drawn above the plot, under the x axis, and
      rotated along the y axis.
    size: the image is size x size pixels.
    limits: (low, high) of both axes; points outside are drawn on the border.
    radius: point radius in pixels.
    groups: optional (C,) ints (e.g. the clip of each window): points are then coloured by
      group (``GROUP_COLORS``, cycled) instead of by side of the diagonal.

  Returns:
    The (size, size, 3) uint8 RGB image. Points above the diagonal (y > x) are
    ``ABOVE_COLOR``, below ``BELOW_COLOR``, ties ``EQUAL_COLOR``; their counts are
    written in the top-left (above, equal) and bottom-right (below) corners.
  """
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  if x.shape != y.shape:
    raise ValueError(f"scatter_png: x and y differ in length, {x.shape} vs {y.shape}")
  lo, hi = limits
  if not hi > lo:
    raise ValueError(f"scatter_png: limits must be increasing, got {limits}")
  keep = np.isfinite(x) & np.isfinite(y)
  x, y = x[keep], y[keep]
  groups = None if groups is None else np.asarray(groups).ravel()[keep]
  above, below = y > x, y < x
  x0, y0, x1, y1 = _plot_box(size)

  img = Image.new("RGB", (size, size), (255, 255, 255))
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  # Grid, ticks and tick labels at 5 evenly spaced values.
  for v in np.linspace(lo, hi, 5):
    cx, cy = scatter_pixel(v, v, size=size, limits=limits)
    draw.line([(cx, y0), (cx, y1)], fill=_GRID_COLOR)
    draw.line([(x0, cy), (x1, cy)], fill=_GRID_COLOR)
    draw.line([(cx, y1), (cx, y1 + 4)], fill=_AXIS_COLOR)
    draw.line([(x0 - 4, cy), (x0, cy)], fill=_AXIS_COLOR)
    label = f"{v:g}"
    tw, th = _text_size(draw, label, font)
    draw.text((cx - tw / 2, y1 + 6), label, fill=_AXIS_COLOR, font=font)
    draw.text((x0 - 7 - tw, cy - th / 2 - 1), label, fill=_AXIS_COLOR, font=font)
  draw.line([(x0, y1), (x1, y0)], fill=_DIAG_COLOR, width=1)
  draw.rectangle([x0, y0, x1, y1], outline=_AXIS_COLOR)

  # Ties first, so that the decisive points are drawn on top.
  sets = ((~above & ~below, EQUAL_COLOR), (below, BELOW_COLOR), (above, ABOVE_COLOR))
  if groups is not None:
    sets = tuple((groups == g, GROUP_COLORS[i % len(GROUP_COLORS)]) for i, g in enumerate(np.unique(groups)))
  for group, color in sets:
    for px, py in zip(x[group], y[group]):
      cx, cy = scatter_pixel(px, py, size=size, limits=limits)
      draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)

  n_above, n_below = int(above.sum()), int(below.sum())
  draw.text((x0 + 6, y0 + 5), f"above: {n_above}", fill=ABOVE_COLOR, font=font)
  draw.text((x0 + 6, y0 + 19), f"equal: {len(x) - n_above - n_below}", fill=EQUAL_COLOR, font=font)
  text = f"below: {n_below}"
  tw, th = _text_size(draw, text, font)
  draw.text((x1 - 6 - tw, y1 - 8 - th), text, fill=BELOW_COLOR, font=font)

  if title:
    tw, _ = _text_size(draw, title, font)
    draw.text(((size - tw) / 2, 8), title, fill=_AXIS_COLOR, font=font)
  if xlabel:
    tw, _ = _text_size(draw, xlabel, font)
    draw.text(((x0 + x1 - tw) / 2, size - 18), xlabel, fill=_AXIS_COLOR, font=font)
  if ylabel:
    tw, th = _text_size(draw, ylabel, font)
    label = Image.new("RGB", (tw + 2, th + 4), (255, 255, 255))
    ImageDraw.Draw(label).text((1, 0), ylabel, fill=_AXIS_COLOR, font=font)
    label = label.rotate(90, expand=True)
    img.paste(label, (4, int((y0 + y1 - label.height) / 2)))

  if path is not None:
    fileio.write_bytes(path, encode_png(np.asarray(img)))
  return np.asarray(img, np.uint8)


def image_grid(images: Sequence, captions: Sequence[str] | None = None, *, columns: int | None = None,
               gap: int = 4, background: int = 255) -> np.ndarray:
  """Tiles images (H_i, W_i[, 3]) (uint8 or float in [0, 1]) into one (H, W, 3) uint8 image.

  Cells are as large as the largest image (smaller ones sit top-left); ``columns``
  defaults to all in one row. With ``captions``, each cell gets its caption drawn
  above it in a 14-pixel strip.
  """
  images = [to_uint8(im) for im in images]
  if not images:
    raise ValueError("image_grid: no images")
  if captions is not None and len(captions) != len(images):
    raise ValueError(f"image_grid: {len(images)} images but {len(captions)} captions")
  columns = columns or len(images)
  rows = -(-len(images) // columns)
  cap_h = 14 if captions is not None else 0
  cell_h = max(im.shape[0] for im in images) + cap_h
  cell_w = max(im.shape[1] for im in images)
  grid = np.full((rows * cell_h + (rows - 1) * gap, columns * cell_w + (columns - 1) * gap, 3),
                 background, np.uint8)
  for i, im in enumerate(images):
    top, left = (i // columns) * (cell_h + gap), (i % columns) * (cell_w + gap)
    grid[top + cap_h:top + cap_h + im.shape[0], left:left + im.shape[1]] = im
  if captions is not None:
    img = Image.fromarray(grid)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    fill = (0, 0, 0) if background > 127 else (255, 255, 255)
    for i, caption in enumerate(captions):
      draw.text(((i % columns) * (cell_w + gap) + 1, (i // columns) * (cell_h + gap) + 1), caption,
                fill=fill, font=font)
    grid = np.asarray(img, np.uint8)
  return grid


def encode_png(image) -> bytes:
  """(H, W, 3) uint8 (or float in [0, 1]) -> PNG bytes (write them with ``arsr_jax.fileio``)."""
  buf = io.BytesIO()
  Image.fromarray(to_uint8(image)).save(buf, format="PNG")
  return buf.getvalue()


def per_class_scatter(workdir, results: dict, writer=None, baseline: str = "bicubic") -> list:
  """The paper's Fig. 6 for every method and stream of protocol ``results``: per-class accuracy of
  the method (y) against ``baseline`` (x), one PNG each under ``workdir/plots``; returns the paths."""
  methods, paths = results["methods"], []
  if baseline not in methods:
    return paths
  for name, res in methods.items():
    if name == baseline:
      continue
    for stream in ("fusion", "spatial", "temporal", "clip"):
      key = f"{stream}_per_class_accuracy"
      if key not in res:
        continue
      x = np.asarray([np.nan if v is None else v for v in methods[baseline][key]], float)
      y = np.asarray([np.nan if v is None else v for v in res[key]], float)
      safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
      path = fileio.path(workdir) / "plots" / f"scatter_{safe}_{stream}.png"
      image = scatter_png(path, x, y, title=f"{name} vs {baseline} ({stream})", xlabel=f"{baseline} accuracy",
                          ylabel=f"{name} accuracy")
      paths.append(path)
      if writer is not None:
        writer.images(0, {f"plots/scatter_{name}_{stream}": image[None]})
  return paths
