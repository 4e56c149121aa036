"""ESRGAN (Wang et al., ECCVW 2018): the RRDBNet generator and the VGG-style discriminator.

Both follow BasicSR (XPixelGroup/BasicSR: basicsr/archs/rrdbnet_arch.py,
discriminator_arch.py), the code the SoSR release builds on.

``RRDBNet``: LR frames (N, h, w, 3) in [0, 1] -> SR frames (N, h*scale, w*scale, 3),
not clipped. conv_first -> 23 RRDB (64 features, growth 32) -> conv_body, added to
conv_first's features -> twice (nearest x2, conv, LeakyReLU 0.2) -> conv_hr,
LeakyReLU -> conv_last. Scales 2 and 1 first pixel-unshuffle the input by 2 and 4
(as BasicSR), so the trunk always upsamples x4. 16,697,987 parameters at x4,
BasicSR's count. Initialisation as BasicSR: the dense-block convs Kaiming-normal
x 0.1, every other conv PyTorch's default (biases start at zero here). The RRDBs run
as one ``nn.scan`` (``layers.repeat``), their parameters stacked under ``body``
(23, ...); ``remat=True`` recomputes their activations in the backward pass. Older
checkpoints' and PyTorch ports' per-block names (``body_0`` .. ``body_22``) are mapped
by models/legacy_layout.py.

``VGGStyleDiscriminator``: frames (N, 128, 128, 3) (or 256 with ``input_size``)
-> logits (N, 1). Ten convs (3x3 stride 1 / 4x4 stride 2 pairs, 64 -> 512
channels, BatchNorm after all but the first, LeakyReLU 0.2) down to 4x4x512,
then dense 100, LeakyReLU, dense 1. 14,499,401 parameters at 128 px (BasicSR's).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.models import layers


class RRDBNet(nn.Module):
  scale: int = 4
  num_blocks: int = 23
  features: int = 64
  growth: int = 32
  out_channels: int = 3
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32
  remat: bool = False  # recompute RRDB activations in the backward pass (less memory)
  scan_unroll: int | None = None  # blocks per loop iteration; None: layers.repeat's default

  @nn.compact
  def __call__(self, lr: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, h, w, C) -> (N, h*scale, w*scale, out_channels), float32."""
    unshuffle = {4: 1, 2: 2, 1: 4}
    if self.scale not in unshuffle:
      raise ValueError(f"RRDBNet supports scales 1, 2 and 4, got {self.scale}")
    torch_init = layers.torch_default_init()
    conv = lambda feat, name: nn.Conv(feat, (3, 3), dtype=self.dtype, kernel_init=torch_init,  # noqa: E731
                                      name=name)
    x = lr.astype(self.dtype)
    if unshuffle[self.scale] > 1:
      x = layers.space_to_depth(x, unshuffle[self.scale])
    feat = conv(self.features, "conv_first")(x)
    rrdb = dict(growth=self.growth, kernel_size=(3, 3), dtype=self.dtype)
    body = layers.repeat(layers.RRDB, rrdb, self.num_blocks, feat, name="body", remat=self.remat,
                         unroll=self.scan_unroll, train=train)
    feat = feat + conv(self.features, "conv_body")(body)
    feat = layers.leaky_relu(conv(self.features, "conv_up1")(layers.upsample_nearest(feat, 2)))
    feat = layers.leaky_relu(conv(self.features, "conv_up2")(layers.upsample_nearest(feat, 2)))
    feat = layers.leaky_relu(conv(self.features, "conv_hr")(feat))
    return conv(self.out_channels, "conv_last")(feat).astype(jnp.float32)


class VGGStyleDiscriminator(nn.Module):
  """ESRGAN's discriminator. BatchNorm as PyTorch's defaults (momentum 0.1, eps 1e-5)."""
  features: int = 64
  input_size: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, input_size, input_size, C) -> (N, 1) float32 logits (no sigmoid)."""
    if self.input_size not in (128, 256):
      raise ValueError(f"VGGStyleDiscriminator input_size must be 128 or 256, got {self.input_size}")
    if x.shape[1:3] != (self.input_size, self.input_size):
      raise ValueError(f"VGGStyleDiscriminator expects {self.input_size}x{self.input_size} frames, "
                       f"got {x.shape[1]}x{x.shape[2]}")
    init = layers.torch_default_init()
    x = x.astype(self.dtype)
    x = layers.leaky_relu(nn.Conv(self.features, (3, 3), dtype=self.dtype, kernel_init=init,
                                  name="conv0_0")(x))
    widths = [1, 2, 4, 8, 8] + ([8] if self.input_size == 256 else [])
    for level, mult in enumerate(widths):
      specs = [(f"{level}_1", (4, 4), 2)] if level == 0 else [(f"{level}_0", (3, 3), 1),
                                                               (f"{level}_1", (4, 4), 2)]
      for name, kernel, stride in specs:
        x = nn.Conv(self.features * mult, kernel, strides=stride, padding=1, use_bias=False,
                    dtype=self.dtype, kernel_init=init, name=f"conv{name}")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                         name=f"bn{name}")(x)
        x = layers.leaky_relu(x)
    x = x.reshape(x.shape[0], -1)  # (N, 4*4*8*features), flattened (h, w, c)
    x = layers.leaky_relu(nn.Dense(100, dtype=self.dtype, kernel_init=init, name="linear1")(x))
    return nn.Dense(1, dtype=self.dtype, kernel_init=init, name="linear2")(x).astype(jnp.float32)
