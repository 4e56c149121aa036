"""SRResNet / SRGAN generator and the SRGAN discriminator (Ledig et al., CVPR 2017).

This is the paper's original design *with* BatchNorm (Fig. 4 of the paper), not
BasicSR's ``MSRResNet`` (no BN, ReLU, bilinear global residual): the tables of
the action-recognition papers cite SRGAN itself.

``SRResNet``: LR frames (N, h, w, 3) in [0, 1] -> SR frames (N, h*scale, w*scale, 3),
not clipped.
  conv 9x9 (64) + PReLU
  16 x [conv 3x3, BN, PReLU, conv 3x3, BN, + skip]
  conv 3x3, BN, + the first conv's features (long skip)
  log2(scale) x [conv 3x3 (256), pixel shuffle x2, PReLU]   (x3: one x3 step)
  conv 9x9 (3)
Convs followed by BN have no bias (BN's offset makes it redundant); each PReLU
has one slope (PyTorch's ``nn.PReLU()``, init 0.25). 1,547,350 parameters at x4.
Kernels He-normal. BatchNorm momentum 0.1 / eps 1e-5 in PyTorch terms.

``SRGANDiscriminator``: HR frames (N, H, W, 3), H and W multiples of 16 (96 in the
paper) -> logits (N, 1) (the paper's sigmoid is left to the loss). conv 3x3 (64),
LeakyReLU 0.2; 7 x [conv 3x3, BN, LeakyReLU] with widths 64, 128, 128, 256, 256,
512, 512 and strides alternating 2, 1 (starting with 2); dense 1024, LeakyReLU, dense 1.
23,563,649 parameters at 96 px (the dense layer's input is 6x6x512 there).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.models import layers


def _batch_norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


class SRResNet(nn.Module):
  scale: int = 4
  num_blocks: int = 16
  features: int = 64
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, lr: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, h, w, C) -> (N, h*scale, w*scale, C), float32."""
    he = nn.initializers.he_normal()
    c = self.features
    conv = lambda feat, k, name: nn.Conv(feat, (k, k), dtype=self.dtype, kernel_init=he, name=name)  # noqa: E731
    prelu = lambda name: nn.PReLU(negative_slope_init=0.25, name=name)  # noqa: E731

    def conv_bn(y, name):  # conv 3x3 without bias, then BatchNorm
      y = nn.Conv(c, (3, 3), use_bias=False, dtype=self.dtype, kernel_init=he, name=f"{name}_conv")(y)
      return _batch_norm(train, self.dtype, f"{name}_bn")(y)

    head = prelu("prelu_first")(conv(c, 9, "conv_first")(lr.astype(self.dtype)))
    feat = head
    for i in range(self.num_blocks):
      feat = feat + conv_bn(prelu(f"block{i}_prelu")(conv_bn(feat, f"block{i}_1")), f"block{i}_2")
    feat = head + conv_bn(feat, "body")
    feat = layers.PixelShuffleUpsampler(self.scale, activation="prelu", kernel_init=he, dtype=self.dtype,
                                        name="upsample")(feat)
    return conv(lr.shape[-1], 9, "conv_last")(feat).astype(jnp.float32)


class SRGANDiscriminator(nn.Module):
  features: int = 64
  dense_features: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, H, W, C) -> (N, 1) float32 logits."""
    he = nn.initializers.he_normal()
    x = x.astype(self.dtype)
    x = layers.leaky_relu(nn.Conv(self.features, (3, 3), dtype=self.dtype, kernel_init=he, name="conv0")(x))
    specs = [(1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2)]  # (width multiple, stride)
    for i, (mult, stride) in enumerate(specs, start=1):
      x = nn.Conv(self.features * mult, (3, 3), strides=stride, padding=1, use_bias=False, dtype=self.dtype,
                  kernel_init=he, name=f"conv{i}")(x)
      x = layers.leaky_relu(_batch_norm(train, self.dtype, f"bn{i}")(x))
    x = x.reshape(x.shape[0], -1)
    x = layers.leaky_relu(nn.Dense(self.dense_features, dtype=self.dtype, kernel_init=he, name="dense1")(x))
    return nn.Dense(1, dtype=self.dtype, name="dense2")(x).astype(jnp.float32)
