"""3D ResNets of Hara et al. (CVPR 2018; kenshohara/3D-ResNets-PyTorch, ``models/resnet.py``).

``ResNet3D``: RGB clips (N, T, H, W, 3) in [0, 1] -> logits (N, num_classes), float32.
conv1 (conv1_t_size, 7, 7) with stride (conv1_t_stride, 2, 2) and padding (t // 2, 3, 3), BatchNorm,
ReLU, 3x3x3 max pool with stride 2 in time and space (skipped with ``no_max_pool``), four stages of
3D ``BasicBlock`` (depths 10/18/34) or ``Bottleneck`` (50/101/152/200; stride 2 in time and space
on the 3x3x3 conv of each stage's first block from stage 2 on), shortcut type 'B' (1x1x1 conv +
BatchNorm when the shape changes), global average pool, dense. The blocks are those of
:mod:`arsr_jax.recognition.resnet`, so parameter names follow Hara's (``layer1_0/conv1`` ...).
Parameter counts equal Hara's PyTorch models (checked in ``tests/test_recognizers.py``); 3D
ResNet-50 with 400 classes has 47,018,576 parameters, WideResNet-50 (k=2) 158,248,272.

``widen_factor`` k multiplies the width of the 3x3x3 convs, as Hara's 2017 ``WideResNet`` (whose
``WideBottleneck`` has expansion 2 on ``planes * k``): Bottleneck blocks get inner width
``planes * k`` and keep 4 * planes outputs, so k = 2 at depth 50 is Hara's WideResNet-50 (k=2)
exactly, with a 64-channel stem. BasicBlock depths widen whole stages (the stem stays ``width``).
Hara's 2020 ``resnet.py`` ``widen_factor`` instead scales every width including the stem; that
variant is not built here.

Input: RGB in [0, 1], normalised inside with ``normalize_input`` (default 'kinetics': Hara's
2020 default ``--mean_dataset kinetics``, mean (0.4345, 0.4051, 0.3775), std (0.2768, 0.2713,
0.2737); 'imagenet' is also accepted; None leaves the input alone). Hara trains on 16-frame
112x112 clips.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.models import layers
from arsr_jax.recognition import conv, resnet

__all__ = ["ResNet3D", "WideResNet3D", "STAGES_3D"]

STAGES_3D: dict[int, tuple[str, tuple[int, ...]]] = {
    10: ("basic", (1, 1, 1, 1)),
    **resnet.STAGES,
    200: ("bottleneck", (3, 24, 36, 3)),
}


class ResNet3D(nn.Module):
  """Hara et al.'s 3D ResNet; see the module docstring."""
  depth: int = 50
  num_classes: int = 400
  width: int = 64  # stem channels; stage ``planes`` = width * (1, 2, 4, 8)
  widen_factor: float = 1.0
  conv1_t_size: int = 7
  conv1_t_stride: int = 1
  no_max_pool: bool = False
  normalize_input: str | None = "kinetics"
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, T, H, W, C) -> (N, num_classes) float32 logits."""
    if x.ndim != 5:
      raise ValueError(f"ResNet3D expects clips (N, T, H, W, C), got shape {x.shape}")
    if self.depth not in STAGES_3D:
      raise ValueError(f"ResNet3D depth must be one of {sorted(STAGES_3D)}, got {self.depth}")
    kind, counts = STAGES_3D[self.depth]
    x = resnet.normalize(x.astype(jnp.float32), self.normalize_input).astype(self.dtype)
    t = self.conv1_t_size
    x = conv.conv(self.width, (t, 7, 7), (self.conv1_t_stride, 2, 2), [(t // 2, t // 2), (3, 3), (3, 3)],
                  self.dtype, resnet.conv_init(), name="conv1")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                     name="bn1")(x)
    x = nn.relu(x)
    if not self.no_max_pool:
      x = nn.max_pool(x, (3, 3, 3), strides=(2, 2, 2), padding=[(1, 1)] * 3)
    for i, n in enumerate(counts):
      planes = self.width * 2 ** i
      for j in range(n):
        strides = 2 if i > 0 and j == 0 else 1
        name = f"layer{i + 1}_{j}"
        if kind == "basic":
          block = resnet.BasicBlock(int(planes * self.widen_factor), strides, dtype=self.dtype, name=name)
        else:
          block = resnet.Bottleneck(planes, strides, inner_width=int(planes * self.widen_factor),
                                    dtype=self.dtype, name=name)
        x = block(x, train=train)
    x = jnp.mean(x, axis=(1, 2, 3))
    x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=layers.torch_default_init(), name="fc")(x)
    return x.astype(jnp.float32)


class WideResNet3D(ResNet3D):
  """Hara et al.'s WideResNet-50 (k = 2): ``ResNet3D`` with ``widen_factor=2.0``."""
  widen_factor: float = 2.0
