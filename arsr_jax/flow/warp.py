"""Backward warping of frames by optical flow.

``warp(image, flow)`` samples ``image`` at ``x + flow(x)``: with ``flow`` the
forward flow from frame t to frame t + 1 (package convention, see
``arsr_jax/__init__.py``), ``warp(frame[t + 1], flow[t])`` reconstructs
``frame[t]`` wherever the pixel stays visible.

The ICCV'19 paper (Sec. 3.2, ToSR) writes the warped frame as
I~_{t+1}(x) = I^_{t+1}(x - F_{t->t+1}) and compares it with frame t; its released
code samples at x + flow(x) (AlanZhang1995/TwoStreamSR
ToSR/step1_training_dataset/WarpInMatlab.m: ``x2 = x + flow(y, x, 1)``), as this
function does with the forward flow t -> t+1. The paper's ``x - F`` thus reads
F as the displacement from frame t+1 back to frame t, i.e. minus this package's
forward flow (tests/test_recipes_match_papers.py::test_warp_direction_matches_the_papers_warped_frame).

Bilinear interpolation through
``jax.scipy.ndimage.map_coordinates`` (order 1), differentiable with respect to
both the image and the flow; works under ``jit`` and ``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _warp_single(image: jax.Array, flow: jax.Array, mode: str) -> tuple[jax.Array, jax.Array]:
  """image (H, W, C), flow (H, W, 2) -> (warped (H, W, C), valid (H, W))."""
  h, w = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype), indexing="ij")
  sx = xs + flow[..., 0]
  sy = ys + flow[..., 1]
  valid = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)

  def sample(channel):
    return jax.scipy.ndimage.map_coordinates(channel, [sy, sx], order=1, mode=mode)

  warped = jax.vmap(sample, in_axes=-1, out_axes=-1)(image.astype(flow.dtype))
  return warped, valid


def warp(image: jax.Array, flow: jax.Array, *, mode: str = "nearest",
         return_mask: bool = False):
  """Backward-warps ``image`` by ``flow``.

  Args:
    image: (..., H, W, C) frames; any number of leading batch dimensions.
    flow: (..., H, W, 2) flow in pixels, (u, v) = (x, y) displacement; leading
      dimensions must match ``image``'s.
    mode: how samples outside the frame are filled (``map_coordinates`` modes:
      'nearest' clamps to the border, 'constant' gives 0).
    return_mask: also return the validity mask (..., H, W), True where the
      sample point lies inside the frame.

  Returns:
    The warped image (same shape as ``image``, the flow's float dtype), and the
    mask if ``return_mask``.
  """
  if image.shape[:-1] != flow.shape[:-1] or flow.shape[-1] != 2:
    raise ValueError(
        f"warp: image {image.shape} and flow {flow.shape} do not match; expected "
        "image (..., H, W, C) and flow (..., H, W, 2).")
  if not jnp.issubdtype(flow.dtype, jnp.floating):
    flow = flow.astype(jnp.float32)
  batch_shape = image.shape[:-3]
  img = image.reshape((-1,) + image.shape[-3:])
  flw = flow.reshape((-1,) + flow.shape[-3:])
  warped, valid = jax.vmap(lambda i, f: _warp_single(i, f, mode))(img, flw)
  warped = warped.reshape(batch_shape + warped.shape[1:])
  valid = valid.reshape(batch_shape + valid.shape[1:])
  return (warped, valid) if return_mask else warped
