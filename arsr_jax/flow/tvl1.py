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

from arsr_jax.flow.ops import (centered_gradient, divergence, forward_gradient, median_filter,  # noqa: F401
                               remap_cubic, resize_bilinear)

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
    point (x, y) of frame0 is at (x + u, y + v) in frame1. A pair with a NaN or
    infinite value in a ``jax.Array`` (or traced) frame gets an all-NaN flow:
    checking device data would block on it, so the error travels with the
    result to where the caller syncs (e.g. the train step's NaN guard).

  Raises:
    ValueError: for mismatched or unsupported shapes, frames below 16 px, or
      NaN/inf values in NumPy (host) frames.
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
    if isinstance(frame, np.ndarray) and np.issubdtype(dtype, np.floating) and not np.isfinite(frame).all():
      raise ValueError(f"tvl1_flow: {name} contains NaN or infinite values")  # host data: no device sync
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
  """Grey (N, H, W) in [0, 255] -> flow (N, H, W, 2) in pixels; NaN for pairs with non-finite input."""
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
  finite = jnp.isfinite(gray0).all(axis=(1, 2)) & jnp.isfinite(gray1).all(axis=(1, 2))
  return jnp.where(finite[:, None, None, None], jnp.stack(u[:2], axis=-1), jnp.nan)


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
