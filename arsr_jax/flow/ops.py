"""OpenCV-compatible image operators used by TV-L1 (``tvl1.py``).

All act on the last two axes (..., H, W) of float32 arrays, in pixels:
median filtering (cv2.medianBlur), centred / forward gradients and divergence
(OpenCV's tvl1flow.cpp stencils), bilinear resizing (cv2.resize INTER_LINEAR)
and bicubic remapping with zero outside the frame (cv2.remap INTER_CUBIC,
BORDER_CONSTANT).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


# ----------------------------------------------------------------------------
# Median filter: a sorting network (sorted columns, Batcher merges, then a
# k-th-of-two-lists selection); XLA prunes every comparison the median does
# not need and fuses the rest into one loop (188 min/max per pixel for 5x5).


def median_filter(x: jax.Array, size: int) -> jax.Array:
  """Median over size x size windows (3 or 5) of (..., H, W), replicated borders (cv2.medianBlur)."""
  return jax.lax.platform_dependent(x, cpu=functools.partial(_median, size=size, shifted=False),
                                    default=functools.partial(_median, size=size, shifted=True))


def _median(x: jax.Array, size: int, shifted: bool) -> jax.Array:
  """``median_filter`` on views of an edge-padded copy of x (``shifted=False``: XLA:CPU), or on
  ``_edge_shift`` views (XLA:GPU fuses those into one loop; XLA:CPU does not, 5x slower there,
  and at the tests' optimisation level 0 it compiles the fused network into minutes of run time)."""
  h, w = x.shape[-2:]
  r = size // 2
  if shifted:
    views = lambda j: [_edge_shift(x, i - r, j - r) for i in range(size)]  # noqa: E731
  else:
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)], mode="edge")
    views = lambda j: [xp[..., i:i + h, j:j + w] for i in range(size)]  # noqa: E731
  cols = [_sort(views(j)) for j in range(size)]
  merged = cols[:-1]  # size - 1 = 2 or 4 sorted columns, merged pairwise
  while len(merged) > 1:
    merged = [_merge(merged[k], merged[k + 1]) for k in range(0, len(merged), 2)]
  return _kth_of_two(merged[0], cols[-1], size * size // 2)


def shift(a, dy: int, dx: int):
  """a[..., y + dy, x + dx] with zeros outside the frame, for (..., H, W) arrays (scalars pass).

  A ``lax.pad`` with a negative low pad: XLA fuses it into its consumer's loop.
  """
  if jnp.ndim(a) < 2 or (dy == 0 and dx == 0):
    return a
  config = [(0, 0, 0)] * (jnp.ndim(a) - 2) + [(-dy, dy, 0), (-dx, dx, 0)]
  return jax.lax.pad(a, jnp.zeros((), a.dtype), config)


def _edge_shift(x: jax.Array, dy: int, dx: int) -> jax.Array:
  """x at (clip(y + dy), clip(x + dx)): a shift with replicated borders.

  ``shift`` (zero-filled) plus a ``where`` with the edge row / column, rather than an edge-mode
  ``jnp.pad`` (concatenations, which XLA:GPU writes to memory: 8 padded copies of the flow per
  filter in the solver), so that the whole filter fuses into the loop that reads its input once.
  """
  h, w = x.shape[-2:]
  for axis, d, n in ((-2, dy, h), (-1, dx, w)):
    if d == 0:
      continue
    shifted = shift(x, d, 0) if axis == -2 else shift(x, 0, d)
    edge = jax.lax.slice_in_dim(x, n - 1, n, axis=axis) if d > 0 else jax.lax.slice_in_dim(x, 0, 1, axis=axis)
    index = jnp.arange(n) + d
    outside = (index > n - 1) if d > 0 else (index < 0)
    x = jnp.where(outside[:, None] if axis == -2 else outside, edge, shifted)
  return x


def _compare_swap(a, b):
  if b is None:  # None stands for +inf padding
    return a, b
  if a is None:
    return b, a
  return jnp.minimum(a, b), jnp.maximum(a, b)


def _merge(a: list, b: list) -> list:
  """Batcher's odd-even merge of two sorted lists of arrays (elementwise)."""
  n = 1 << (max(len(a), len(b)) - 1).bit_length()
  x = list(a) + [None] * (n - len(a)) + list(b) + [None] * (n - len(b))

  def merge(lo, length, stride):
    if 2 * stride < length:
      merge(lo, length, 2 * stride)
      merge(lo + stride, length, 2 * stride)
      for i in range(lo + stride, lo + length - stride, 2 * stride):
        x[i], x[i + stride] = _compare_swap(x[i], x[i + stride])
    else:
      x[lo], x[lo + stride] = _compare_swap(x[lo], x[lo + stride])

  merge(0, 2 * n, 1)
  return x[:len(a) + len(b)]


def _sort(x: list) -> list:
  return x if len(x) < 2 else _merge(_sort(x[:len(x) // 2]), _sort(x[len(x) // 2:]))


def _kth_of_two(a: list, b: list, k: int):
  """k-th smallest (0-based) of the union of sorted lists a and b: min over splits of max."""
  best = None
  for j in range(len(b) + 1):  # j elements from b, k + 1 - j from a
    i = k + 1 - j
    if 0 <= i <= len(a):
      parts = ([a[i - 1]] if i else []) + ([b[j - 1]] if j else [])
      cand = parts[0] if len(parts) == 1 else jnp.maximum(*parts)
      best = cand if best is None else jnp.minimum(best, cand)
  return best


# ----------------------------------------------------------------------------
# Finite differences, resizing and warping (OpenCV's border conventions).


def centered_gradient(img: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(..., H, W) -> (d/dx, d/dy), centred; half one-sided differences at the borders."""
  pad = [(0, 0)] * (img.ndim - 2)
  xp = jnp.pad(img, pad + [(0, 0), (1, 1)], mode="edge")
  yp = jnp.pad(img, pad + [(1, 1), (0, 0)], mode="edge")
  return 0.5 * (xp[..., 2:] - xp[..., :-2]), 0.5 * (yp[..., 2:, :] - yp[..., :-2, :])


def forward_gradient(u: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(..., H, W) -> (d/dx, d/dy) forward differences, 0 on the last column / row."""
  pad = [(0, 0)] * (u.ndim - 2)
  return (jnp.pad(u[..., 1:] - u[..., :-1], pad + [(0, 0), (0, 1)]),
          jnp.pad(u[..., 1:, :] - u[..., :-1, :], pad + [(0, 1), (0, 0)]))


def divergence(px: jax.Array, py: jax.Array) -> jax.Array:
  """Backward-difference divergence of (px, py), each (..., H, W); the adjoint of -forward_gradient."""
  pad = [(0, 0)] * (px.ndim - 2)
  return (px - jnp.pad(px[..., :-1], pad + [(0, 0), (1, 0)])
          + py - jnp.pad(py[..., :-1, :], pad + [(1, 0), (0, 0)]))


def _linear_taps(n_in: int, n_out: int, scale: float):
  """Source indices (2, n_out) and weights (2, n_out) of cv::resize INTER_LINEAR."""
  f = (np.arange(n_out) + 0.5) * scale - 0.5
  i0 = np.floor(f).astype(np.int64)
  frac = (f - i0).astype(np.float32)
  frac[i0 < 0] = 0
  i0 = np.maximum(i0, 0)
  last = i0 >= n_in - 1
  frac[last], i0[last] = 0, n_in - 1
  return np.stack([i0, np.minimum(i0 + 1, n_in - 1)]), np.stack([1 - frac, frac])


def resize_bilinear(x: jax.Array, height: int, width: int, scale: float | None = None) -> jax.Array:
  """Resizes (..., h, w) to (..., height, width) like ``cv2.resize(INTER_LINEAR)``.

  ``scale`` is the source/destination coordinate ratio (OpenCV uses 1/fx when
  a factor is given); by default the size ratio of each axis.
  """
  h, w = x.shape[-2:]
  for axis, n_in, n_out in ((-2, h, height), (-1, w, width)):
    idx, wts = _linear_taps(n_in, n_out, scale if scale is not None else n_in / n_out)
    wts = jnp.asarray(wts).reshape((2, n_out) + (1,) * (-1 - axis))
    x = jnp.take(x, idx[0], axis=axis) * wts[0] + jnp.take(x, idx[1], axis=axis) * wts[1]
  return x


def _cubic_weights(t: jax.Array) -> list[jax.Array]:
  """OpenCV's bicubic weights (A = -0.75) of taps at offsets -1, 0, 1, 2 for fraction t."""
  a = -0.75
  w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
  w1 = ((a + 2) * t - (a + 3)) * t * t + 1
  w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
  return [w0, w1, w2, 1 - w0 - w1 - w2]


def remap_cubic(images: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
  """Samples images (N, C, H, W) at (x + u, y + v), bicubic, 0 outside the frame.

  This is ``cv2.remap(INTER_CUBIC, BORDER_CONSTANT)`` (without OpenCV's
  1/32-pixel quantisation of the sample positions). u, v: (N, H, W) pixels.
  Two formulations, equal to rounding (the 16 taps summed in another order):
  XLA:CPU runs one gather of all taps 2.3x faster inside the solver;
  XLA:GPU fuses a gather per tap, summed as it goes, into one loop (2 kernels
  and 216 bytes/pixel for 3 channels, instead of 9 and 304 with a
  (N, C, 16, H, W) array of taps written to memory).
  """
  return jax.lax.platform_dependent(images, u, v, cpu=_remap_stacked, default=_remap_per_tap)


def _remap_taps(h: int, w: int, u: jax.Array, v: jax.Array):
  """(columns, rows): per tap offset -1..2, (index (N, H, W) int32 clipped to the frame, weight
  (N, H, W), 0 for taps outside the frame)."""
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  taps = []
  for s, n in ((xs + u, w), (ys + v, h)):
    s0 = jnp.floor(s)
    weights, i0 = _cubic_weights(s - s0), s0.astype(jnp.int32)
    index = [i0 + (k - 1) for k in range(4)]
    taps.append([(jnp.clip(i, 0, n - 1), jnp.where((i >= 0) & (i < n), wk, 0.0)) for i, wk in zip(index, weights)])
  return taps


def _remap_stacked(images, u, v):
  n, c, h, w = images.shape
  cols, rows = _remap_taps(h, w, u, v)
  index = jnp.stack([yi * w + xi for yi, _ in rows for xi, _ in cols], axis=1)  # (N, 16, H, W)
  weights = jnp.stack([wy * wx for _, wy in rows for _, wx in cols], axis=1)
  taps = jnp.take_along_axis(images.reshape(n, c, 1, h * w), index.reshape(n, 1, 16, h * w), axis=3)
  return jnp.sum(taps.reshape(n, c, 16, h, w) * weights[:, None], axis=2)


def _remap_per_tap(images, u, v):
  n, c, h, w = images.shape
  cols, rows = _remap_taps(h, w, u, v)
  flat = images.reshape(n, c, h * w)
  out = 0.0
  for yi, wy in rows:
    for xi, wx in cols:
      index = jnp.broadcast_to((yi * w + xi).reshape(n, 1, h * w), flat.shape)
      out = out + jnp.take_along_axis(flat, index, axis=2).reshape(n, c, h, w) * (wy * wx)[:, None]
  return out
