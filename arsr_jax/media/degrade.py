"""Resolution changes: bicubic down/up-sampling of frames and clips.

All functions take (..., H, W, C) arrays and resize the two spatial axes with
Keys' cubic kernel (a = -0.5), anti-aliased when downsampling, which matches
MATLAB's ``imresize`` used to make the LR inputs of the SR literature. They work
on NumPy input (returning NumPy) and inside ``jit`` on JAX arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _resize(x, height: int, width: int, method: str = "bicubic"):
  shape = tuple(x.shape[:-3]) + (height, width, x.shape[-1])
  return jax.image.resize(x, shape, method=method, antialias=True)


def bicubic_downsample(frames, scale: int):
  """(..., H, W, C) -> (..., H/scale, W/scale, C). uint8 in, uint8 out (rounded)."""
  h, w = frames.shape[-3:-1]
  if h % scale or w % scale:
    raise ValueError(f"bicubic_downsample: frame size {h}x{w} is not divisible by scale {scale}")
  return _resize_keep_dtype(frames, h // scale, w // scale)


def bicubic_upsample(frames, scale: int):
  """(..., h, w, C) -> (..., h*scale, w*scale, C), keeping the input's dtype."""
  h, w = frames.shape[-3:-1]
  return _resize_keep_dtype(frames, h * scale, w * scale)


def resize(frames, height: int, width: int):
  """(..., H, W, C) -> (..., height, width, C), antialiased bicubic, keeping dtype (uint8 rounded)."""
  return _resize_keep_dtype(frames, height, width)


def _resize_keep_dtype(frames, height: int, width: int):
  is_numpy = isinstance(frames, np.ndarray)
  dtype = frames.dtype
  x = jnp.asarray(frames, jnp.float32)
  y = _resize(x, height, width)
  if jnp.issubdtype(dtype, jnp.integer):
    y = jnp.clip(jnp.round(y), 0, 255).astype(dtype)
  else:
    y = y.astype(dtype)
  return np.asarray(y) if is_numpy else y


def resize_flow(flow, height: int, width: int):
  """Resizes a flow field (..., H, W, 2) and rescales its vectors to the new size."""
  h, w = flow.shape[-3:-1]
  is_numpy = isinstance(flow, np.ndarray)
  f = _resize(jnp.asarray(flow, jnp.float32), height, width, method="linear")
  f = f * jnp.asarray([width / w, height / h], jnp.float32)
  return np.asarray(f) if is_numpy else f
