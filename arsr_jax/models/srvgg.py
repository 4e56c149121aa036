"""SRVGGNetCompact (Real-ESRGAN's compact VGG-style SR net, ``realesr-animevideov3``) and ``Outscale``.

Follows xinntao/Real-ESRGAN ``realesrgan/archs/srvgg_arch.py``:

``SRVGGNetCompact``: LR frames (N, h, w, 3) in [0, 1] -> SR frames (N, h*scale, w*scale, 3),
not clipped. conv_0 (3x3, 3 -> features), PReLU, then ``num_conv`` x (3x3 conv, PReLU), then
conv_{num_conv+1} (features -> 3*scale^2), pixel shuffle (``layers.depth_to_space``: channel
(dy*s + dx)*3 + c), plus the nearest-upsampled input (the net learns the residual).
The PReLUs have one slope per channel (PyTorch ``nn.PReLU(num_parameters=features)``, init 0.25).
621,424 parameters at features 64, num_conv 16, x4 (realesr-animevideov3-x4).

``Outscale``: a network followed by a resize of its output (clipped to [0, 1]) to ``scale`` x the
input, as Real-ESRGAN's ``--outscale`` (``RealESRGANer.enhance``: the x4 model, then cv2.resize
with INTER_LANCZOS4); here ``jax.image.resize`` 'lanczos3' (a 6-tap Lanczos, cv2's is 8-tap).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.models import layers


class PReLU(nn.Module):
  """Per-channel PReLU: x if x >= 0 else alpha[c] * x (``alpha``: (C,), init 0.25 as PyTorch)."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    alpha = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],), jnp.float32)
    return jnp.where(x >= 0, x, alpha.astype(self.dtype) * x)


class SRVGGNetCompact(nn.Module):
  scale: int = 4
  features: int = 64
  num_conv: int = 16
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, lr: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, h, w, C) -> (N, h*scale, w*scale, C), float32."""
    del train
    torch_init = layers.torch_default_init()
    conv = lambda feat, i: nn.Conv(feat, (3, 3), dtype=self.dtype, kernel_init=torch_init,  # noqa: E731
                                   name=f"conv_{i}")
    x = lr.astype(self.dtype)
    for i in range(self.num_conv + 1):
      x = PReLU(self.dtype, name=f"prelu_{i}")(conv(self.features, i)(x))
    x = conv(lr.shape[-1] * self.scale ** 2, self.num_conv + 1)(x)
    out = layers.depth_to_space(x, self.scale).astype(jnp.float32)
    return out + layers.upsample_nearest(lr.astype(jnp.float32), self.scale)


class Outscale(nn.Module):
  """``net`` (x ``net.scale``), its output clipped to [0, 1] and resized to x ``scale`` of the input.

  Parameters live under ``net``. (N, h, w, C) -> (N, h*scale, w*scale, C), float32.
  """
  net: nn.Module
  scale: int = 8
  method: str = "lanczos3"

  @nn.compact
  def __call__(self, lr: jax.Array, *, train: bool = False) -> jax.Array:
    sr = jnp.clip(self.net(lr, train=train), 0.0, 1.0)
    *lead, h, w, c = lr.shape
    return jax.image.resize(sr, (*lead, h * self.scale, w * self.scale, c), self.method)
