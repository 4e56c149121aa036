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
loops are ``lax.fori_loop`` / ``lax.while_loop``, so one compilation per
(params, shape) serves any video. Pairs converge at very different steps (on
real clips at 320x240: 10% of the maximum steps on average, single pairs up
to all of them), so the solver steps only the pairs still running, gathered
into narrower batches (``compact``; a batch of 8 then does 1.1x the useful
work instead of 2.3x, the protocol's 125 pairs 1.3x instead of 8x). The
iteration itself is in ``tvl1_step.py``; ``TVL1Params.storage='float16'``
keeps its dual variable and data term in 16 bits between steps (fewer bytes
per step; not OpenCV's precision, see the field).
``tvl1_flow`` is a pure function of arrays and may be wrapped in ``jax.jit``;
``tvl1_flow_sharded`` runs each device's shard independently under
``shard_map``. Parameters and the pyramid's sizes: ``tvl1_params.py``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from arsr_jax import sharding
from arsr_jax.flow.ops import centered_gradient, median_filter, remap_cubic, resize_bilinear
from arsr_jax.flow.tvl1_params import MIN_LEVEL_SIZE, STORAGE_DTYPES, TVL1Params, pyramid_shapes  # noqa: F401
from arsr_jax.flow.tvl1_step import primal_dual_step

STEPS_PER_TRIP = 2  # primal-dual steps per trip of the solver's innermost loop (see ``_run_stage``)


# ----------------------------------------------------------------------------
# Public entry points.


def tvl1_flow(frame0, frame1, params: TVL1Params = TVL1Params(), *, compact: bool | None = None,
              return_stats: bool = False):
  """TV-L1 optical flow from ``frame0`` to ``frame1`` for a batch of pairs.

  Args:
    frame0, frame1: (N, H, W), (N, H, W, 1) or (N, H, W, 3) frames, uint8 in
      [0, 255] or float in [0, 1]; RGB is converted to grey with OpenCV's
      weights (0.299, 0.587, 0.114), rounded for uint8 as ``cv2.cvtColor``
      does. Both must have the same shape and dtype kind. H, W >= 16.
    params: solver parameters (static: each distinct value compiles once).
    compact: step only the pairs still running, moved to the front of the
      batch (see ``_outer_loop``), so that a batch does not wait for its
      slowest pair at full width; the flow is the same. Default: on when
      there is one device. Under a jit whose batch is sharded over several
      devices the moves would cross devices: use ``tvl1_flow_sharded``, which
      compacts each device's shard.
    return_stats: also return ``{'steps': (N, levels, warps) int32, the
      primal-dual steps each pair ran, finest level first; 'stage_ends':
      (levels, warps, stages) int32, the warp's step count when each batch
      width of ``stage_widths(N)`` finished}`` (for benchmarks).

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
  compact = jax.device_count() == 1 if compact is None else bool(compact)
  return _tvl1_gray(gray0, gray1, params, compact, return_stats)


def tvl1_flow_sharded(frame0, frame1, params: TVL1Params = TVL1Params(), mesh=None) -> jax.Array:
  """``tvl1_flow`` with the batch split over the ``data`` axis of ``mesh``.

  Each device solves its own shard independently (``shard_map``: no
  cross-device traffic, each shard stops early and compacts on its own). The
  batch is padded to a multiple of the device count and the padding dropped
  again. Same arguments and result as ``tvl1_flow``; the result is sharded
  over the mesh when no padding was needed. Inside a jit whose batch is
  sharded over the same mesh (default: all devices, as ``sharding.make_mesh``)
  no data moves; with one device it is ``tvl1_flow``.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
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
  body = functools.partial(_tvl1_impl, params=params, compact=True)
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


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _tvl1_gray(gray0: jax.Array, gray1: jax.Array, params: TVL1Params, compact: bool, stats: bool):
  return _tvl1_impl(gray0, gray1, params=params, compact=compact, stats=stats)


def _tvl1_impl(gray0, gray1, params: TVL1Params, compact: bool = True, stats: bool = False):
  """Grey (N, H, W) in [0, 255] -> flow (N, H, W, 2) in pixels; NaN for pairs with non-finite input.

  With ``stats`` also returns ``tvl1_flow``'s stats dict.
  """
  shapes = pyramid_shapes(*gray0.shape[1:], params)
  level0, level1 = [gray0], [gray1]
  for h, w in shapes[1:]:
    level0.append(resize_bilinear(level0[-1], h, w, 1 / params.scale_step))
    level1.append(resize_bilinear(level1[-1], h, w, 1 / params.scale_step))
  zeros = jnp.zeros(gray0.shape[:1] + shapes[-1], jnp.float32)
  u = (zeros,) * (3 if params.gamma else 2)
  steps, ends = [None] * len(shapes), [None] * len(shapes)
  for s in reversed(range(len(shapes))):
    u, steps[s], ends[s] = _solve_scale(level0[s], level1[s], u, params, compact)
    if s:  # upsample; u3 (illumination) is not a displacement and is not rescaled
      u = tuple(resize_bilinear(c, *shapes[s - 1]) * (1 / params.scale_step if k < 2 else 1)
                for k, c in enumerate(u))
  finite = jnp.isfinite(gray0).all(axis=(1, 2)) & jnp.isfinite(gray1).all(axis=(1, 2))
  flow = jnp.where(finite[:, None, None, None], jnp.stack(u[:2], axis=-1), jnp.nan)
  return (flow, {"steps": jnp.stack(steps, axis=1), "stage_ends": jnp.stack(ends)}) if stats else flow


def _solve_scale(i0, i1, u, params: TVL1Params, compact: bool = True):
  """Refines the flow u at one scale with ``warps`` linearisations.

  Returns (u, steps (N, warps), stage_ends (warps, stages)); see ``_outer_loop``.
  """
  h, w = i0.shape[1:]
  i1_and_grad = jnp.stack([i1, *centered_gradient(i1)], axis=1)  # (N, 3, H, W)
  stop = params.epsilon ** 2 * h * w
  store = jnp.dtype(params.storage)
  p = tuple((jnp.zeros(c.shape, store), jnp.zeros(c.shape, store)) for c in u)

  def one_warp(k, carry):
    u, p, steps, ends = carry
    i1w, i1wx, i1wy = jnp.unstack(remap_cubic(i1_and_grad, u[0], u[1]), axis=1)
    rho_c = (i1w - i1wx * u[0] - i1wy * u[1] - i0).astype(store)
    coeffs = (i1wx.astype(store), i1wy.astype(store)) + ((params.gamma,) if params.gamma else ())
    u, p, count, t_ends = _outer_loop(u, p, (coeffs, rho_c), stop, params, compact)
    return u, p, steps.at[:, k].set(count), ends.at[k].set(t_ends)

  n = i0.shape[0]
  steps = jnp.zeros((n, params.warps), jnp.int32)
  ends = jnp.zeros((params.warps, len(stage_widths(n)) if compact else 1), jnp.int32)
  u, _, steps, ends = lax.fori_loop(0, params.warps, one_warp, (u, p, steps, ends))
  return u, steps, ends


def _outer_loop(u, p, data, stop, params: TVL1Params, compact: bool = True):
  """One warp's iterations: median filtering + primal-dual steps, with OpenCV's early stop per pair.

  A pair runs ``outer_iterations`` x (median filter, then up to
  ``inner_iterations`` steps) and stops for the rest of the warp once a step
  changes its flow by <= ``stop`` (summed squared pixels). In a batch, the
  loop runs until the slowest pair stops; with ``compact`` the steps run on
  narrower batches (``stage_widths``: N, N/2, ..., down to N/128 or 1): once
  the pairs still running fit in the next width, they are gathered, in order,
  into a batch of that width (state and data term), and the finished pairs'
  results are scattered back to their places, so finished pairs stop costing
  work and only the narrower batch is copied. Each pair's arithmetic is the
  same either way.

  Returns (u, p, steps, stage_ends): steps (N,) int32, the primal-dual steps
  each pair ran; stage_ends (stages,) int32, the warp's step count when each
  width finished (the longest-running pair's steps at the end).
  """
  n = u[0].shape[0]
  total = params.outer_iterations * params.inner_iterations
  widths = stage_widths(n) if compact else [n]
  run = dict(u=u, p=p, active=jnp.ones((n,), bool), count=jnp.zeros((n,), jnp.int32))
  result, order = None, None  # the pairs' (u, p, count) in batch order; run[k] is pair order[k]
  t = jnp.zeros((), jnp.int32)  # steps taken by the warp's longest-running pairs
  ends = []
  for i, width in enumerate(widths):
    rest = widths[i + 1] if i + 1 < len(widths) else 0  # go on while more pairs run than that
    t, run = _run_stage(t, run, data, rest, total, stop, params)
    ends.append(t)
    done = {k: run[k] for k in ("u", "p", "count")}
    result = done if order is None else jax.tree.map(lambda a, b: a.at[order].set(b), result, done)
    if rest:  # the running pairs, in order, make the next (narrower) batch
      keep = jnp.argsort(~run["active"], stable=True)[:rest].astype(jnp.int32)
      run, data = _batch_map(lambda a: a[keep], (run, data))
      order = keep if order is None else order[keep]
  return result["u"], result["p"], result["count"], jnp.stack(ends)


def stage_widths(n: int, stages: int = 8) -> list[int]:
  """Batch widths the compacting solver steps: n, ceil(n / 2), ... (at most ``stages``, down to 1).

  Each width compiles its own copy of the loops. The slowest pairs run all
  the steps (300 at OpenCV's defaults) while most stop within 30-70, so the
  last width must be small: for the protocol's 125 pairs a video, widths
  down to 16 (4 stages) did 1.86x the useful work, measured on the shared
  clips; down to 1 (8 stages) avoids most of that.
  """
  widths = [n]
  while widths[-1] > 1 and len(widths) < stages:
    widths.append((widths[-1] + 1) // 2)
  return widths


def _run_stage(t, run, data, rest, total, stop, params: TVL1Params):
  """Steps the pairs of ``run`` (u, p, active, count) while more than ``rest`` of them run and t < total.

  Returns (t, run) at the end of the stage.
  """
  inner = params.inner_iterations

  def running(t, s):
    return (t < total) & (jnp.sum(s["active"]) > rest)

  def outer_body(carry):
    t, s = carry
    u = s["u"]
    if params.median_filtering > 1:  # at the start of each outer iteration (not on entering mid-way)
      filtered = tuple(median_filter(c, params.median_filtering) for c in u[:2])
      u = _where_pair(s["active"] & (t % inner == 0), filtered, u[:2]) + u[2:]
    end = (t // inner + 1) * inner

    def step(s, on):  # one primal-dual step of the pairs where ``on``; the others keep their state
      u_new, p_new, change = primal_dual_step(s["u"], s["p"], *data, params)
      return dict(s, u=_where_pair(on, u_new, s["u"]), p=_where_pair(on, p_new, s["p"]),
                  active=s["active"] & ~(on & (change <= stop)), count=s["count"] + on)

    def inner_body(c):  # STEPS_PER_TRIP = 2: the second step writes where the first read, so the
      # loop copies no state (one step a trip: XLA:GPU copied u and p back, 48 of 112 bytes/pixel)
      t, s = c
      s = step(s, s["active"])
      second = t + 1 < end  # (always, for an even inner_iterations) also when the stage could end
      s = step(s, s["active"] & second)  # here: its pairs' arithmetic does not depend on the width
      return t + 1 + second.astype(t.dtype), s

    return lax.while_loop(lambda c: (c[0] < end) & running(*c), inner_body, (t, dict(s, u=u)))

  return lax.while_loop(lambda c: running(*c), outer_body, (t, run))


def _batch_map(fn, tree):
  """``fn`` on every batched array of ``tree`` (leaves with a leading pair axis; floats pass)."""
  return jax.tree.map(lambda a: a if isinstance(a, float) else fn(a), tree)


def _where_pair(active, new, old):
  """Per pair (leading axis): ``new`` where active, else ``old``; pytrees of (N, H, W)."""
  return jax.tree.map(lambda a, b: jnp.where(active[:, None, None], a, b), new, old)
