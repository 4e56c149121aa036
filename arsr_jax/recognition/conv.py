"""Strided 3D convolutions whose input gradient is fast on every backend.

XLA's CPU backend computes the input gradient of a strided 3D convolution (a convolution with
``lhs_dilation``) on a slow generic path: 22 s for I3D's 7x7x7 stride-2 stem on one 16 x 112 x 112
clip, 130x its forward, and ~7x the forward for a 3x3x3 stride-2 ResNet convolution. Written as a
stride-1 ``VALID`` convolution on space-to-depth input (the TPU I3D stem trick) the gradient is a
plain convolution again (0.21 s for that stem). Same parameter (``kernel``, (*k, C, O)), same values
up to float summation order; 2D convolutions keep ``nn.Conv`` (their gradients are fast).
Shapes: x (N, *spatial, C) channels-last, kernel (*k, C, O).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Padding = str | Sequence[tuple[int, int]]


def strided_conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Padding = "SAME") -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, strides, padding)`` (channels last; ``padding`` 'SAME',
  'VALID' or (low, high) per spatial axis) computed as a stride-1 convolution on space-to-depth input:
  each axis is padded as the strided convolution would be, the kernel zero-padded to a multiple of
  its stride, and stride blocks moved into channels."""
  nd = len(strides)
  pads, taps, blocks = [], [], []
  for i, (n, k, s) in enumerate(zip(x.shape[1:-1], kernel.shape[:nd], strides)):
    if padding == "SAME":
      out = -(-n // s)
      lo = max((out - 1) * s + k - n, 0) // 2
    else:
      lo, hi = (0, 0) if padding == "VALID" else padding[i]
      out = (n + lo + hi - k) // s + 1
    a = -(-k // s)  # kernel taps per stride block
    pads.append((lo, (out + a - 1) * s - n - lo))
    taps.append((0, a * s - k))
    blocks.append((out + a - 1, a))
  x = jax.lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *[(lo, hi, 0) for lo, hi in pads], (0, 0, 0)])
  kernel = jnp.pad(kernel, [*taps, (0, 0), (0, 0)])
  c, o = x.shape[-1], kernel.shape[-1]
  # (N, B0, s0, B1, s1, ..., C) -> (N, B0, B1, ..., s0, s1, ..., C) -> (N, B..., prod(s) * C)
  x = x.reshape(x.shape[0], *[d for (b, _), s in zip(blocks, strides) for d in (b, s)], c)
  x = x.transpose(0, *range(1, 2 * nd, 2), *range(2, 2 * nd + 1, 2), 2 * nd + 1)
  x = x.reshape(*x.shape[:nd + 1], -1)
  kernel = kernel.reshape(*[d for (_, a), s in zip(blocks, strides) for d in (a, s)], c, o)
  kernel = kernel.transpose(*range(0, 2 * nd, 2), *range(1, 2 * nd, 2), 2 * nd, 2 * nd + 1)
  kernel = kernel.reshape(*kernel.shape[:nd], -1, o)
  spec = "N" + "DHW"[-nd:] + "C"
  return jax.lax.conv_general_dilated(x, kernel, (1,) * nd, "VALID",
                                      dimension_numbers=(spec, "DHW"[-nd:] + "IO", spec))


class StridedConv(nn.Module):
  """``nn.Conv(features, kernel, strides, padding, use_bias=False)`` computed by :func:`strided_conv`."""
  features: int
  kernel: Sequence[int]
  strides: Sequence[int]
  padding: Padding = "SAME"
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (*self.kernel, x.shape[-1], self.features), jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return strided_conv(x, kernel, self.strides, self.padding)


def conv(features: int, kernel: Sequence[int], strides: Sequence[int], padding: Padding, dtype: Any,
         kernel_init: Any, name: str) -> nn.Module:
  """A bias-free convolution module: :class:`StridedConv` for a strided 3D one, else ``nn.Conv``."""
  if len(kernel) == 3 and any(s > 1 for s in strides):
    return StridedConv(features, tuple(kernel), tuple(strides), padding, dtype, kernel_init, name=name)
  return nn.Conv(features, tuple(kernel), strides=tuple(strides), padding=padding, use_bias=False, dtype=dtype,
                 kernel_init=kernel_init, name=name)
