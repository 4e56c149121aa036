"""Image-quality metrics as the SR literature reports them.

PSNR and SSIM on the luma (Y) channel of ITU-R BT.601 YCbCr (MATLAB's
``rgb2ycbcr``: Y in [16, 235]), computed on frames quantized to 8 bits, with
``border`` pixels cropped on each side (the usual crop = the SR scale).
Optionally restricted to a pixel mask (e.g. moving pixels, |flow| > threshold).

Inputs are (N, H, W, 3) float frames in [0, 1]; outputs are per-image (N,)
values, NaN where a mask selects no pixel. PSNR of identical frames is +inf;
``mean_of`` averages per-image values the same way everywhere (NaN skipped,
any inf makes the mean inf).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def rgb_to_y(frames: jax.Array) -> jax.Array:
  """(..., 3) RGB in [0, 1] -> (...) BT.601 luma in [16, 235] (float)."""
  coeffs = jnp.asarray([65.481, 128.553, 24.966], jnp.float32)
  return 16.0 + jnp.tensordot(frames.astype(jnp.float32), coeffs, axes=1)


def quantize(frames: jax.Array) -> jax.Array:
  """Rounds [0, 1] frames to the 8-bit grid (what a saved SR frame would hold)."""
  return jnp.round(jnp.clip(frames, 0.0, 1.0) * 255.0) / 255.0


def _crop(x: jax.Array, border: int) -> jax.Array:
  return x[:, border:x.shape[1] - border, border:x.shape[2] - border] if border else x


def psnr_y(pred: jax.Array, target: jax.Array, *, border: int = 0,
           mask: jax.Array | None = None) -> jax.Array:
  """Per-image PSNR (dB) on Y (+inf for identical frames). mask: (N, H, W) bool, or None for all pixels."""
  py = _crop(rgb_to_y(quantize(pred)), border)
  ty = _crop(rgb_to_y(quantize(target)), border)
  w = jnp.ones_like(py) if mask is None else _crop(mask, border).astype(jnp.float32)
  count = jnp.sum(w, axis=(1, 2))
  mse = jnp.sum(w * jnp.square(py - ty), axis=(1, 2)) / jnp.maximum(count, 1.0)
  psnr = jnp.where(mse > 0, 10.0 * jnp.log10(255.0 ** 2 / jnp.where(mse > 0, mse, 1.0)), jnp.inf)
  return jnp.where(count > 0, psnr, jnp.nan)


def mean_of(values) -> float | None:
  """Mean of per-image metric values, NaN (no pixel selected) skipped; None if none is left.

  An inf PSNR (identical frames) makes the mean inf, as it should for HR against itself.
  """
  x = np.asarray(values, np.float64).ravel()
  x = x[~np.isnan(x)]
  return float(x.mean()) if x.size else None


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  return (g / g.sum()).astype(np.float32)


def _filter_valid(x: jax.Array, g: np.ndarray) -> jax.Array:
  """Separable 'valid' Gaussian filtering of (N, H, W) -> (N, H-k+1, W-k+1)."""
  k = len(g)
  x = x[:, None]  # NCHW
  x = jax.lax.conv_general_dilated(x, jnp.asarray(g).reshape(1, 1, k, 1), (1, 1), "VALID")
  x = jax.lax.conv_general_dilated(x, jnp.asarray(g).reshape(1, 1, 1, k), (1, 1), "VALID")
  return x[:, 0]


def ssim_y(pred: jax.Array, target: jax.Array, *, border: int = 0,
           mask: jax.Array | None = None) -> jax.Array:
  """Per-image SSIM on Y (Wang et al. 2004: 11x11 Gaussian, sigma 1.5, K = 0.01, 0.03).

  The SSIM map covers the window centres of the cropped frame ('valid'
  filtering, as MATLAB's ssim); with a mask, it is averaged over the centres
  whose pixel is in the mask.
  """
  x = _crop(rgb_to_y(quantize(pred)), border)
  y = _crop(rgb_to_y(quantize(target)), border)
  g = _gaussian_window()
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  mx, my = _filter_valid(x, g), _filter_valid(y, g)
  sxx = _filter_valid(x * x, g) - mx * mx
  syy = _filter_valid(y * y, g) - my * my
  sxy = _filter_valid(x * y, g) - mx * my
  ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
  r = len(g) // 2
  if mask is None:
    w = jnp.ones_like(ssim_map)
  else:
    m = _crop(mask, border).astype(jnp.float32)
    w = m[:, r:m.shape[1] - r, r:m.shape[2] - r]
  count = jnp.sum(w, axis=(1, 2))
  value = jnp.sum(w * ssim_map, axis=(1, 2)) / jnp.maximum(count, 1.0)
  return jnp.where(count > 0, value, jnp.nan)


def moving_mask(flow: jax.Array, threshold: float) -> jax.Array:
  """(N, H, W, 2) flow in pixels -> (N, H, W) bool, True where |flow| > threshold."""
  return jnp.sqrt(jnp.sum(jnp.square(flow.astype(jnp.float32)), axis=-1)) > threshold


def border_for(scale: int, override: int | None = None) -> int:
  """Pixels cropped per side before PSNR/SSIM: the SR literature's ``scale``, unless ``override``.

  The one convention of every evaluation (SR quality, the recognition protocol).
  """
  return int(scale if override is None else override)
