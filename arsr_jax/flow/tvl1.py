"""TV-L1 optical flow in JAX, following OpenCV's ``DualTVL1OpticalFlow``.

The solver is the duality-based TV-L1 of Zach, Pock & Bischof (2007) in the
form of Sanchez, Meinhardt-Llopis & Facciolo (IPOL 2013), which OpenCV's
``cv::optflow::DualTVL1OpticalFlow`` implements. The control flow mirrors
OpenCV so that results are numerically close:

  * grey images in [0, 255]; a pyramid built by repeated bilinear resizing by
    ``scale_step`` (levels narrower or lower than 16 px are dropped);
  * coarse to fine; at each scale ``warps`` times: warp frame 1 and its
    centred gradient by the current flow (bicubic, zero outside the frame),
    linearise the data term, then up to ``outer_iterations`` x
    (median-filter the flow, up to ``inner_iterations`` primal-dual steps);
    a warp ends early once the summed squared flow update of one primal-dual
    step drops to ``epsilon**2 * H * W`` (per pair, as in OpenCV);
  * the flow is bilinearly upsampled and divided by ``scale_step`` between
    scales.

Everything runs batched over frame pairs with explicit (N, ...) arrays: the
loops are ``lax.fori_loop`` / ``lax.while_loop`` (the early stop skips work
once every pair of the batch has converged), so one compilation per (params,
shape) serves any video. ``tvl1_flow`` is a pure function of arrays and may be
wrapped in ``jax.jit`` with batch-sharded inputs; ``tvl1_flow_sharded`` runs
each device's shard independently under ``shard_map``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

MIN_LEVEL_SIZE = 16  # OpenCV stops the pyramid before a level below 16 px.
_FLT_EPSILON = float(np.finfo(np.float32).eps)


@dataclasses.dataclass(frozen=True)
class TVL1Params:
  """TV-L1 parameters; defaults are OpenCV ``DualTVL1OpticalFlow``'s.

  Attributes:
    tau: primal-dual time step (< 0.25 for stability).
    lambda_: weight of the L1 data term (smaller = smoother flow).
    theta: coupling between the TV and data sub-problems.
    nscales: number of pyramid levels (fewer are used for small frames).
    warps: re-linearisations (image warps) per scale.
    epsilon: stopping threshold; a warp stops once the summed squared update
      of the flow (pixels^2) is <= epsilon^2 * H * W at that scale.
    inner_iterations: primal-dual steps between two median filterings.
    outer_iterations: median filterings per warp.
    scale_step: pyramid down-scaling factor in (0, 1).
    gamma: weight of the illumination-change term (0 = off, as in OpenCV).
    median_filtering: median window applied to the flow, 1 (off), 3 or 5.
  """
  tau: float = 0.25
  lambda_: float = 0.15
  theta: float = 0.3
  nscales: int = 5
  warps: int = 5
  epsilon: float = 0.01
  inner_iterations: int = 30
  outer_iterations: int = 10
  scale_step: float = 0.8
  gamma: float = 0.0
  median_filtering: int = 5

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.type == "int" and int(value) != value:
        raise ValueError(f"TVL1Params: {field.name} must be an integer, got {value!r}")
      object.__setattr__(self, field.name, int(value) if field.type == "int" else float(value))
    rules = [(self.tau > 0 and self.lambda_ > 0 and self.theta > 0, "tau, lambda, theta > 0"),
             (min(self.nscales, self.warps, self.inner_iterations, self.outer_iterations) >= 1,
              "nscales, warps, inner/outer iterations >= 1"),
             (self.epsilon >= 0 and self.gamma >= 0, "epsilon, gamma >= 0"),
             (0 < self.scale_step < 1, "0 < scale_step < 1"),
             (self.median_filtering in (0, 1, 3, 5), "median_filtering in {0, 1, 3, 5}")]
    broken = [rule for ok, rule in rules if not ok]
    if broken:
      raise ValueError(f"TVL1Params: need {'; '.join(broken)}; got {self}")

  @classmethod
  def from_config(cls, config: Mapping[str, Any] | Any) -> "TVL1Params":
    """Builds params from a dict or ``ml_collections.ConfigDict``.

    Keys are the field names; ``lambda`` is accepted for ``lambda_``. Unknown
    keys raise ``ValueError`` (a typo must not silently fall back to a default).
    """
    items = dict(config.items()) if hasattr(config, "items") else dict(config)
    if "lambda" in items:
      if "lambda_" in items:
        raise ValueError("TVL1Params.from_config: give 'lambda' or 'lambda_', not both")
      items["lambda_"] = items.pop("lambda")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(items) - known)
    if unknown:
      raise ValueError(f"TVL1Params.from_config: unknown keys {unknown}; known keys are "
                       f"{sorted(known | {'lambda'})}")
    return cls(**items)


def pyramid_shapes(height: int, width: int, params: TVL1Params = TVL1Params()) -> list[tuple[int, int]]:
  """(H, W) of each pyramid level used for a frame size, finest first.

  Like OpenCV, each level is ``round(previous * scale_step)`` and levels
  smaller than 16 px in either dimension are dropped. Raises ``ValueError`` if
  the frame itself is smaller than that minimum.
  """
  if height < MIN_LEVEL_SIZE or width < MIN_LEVEL_SIZE:
    raise ValueError(f"TV-L1 needs frames of at least {MIN_LEVEL_SIZE}x{MIN_LEVEL_SIZE} pixels "
                     f"(the smallest pyramid level OpenCV allows); got {height}x{width}")
  shapes = [(height, width)]
  for _ in range(1, params.nscales):
    h, w = shapes[-1]
    h, w = int(np.rint(h * params.scale_step)), int(np.rint(w * params.scale_step))
    if h < MIN_LEVEL_SIZE or w < MIN_LEVEL_SIZE:
      break
    shapes.append((h, w))
  return shapes


# ----------------------------------------------------------------------------
# Public entry points.


def tvl1_flow(frame0, frame1, params: TVL1Params = TVL1Params()) -> jax.Array:
  """TV-L1 optical flow from ``frame0`` to ``frame1`` for a batch of pairs.

  Args:
    frame0, frame1: (N, H, W), (N, H, W, 1) or (N, H, W, 3) frames, uint8 in
      [0, 255] or float in [0, 1]; RGB is converted to grey with OpenCV's
      weights (0.299, 0.587, 0.114), rounded for uint8 as ``cv2.cvtColor``
      does. Both must have the same shape and dtype kind. H, W >= 16.
    params: solver parameters (static: each distinct value compiles once).

  Returns:
    float32 flow (N, H, W, 2) in pixels, channel 0 = u (x), 1 = v (y): the
    point (x, y) of frame0 is at (x + u, y + v) in frame1.

  Raises:
    ValueError: for mismatched or unsupported shapes, frames below 16 px, or
      (for concrete inputs) NaN/inf values.
  """
  gray0, gray1 = _prepare(frame0, frame1)
  return _tvl1_gray(gray0, gray1, params)


def make_data_mesh(devices=None) -> jax.sharding.Mesh:
  """1-D mesh over ``devices`` (default: all) with a single ``data`` axis."""
  devices = np.array(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(devices, ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def tvl1_flow_sharded(frame0, frame1, params: TVL1Params = TVL1Params(), mesh=None) -> jax.Array:
  """``tvl1_flow`` with the batch split over the ``data`` axis of ``mesh``.

  Each device solves its own shard independently (``shard_map``: no
  cross-device traffic, each shard stops early on its own). The batch is
  padded to a multiple of the device count and the padding dropped again.
  Same arguments and result as ``tvl1_flow``; the result is sharded over the
  mesh when no padding was needed.
  """
  mesh = make_data_mesh() if mesh is None else mesh
  gray0, gray1 = _prepare(frame0, frame1)
  n, ndev = gray0.shape[0], mesh.shape["data"]
  pad = (-n) % ndev
  if pad:
    gray0 = jnp.concatenate([gray0, jnp.repeat(gray0[-1:], pad, axis=0)])
    gray1 = jnp.concatenate([gray1, jnp.repeat(gray1[-1:], pad, axis=0)])
  flow = _sharded_fn(mesh, params)(gray0, gray1)
  return flow[:n] if pad else flow


@functools.lru_cache(maxsize=None)
def _sharded_fn(mesh, params):
  spec = jax.sharding.PartitionSpec("data")
  body = functools.partial(_tvl1_impl, params=params)
  # Purely per-shard computation: no collectives, so the varying-axes check is moot.
  return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                               check_vma=False))


def _prepare(frame0, frame1) -> tuple[jax.Array, jax.Array]:
  """Validates a batch of frame pairs and converts it to grey (N, H, W) in [0, 255]."""
  frame0, frame1 = (f if hasattr(f, "dtype") else np.asarray(f) for f in (frame0, frame1))
  s0, s1 = tuple(np.shape(frame0)), tuple(np.shape(frame1))
  if s0 != s1:
    raise ValueError(f"tvl1_flow: frame0 {s0} and frame1 {s1} have different shapes")
  if len(s0) not in (3, 4) or (len(s0) == 4 and s0[-1] not in (1, 3)):
    raise ValueError(f"tvl1_flow: expected frames (N, H, W), (N, H, W, 1) or (N, H, W, 3); got {s0}")
  if s0[0] == 0:
    raise ValueError("tvl1_flow: empty batch")
  pyramid_shapes(s0[1], s0[2])  # raises for frames that are too small
  gray = []
  for name, frame in (("frame0", frame0), ("frame1", frame1)):
    dtype = np.dtype(frame.dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
      raise ValueError(f"tvl1_flow: {name} has unsupported dtype {dtype}")
    if not isinstance(frame, jax.core.Tracer) and np.issubdtype(dtype, np.floating):
      if not bool(jnp.all(jnp.isfinite(jnp.asarray(frame)))):
        raise ValueError(f"tvl1_flow: {name} contains NaN or infinite values")
    gray.append(_to_gray255(jnp.asarray(frame)))
  if np.issubdtype(np.dtype(frame0.dtype), np.integer) != np.issubdtype(np.dtype(frame1.dtype), np.integer):
    raise ValueError(f"tvl1_flow: frame0 ({frame0.dtype}) and frame1 ({frame1.dtype}) mix integer "
                     "and float frames, whose value ranges differ")
  return gray[0], gray[1]


def _to_gray255(frames: jax.Array) -> jax.Array:
  """(N, H, W[, C]) uint8 [0, 255] or float [0, 1] -> float32 grey (N, H, W) in [0, 255]."""
  is_int = jnp.issubdtype(frames.dtype, jnp.integer)
  x = frames.astype(jnp.float32) * (1.0 if is_int else 255.0)
  if x.ndim == 4 and x.shape[-1] == 3:
    x = x @ jnp.asarray([0.299, 0.587, 0.114], jnp.float32)
    if is_int:
      x = jnp.round(x)
  elif x.ndim == 4:
    x = x[..., 0]
  return x


# ----------------------------------------------------------------------------
# The solver. Images are (N, H, W) arrays; the flow is a tuple of components
# u = (u1, u2[, u3]) and the dual variable a tuple p = ((p11, p12), (p21, p22)
# [, (p31, p32)]), all (N, H, W). Separate arrays, rather than stacked ones,
# let XLA fuse each primal-dual step into a few elementwise loops.


@functools.partial(jax.jit, static_argnames="params")
def _tvl1_gray(gray0: jax.Array, gray1: jax.Array, params: TVL1Params) -> jax.Array:
  return _tvl1_impl(gray0, gray1, params=params)


def _tvl1_impl(gray0, gray1, params: TVL1Params):
  """Grey (N, H, W) in [0, 255] -> flow (N, H, W, 2) in pixels."""
  shapes = pyramid_shapes(*gray0.shape[1:], params)
  level0, level1 = [gray0], [gray1]
  for h, w in shapes[1:]:
    level0.append(resize_bilinear(level0[-1], h, w, 1 / params.scale_step))
    level1.append(resize_bilinear(level1[-1], h, w, 1 / params.scale_step))
  zeros = jnp.zeros(gray0.shape[:1] + shapes[-1], jnp.float32)
  u = (zeros,) * (3 if params.gamma else 2)
  for s in reversed(range(len(shapes))):
    u = _solve_scale(level0[s], level1[s], u, params)
    if s:  # upsample; u3 (illumination) is not a displacement and is not rescaled
      u = tuple(resize_bilinear(c, *shapes[s - 1]) * (1 / params.scale_step if k < 2 else 1)
                for k, c in enumerate(u))
  return jnp.stack(u[:2], axis=-1)


def _solve_scale(i0, i1, u, params: TVL1Params):
  """Refines the flow u at one scale with ``warps`` linearisations."""
  h, w = i0.shape[1:]
  i1_and_grad = jnp.stack([i1, *centered_gradient(i1)], axis=1)  # (N, 3, H, W)
  stop = params.epsilon ** 2 * h * w
  p = tuple((jnp.zeros_like(c), jnp.zeros_like(c)) for c in u)

  def one_warp(_, carry):
    u, p = carry
    i1w, i1wx, i1wy = jnp.unstack(remap_cubic(i1_and_grad, u[0], u[1]), axis=1)
    grad = i1wx ** 2 + i1wy ** 2
    rho_c = i1w - i1wx * u[0] - i1wy * u[1] - i0
    coeffs = (i1wx, i1wy) + ((params.gamma,) if params.gamma else ())
    return _outer_loop(u, p, (coeffs, grad, rho_c), stop, params)

  u, _ = lax.fori_loop(0, params.warps, one_warp, (u, p))
  return u


def _outer_loop(u, p, data, stop, params: TVL1Params):
  """Median filtering + inner primal-dual loop, with OpenCV's early stop per pair."""
  active = jnp.ones(u[0].shape[:1], bool)

  def outer_cond(carry):
    k, _, _, active = carry
    return (k < params.outer_iterations) & jnp.any(active)

  def outer_body(carry):
    k, u, p, active = carry
    if params.median_filtering > 1:
      filtered = tuple(median_filter(c, params.median_filtering) for c in u[:2])
      u = _where_pair(active, filtered, u[:2]) + u[2:]

    def inner_cond(c):
      j, _, _, active = c
      return (j < params.inner_iterations) & jnp.any(active)

    def inner_body(c):
      j, u, p, active = c
      u_new, p_new, change = _primal_dual_step(u, p, *data, params)
      u, p = _where_pair(active, u_new, u), _where_pair(active, p_new, p)
      return j + 1, u, p, active & (change > stop)

    _, u, p, active = lax.while_loop(inner_cond, inner_body, (0, u, p, active))
    return k + 1, u, p, active

  _, u, p, _ = lax.while_loop(outer_cond, outer_body, (0, u, p, active))
  return u, p


def _where_pair(active, new, old):
  """Per pair (leading axis): ``new`` where active, else ``old``; pytrees of (N, H, W)."""
  return jax.tree.map(lambda a, b: jnp.where(active[:, None, None], a, b), new, old)


def _primal_dual_step(u, p, coeffs, grad, rho_c, params: TVL1Params):
  """One TV-L1 iteration: thresholding step (v), primal step (u), dual step (p).

  Args:
    u: tuple of C flow components (N, H, W); p: tuple of C (px, py) pairs.
    coeffs: linearised data-term coefficients, (I1x, I1y[, gamma]), (N, H, W)
      arrays (gamma a float).
    grad: (N, H, W) |grad I1(x + u0)|^2 (OpenCV leaves gamma^2 out of it).
    rho_c: (N, H, W) constant part of the linearised residual.

  Returns:
    (u, p, change) with change (N,) the summed squared update of u (pixels^2).
  """
  lt = params.lambda_ * params.theta
  taut = params.tau / params.theta
  rho = rho_c + sum(a * c for a, c in zip(coeffs, u))
  safe_grad = jnp.where(grad > _FLT_EPSILON, grad, 1.0)
  step = jnp.where(rho < -lt * grad, lt,
                   jnp.where(rho > lt * grad, -lt,
                             jnp.where(grad > _FLT_EPSILON, -rho / safe_grad, 0.0)))
  u_new, p_new, change = [], [], 0.0
  for uc, (px, py), a in zip(u, p, coeffs):
    un = uc + step * a + params.theta * divergence(px, py)
    change = change + jnp.sum((un - uc) ** 2, axis=(1, 2))
    dx, dy = forward_gradient(un)
    norm = 1.0 + taut * jnp.sqrt(dx * dx + dy * dy)
    u_new.append(un)
    p_new.append(((px + taut * dx) / norm, (py + taut * dy) / norm))
  return tuple(u_new), tuple(p_new), change


# ----------------------------------------------------------------------------
# Median filter: a sorting network (sorted columns, Batcher merges, then a
# k-th-of-two-lists selection); XLA prunes every comparison the median does
# not need and fuses the rest into one loop (188 min/max per pixel for 5x5).


def median_filter(x: jax.Array, size: int) -> jax.Array:
  """Median over size x size windows (3 or 5) of (..., H, W), replicated borders (cv2.medianBlur)."""
  h, w = x.shape[-2:]
  r = size // 2
  xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)], mode="edge")
  cols = [_sort([xp[..., i:i + h, j:j + w] for i in range(size)]) for j in range(size)]
  merged = cols[:-1]  # size - 1 = 2 or 4 sorted columns, merged pairwise
  while len(merged) > 1:
    merged = [_merge(merged[k], merged[k + 1]) for k in range(0, len(merged), 2)]
  return _kth_of_two(merged[0], cols[-1], size * size // 2)


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
  """
  n, c, h, w = images.shape
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  sx, sy = xs + u, ys + v
  x0, y0 = jnp.floor(sx), jnp.floor(sy)
  wx, wy = jnp.stack(_cubic_weights(sx - x0), 1), jnp.stack(_cubic_weights(sy - y0), 1)
  offsets = jnp.arange(-1, 3, dtype=jnp.int32)[None, :, None, None]
  xi = x0.astype(jnp.int32)[:, None] + offsets  # (N, 4, H, W) tap columns
  yi = y0.astype(jnp.int32)[:, None] + offsets
  wx = jnp.where((xi >= 0) & (xi < w), wx, 0.0)  # taps outside the frame read 0
  wy = jnp.where((yi >= 0) & (yi < h), wy, 0.0)
  index = jnp.clip(yi, 0, h - 1)[:, :, None] * w + jnp.clip(xi, 0, w - 1)[:, None, :]
  taps = jnp.take_along_axis(images.reshape(n, c, 1, h * w), index.reshape(n, 1, 16, h * w), axis=3)
  weights = (wy[:, :, None] * wx[:, None, :]).reshape(n, 1, 16, h, w)
  return jnp.sum(taps.reshape(n, c, 16, h, w) * weights, axis=2)
