"""RCAN (Zhang et al., ECCV 2018): residual channel attention network.

Follows the paper's configuration and BasicSR's implementation
(XPixelGroup/BasicSR: basicsr/archs/rcan_arch.py with num_block=20, as its
RCAN training options set).

LR frames (N, h, w, 3) in [0, 1] -> SR frames (N, h*scale, w*scale, 3), not clipped.
  mean shift: x -> (x - rgb_mean) * img_range       (RCAN works on [0, 255] pixels)
  conv_first 3x3 (64)
  10 residual groups, each 20 x RCAB + conv 3x3, with the group's skip
  conv_after_body 3x3, + conv_first's features (long skip)
  pixel-shuffle upsampler (conv 3x3 -> 4C, shuffle x2 per factor 2; x3 in one step)
  conv_last 3x3 (3); undo the mean shift: y / img_range + rgb_mean
RCAB = conv 3x3, ReLU, conv 3x3, channel attention (64 -> 4 -> 64, sigmoid), times
res_scale, + skip. 15,592,355 parameters at x4 (BasicSR's count). Kernels use
PyTorch's default initialisation (biases start at zero here). Groups and RCABs run
as nested ``nn.scan`` s (``layers.repeat``): XLA compiles one RCAB, not 200. Their
parameters are stacked: ``groups/rcabs/...`` (10, 20, ...), ``groups/conv`` (10, ...);
``remat=True`` recomputes each RCAB's activations in the backward pass. Older
checkpoints' per-block names (``group_G/rcab_B``) are converted once by
``python -m arsr_jax.upgrade`` (models/legacy_layout.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.models import layers



class RCAB(nn.Module):
  """Residual channel attention block, shape-preserving on (N, H, W, C)."""
  reduction: int = 16
  res_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = layers.torch_default_init()
    c = x.shape[-1]
    y = nn.relu(nn.Conv(c, (3, 3), dtype=self.dtype, kernel_init=init, name="conv1")(x))
    y = nn.Conv(c, (3, 3), dtype=self.dtype, kernel_init=init, name="conv2")(y)
    y = layers.ChannelAttention(self.reduction, dtype=self.dtype, name="attention")(y)
    return x + self.res_scale * y


class ResidualGroup(nn.Module):
  """``num_blocks`` RCABs and a conv, with a skip over the group: (N, H, W, C) -> same."""
  num_blocks: int = 20
  reduction: int = 16
  res_scale: float = 1.0
  dtype: Any = jnp.float32
  remat: bool = False
  scan_unroll: int | None = None  # blocks per loop iteration; None: layers.repeat's default

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    rcab = dict(reduction=self.reduction, res_scale=self.res_scale, dtype=self.dtype)
    y = layers.repeat(RCAB, rcab, self.num_blocks, x, name="rcabs", remat=self.remat, unroll=self.scan_unroll)
    y = nn.Conv(x.shape[-1], (3, 3), dtype=self.dtype, kernel_init=layers.torch_default_init(), name="conv")(y)
    return x + y


class RCAN(nn.Module):
  scale: int = 4
  num_groups: int = 10
  num_blocks: int = 20
  features: int = 64
  reduction: int = 16
  res_scale: float = 1.0
  img_range: float = 255.0
  rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040)  # DIV2K, RGB
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32
  remat: bool = False  # recompute RCAB activations in the backward pass (less memory)
  scan_unroll: int | None = None  # blocks per loop iteration; None: layers.repeat's default

  @nn.compact
  def __call__(self, lr: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, h, w, 3) -> (N, h*scale, w*scale, 3), float32."""
    init = layers.torch_default_init()
    mean = jnp.asarray(self.rgb_mean, jnp.float32)
    x = ((lr.astype(jnp.float32) - mean) * self.img_range).astype(self.dtype)
    feat = nn.Conv(self.features, (3, 3), dtype=self.dtype, kernel_init=init, name="conv_first")(x)
    group = dict(num_blocks=self.num_blocks, reduction=self.reduction, res_scale=self.res_scale,
                 dtype=self.dtype, remat=self.remat, scan_unroll=self.scan_unroll)
    body = layers.repeat(ResidualGroup, group, self.num_groups, feat, name="groups", unroll=self.scan_unroll,
                         train=train)
    body = nn.Conv(self.features, (3, 3), dtype=self.dtype, kernel_init=init, name="conv_after_body")(body)
    up = layers.PixelShuffleUpsampler(self.scale, dtype=self.dtype, name="upsample")(feat + body)
    out = nn.Conv(lr.shape[-1], (3, 3), dtype=self.dtype, kernel_init=init, name="conv_last")(up)
    return out.astype(jnp.float32) / self.img_range + mean
