"""SRVGGNetCompact (Real-ESRGAN's compact VGG-style SR net, ``realesr-animevideov3``) and ``Outscale``.

Follows xinntao/Real-ESRGAN ``realesrgan/archs/srvgg_arch.py``:

``SRVGGNetCompact``: LR frames (N, h, w, 3) in [0, 1] -> SR frames (N, h*scale, w*scale, 3),
not clipped. conv_0 (3x3, 3 -> features), PReLU, then ``num_conv`` x (3x3 conv, PReLU), then
conv_{num_conv+1} (features -> 3*scale^2), pixel shuffle (``layers.depth_to_space``: channel
(dy*s + dx)*3 + c), plus the nearest-upsampled input (the net learns the residual).
The PReLUs have one slope per channel (PyTorch ``nn.PReLU(num_parameters=features)``, init 0.25).
621,424 parameters at features 64, num_conv 16, x4 (realesr-animevideov3-x4).

``SRVGGNetTemporal`` (beyond Real-ESRGAN, issue 24's temporal context): a clip model, (N, T, h, w, 3)
-> (N, T, h*scale, w*scale, 3). Output frame t sees the K-frame LR window t-K//2 .. t+K//2 (the clip's
end frames repeated at its edges), stacked frame-major on channels (k*3 + c) into conv_0: early fusion,
as VSR-DUF's K-frame input (Jo et al., CVPR 2018, Sec. 3). Everything else, the nearest skip (from
frame t) included, is SRVGGNetCompact's with the same parameter names, so its params with conv_0
widened by zeros for the neighbour frames (``studies/corpus_search.expand_frames``) compute exactly
SRVGGNetCompact on every frame.

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
    return self.trunk(lr, lr)

  def trunk(self, x: jax.Array, lr: jax.Array) -> jax.Array:
    """conv_0's input x (N, h, w, any channels) -> SR (N, h*scale, w*scale, C) with the nearest skip
    from lr (N, h, w, C); called from ``__call__`` (the submodules are its)."""
    torch_init = layers.torch_default_init()
    conv = lambda feat, i: nn.Conv(feat, (3, 3), dtype=self.dtype, kernel_init=torch_init,  # noqa: E731
                                   name=f"conv_{i}")
    x = x.astype(self.dtype)
    for i in range(self.num_conv + 1):
      x = PReLU(self.dtype, name=f"prelu_{i}")(conv(self.features, i)(x))
    x = conv(lr.shape[-1] * self.scale ** 2, self.num_conv + 1)(x)
    out = layers.depth_to_space(x, self.scale).astype(jnp.float32)
    return out + layers.upsample_nearest(lr.astype(jnp.float32), self.scale)


class SRVGGNetTemporal(SRVGGNetCompact):
  """SRVGGNetCompact on K-frame LR windows (module doc); a clip model (models.input_ndim 5)."""
  INPUT_NDIM = 5
  frames: int = 3  # K, odd: LR frames per output frame
  # the neighbour frames enter conv_0 times this constant: under Adam (invariant to a gradient's scale)
  # their weights then learn ``context_gain`` x faster in effect, as ProGAN's equalized learning rate
  # (Karras et al., ICLR 2018, Sec. 4.1); zero-initialised weights keep step 0 exact for any gain.
  context_gain: float = 1.0

  @nn.compact
  def __call__(self, lr: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, T, h, w, C) -> (N, T, h*scale, w*scale, C), float32."""
    del train
    if self.frames < 1 or self.frames % 2 == 0:
      raise ValueError(f"SRVGGNetTemporal frames={self.frames}: an odd window (1, 3, 5, ...) is needed")
    n, t, h, w, c = lr.shape
    r = self.frames // 2
    padded = jnp.concatenate([jnp.repeat(lr[:, :1], r, axis=1), lr, jnp.repeat(lr[:, -1:], r, axis=1)], axis=1)
    x = jnp.concatenate([padded[:, k:k + t] * (1.0 if k == r else self.context_gain) for k in range(self.frames)],
                        axis=-1)  # (N, T, h, w, K*C)
    out = self.trunk(x.reshape(n * t, h, w, self.frames * c), lr.reshape(n * t, h, w, c))
    return out.reshape(n, t, h * self.scale, w * self.scale, c)


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
