"""Building blocks shared by the SR networks (all channels-last).

Frames are (N, H, W, C), clips (N, T, H, W, C). Convolutions are ``nn.Conv``
with a 2-tuple (frames) or 3-tuple (clips) kernel, so one block definition
serves both; ``dtype`` is the compute dtype, parameters stay float32.

- ``depth_to_space`` / ``space_to_depth``: NHWC pixel (un)shuffle. Channel
  order is TensorFlow's (sub-row, sub-column, channel), channel fastest; PyTorch's
  ``PixelShuffle`` uses (channel, sub-row, sub-column), so porting PyTorch weights
  of the conv before a shuffle needs a permutation of its output channels.
- ``upsample_nearest``, ``resize_linear``: parameter-free resizes.
- ``ResidualDenseBlock``, ``RRDB``: ESRGAN's blocks, 2D or 3D by ``kernel_size``.
- ``ChannelAttention``: RCAN's squeeze-and-excitation gate.
- ``PixelShuffleUpsampler``: (conv -> depth_to_space [-> activation]) per factor.
- ``repeat``: a chain of identical blocks as one ``nn.scan`` (parameters stacked;
  models/legacy_layout.py maps that tree to the per-block names of older checkpoints).
- Initialisers matching PyTorch's defaults (``torch_default_init``) and
  BasicSR's ``default_init_weights`` (``scaled_kaiming_normal``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def torch_default_init() -> Initializer:
  """PyTorch's default conv/linear kernel init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def scaled_kaiming_normal(scale: float) -> Initializer:
  """Kaiming-normal (gain sqrt(2), fan_in) times ``scale``: BasicSR's default_init_weights."""
  return nn.initializers.variance_scaling(2.0 * scale * scale, "fan_in", "normal")


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU with slope 0.2, the ESRGAN / DVSR / discriminator activation."""
  return nn.leaky_relu(x, negative_slope=0.2)


# ----------------------------------------------------------------------------- resizing


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  """(..., h, w, b*b*C) -> (..., h*b, w*b, C); input channel (dy*b + dx)*C + c."""
  *lead, h, w, c = x.shape
  out_c = c // (block * block)
  if out_c * block * block != c:
    raise ValueError(f"depth_to_space: {c} channels are not divisible by {block}^2")
  x = x.reshape(*lead, h, w, block, block, out_c)
  n = len(lead)
  x = jnp.moveaxis(x, n + 2, n + 1)  # (..., h, dy, w, dx, C)
  return x.reshape(*lead, h * block, w * block, out_c)


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
  """(..., H, W, C) -> (..., H/b, W/b, b*b*C), the inverse of ``depth_to_space``."""
  *lead, hh, ww, c = x.shape
  if hh % block or ww % block:
    raise ValueError(f"space_to_depth: size {hh}x{ww} is not divisible by {block}")
  x = x.reshape(*lead, hh // block, block, ww // block, block, c)
  n = len(lead)
  x = jnp.moveaxis(x, n + 1, n + 2)  # (..., h, w, dy, dx, C)
  return x.reshape(*lead, hh // block, ww // block, block * block * c)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of the two spatial axes: (..., h, w, C) -> (..., h*f, w*f, C)."""
  *lead, h, w, c = x.shape
  x = jnp.broadcast_to(x[..., :, None, :, None, :], (*lead, h, factor, w, factor, c))
  return x.reshape(*lead, h * factor, w * factor, c)


def resize_linear(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """(Tri/bi)linear resize of the axes before channels to ``size`` (leading batch axis kept).

  Half-pixel centres without anti-aliasing, i.e. PyTorch's
  ``F.interpolate(mode='trilinear', align_corners=False)``: upsampling clamps at
  the borders, downsampling by 2 averages pairs. Axes whose size is unchanged
  are left untouched (exact identity).
  """
  shape = (x.shape[0], *size, x.shape[-1])
  if tuple(shape) == x.shape:
    return x
  return jax.image.resize(x, shape, method="linear", antialias=False)


# ----------------------------------------------------------------------------- blocks


class ResidualDenseBlock(nn.Module):
  """ESRGAN residual dense block: 5 densely connected convs, ``x + res_scale * conv5(...)``.

  2D with ``kernel_size=(3, 3)`` on (N, H, W, C), 3D with ``(3, 3, 3)`` on
  (N, T, H, W, C). conv1..4 output ``growth`` channels (LeakyReLU 0.2), conv5
  maps back to the input's C channels; the output has the input's shape.
  """
  growth: int = 32
  kernel_size: Sequence[int] = (3, 3)
  res_scale: float = 0.2
  kernel_init: Initializer = scaled_kaiming_normal(0.1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = lambda feat, name: nn.Conv(feat, tuple(self.kernel_size), dtype=self.dtype,  # noqa: E731
                                      kernel_init=self.kernel_init, name=name)
    feats = [x]
    for i in range(4):
      feats.append(leaky_relu(conv(self.growth, f"conv{i + 1}")(jnp.concatenate(feats, axis=-1))))
    out = conv(x.shape[-1], "conv5")(jnp.concatenate(feats, axis=-1))
    return x + self.res_scale * out


class RRDB(nn.Module):
  """Residual-in-residual dense block: 3 ``ResidualDenseBlock`` s and ``x + res_scale * (...)``.

  Shape-preserving on (N, H, W, C) or (N, T, H, W, C) (see ``kernel_size``).
  """
  growth: int = 32
  kernel_size: Sequence[int] = (3, 3)
  res_scale: float = 0.2
  kernel_init: Initializer = scaled_kaiming_normal(0.1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out = x
    for i in range(3):
      out = ResidualDenseBlock(self.growth, self.kernel_size, self.res_scale, self.kernel_init,
                               dtype=self.dtype, name=f"rdb{i + 1}")(out)
    return x + self.res_scale * out


class ChannelAttention(nn.Module):
  """RCAN channel attention: x * sigmoid(W2 relu(W1 mean_hw(x))), C -> C/reduction -> C.

  (N, H, W, C) -> (N, H, W, C); the 1x1 convs carry biases as in RCAN.
  """
  reduction: int = 16
  kernel_init: Initializer = torch_default_init()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    y = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), keepdims=True)
    y = nn.relu(nn.Conv(c // self.reduction, (1, 1), dtype=self.dtype, kernel_init=self.kernel_init,
                        name="squeeze")(y))
    y = nn.sigmoid(nn.Conv(c, (1, 1), dtype=self.dtype, kernel_init=self.kernel_init, name="excite")(y))
    return x * y


def upsampling_factors(scale: int) -> list[int]:
  """Pixel-shuffle steps for ``scale``: [2]*log2(scale) for powers of two, [3] for 3."""
  if scale == 3:
    return [3]
  if scale >= 2 and scale & (scale - 1) == 0:
    return [2] * int(math.log2(scale))
  raise ValueError(f"Upsampling supports scales 2^n and 3, got {scale}")


class PixelShuffleUpsampler(nn.Module):
  """Sub-pixel upsampling: per factor f, conv3x3 C -> f*f*C, depth_to_space(f), activation.

  (N, h, w, C) -> (N, h*scale, w*scale, C). ``activation='prelu'`` adds one
  PReLU (a single slope, init 0.25 as PyTorch) per step (SRGAN); None for RCAN.
  """
  scale: int = 4
  activation: str | None = None
  kernel_init: Initializer = torch_default_init()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    for i, f in enumerate(upsampling_factors(self.scale)):
      x = nn.Conv(f * f * c, (3, 3), dtype=self.dtype, kernel_init=self.kernel_init, name=f"conv{i}")(x)
      x = depth_to_space(x, f)
      if self.activation == "prelu":
        x = nn.PReLU(negative_slope_init=0.25, name=f"prelu{i}")(x)
      elif self.activation is not None:
        raise ValueError(f"Unknown upsampler activation {self.activation!r}")
    return x


# ----------------------------------------------------------------------------- repeated blocks
#
# A chain of identical blocks runs as one ``nn.scan``: XLA compiles one block instead of n, and
# the parameters (and so the optimizer's updates) are n times fewer, larger arrays. The block
# parameters are stacked on a leading axis under one name; models/legacy_layout.py maps that tree
# to the per-block names of the unrolled networks (``body_0``, ``body_1``, ...), which older
# checkpoints and PyTorch ports use.


class ConvReLU(nn.Conv):
  """``nn.Conv`` followed by ReLU, with the conv's own parameters (kernel, bias)."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.relu(super().__call__(x))


@functools.cache
def _carrying(block: type[nn.Module]) -> type[nn.Module]:
  """``block`` with the scan signature (x, None) -> (x, None)."""
  return type(f"{block.__name__}Step", (block,),
              {"__call__": lambda self, x, _: (block.__call__(self, x), None)})


# Blocks per scan iteration on GPUs / TPUs (``repeat``'s default), when training / at inference.
# At inference a one-block loop copies its carry every iteration (the convolution cannot write
# over its own input), which two blocks an iteration avoid: VDSR-20's forward on an H100 moves
# 5.0 instead of 9.6 KB a pixel (deviceless XLA:GPU compile, benchmarks/aot.py). Training saves
# each block's activations anyway, and one block an iteration compiles fastest.
ACCELERATOR_UNROLL = {True: 1, False: 2}


def repeat(block: type[nn.Module], kwargs: dict[str, Any], length: int, x: jax.Array, *, name: str,
           remat: bool = False, unroll: int | None = None, train: bool = True) -> jax.Array:
  """``x`` through ``length`` shape-preserving ``block(**kwargs)`` s, as one ``nn.scan``.

  Call it from a compact method: the blocks' parameters are stacked, (length, ...) per leaf,
  under ``name``. ``remat`` recomputes each block's activations in the backward pass instead of
  storing them (``nn.remat``): less memory, about one more forward pass of compute. ``unroll``:
  blocks per loop iteration; None = ``length`` (no loop) on a CPU, else ``ACCELERATOR_UNROLL[train]``.
  XLA:CPU runs a convolution's weight gradient inside a loop body ~100x slower (it keeps a layout
  its fast convolutions do not take), so CPUs run the blocks unrolled, with the same parameters.
  """
  if unroll is None:
    unroll = length if jax.default_backend() == "cpu" else ACCELERATOR_UNROLL[bool(train)]
  cls = nn.remat(_carrying(block)) if remat else _carrying(block)
  scan = nn.scan(cls, variable_axes={"params": 0}, split_rngs={"params": True}, length=length,
                 unroll=max(1, min(unroll, length)))
  return scan(**kwargs, name=name)(x, None)[0]
