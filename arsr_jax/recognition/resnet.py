"""ResNets (He et al. 2016) in torchvision's layout, the backbone of TSN and ST-ResNet.

``ResNet``: frames (N, H, W, C) -> logits (N, num_classes), float32. 7x7/2 conv, BatchNorm, ReLU,
3x3/2 max pool, four stages of ``BasicBlock`` (depths 18/34) or ``Bottleneck`` (50/101/152,
stride on the 3x3 conv: torchvision's "v1.5"), global average pool, dropout, dense. Convolutions
have no bias and PyTorch's padding (k // 2); BatchNorm uses momentum 0.9 and epsilon 1e-5
(PyTorch's 0.1 / 1e-5). With ``width=64`` and 3 input channels the parameter counts are
torchvision's: resnet18 11,689,512, resnet50 25,557,032 (1000 classes). Parameter names follow
torchvision's (``conv1``, ``bn1``, ``layer1_0/conv1``, ``layer2_0/downsample_conv``, ``fc``).

Inputs are normalised inside (``normalize_input``), so callers never do it:
  'imagenet': RGB in [0, 1], ImageNet mean/std;
  'flow':     stacked optical flow in pixels, clipped to +-20 and divided by 20 (TSN stores flow
              clipped to +-20), so [-1, 1];
  'kinetics': RGB in [0, 1], the Kinetics mean/std of Hara et al.'s 3D ResNets;
  None:       used as given.

The blocks are dimension-agnostic (3x3 kernels become 3x3x3 on (N, T, H, W, C) clips), so the 3D
ResNets of :mod:`arsr_jax.recognition.resnet3d` reuse them. ``ResNet.stem``, ``ResNet.stage`` and
``ResNet.head`` run the network piecewise; ``stage`` takes an ``inject`` tensor that is added to
the input of the first block's residual branch (ST-ResNet's motion-to-appearance connection).
``cross_modality_init`` turns RGB parameters into a flow network's (TSN's cross-modality
pre-training).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.models import layers
from arsr_jax.recognition import conv

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "STAGES", "conv_init", "cross_modality_init",
           "normalize"]

# depth -> (block kind, blocks per stage)
STAGES: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

_MEAN_STD = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "kinetics": ((0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737)),  # Hara et al. (2020 code)
}
FLOW_BOUND = 20.0  # pixels


def normalize(x: jax.Array, kind: str | None) -> jax.Array:
  """Network input from RGB in [0, 1] ('imagenet', 'kinetics') or flow in pixels ('flow')."""
  if kind is None:
    return x
  if kind == "flow":
    return jnp.clip(x, -FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND
  if kind not in _MEAN_STD:
    raise ValueError(f"normalize_input must be one of {sorted(_MEAN_STD) + ['flow']} or None, got {kind!r}")
  if x.shape[-1] != 3:
    raise ValueError(f"normalize_input={kind!r} expects RGB input (..., 3), got shape {x.shape}")
  mean, std = (jnp.asarray(v, x.dtype) for v in _MEAN_STD[kind])
  return (x - mean) / std


def conv_init() -> layers.Initializer:
  """torchvision's conv init: Kaiming-normal, fan_out, ReLU gain."""
  return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, kernel: int, strides: int, nd: int, dtype: Any, name: str) -> nn.Module:
  """Bias-free conv with a ``kernel``^nd window and PyTorch's padding (kernel // 2)."""
  return conv.conv(features, (kernel,) * nd, (strides,) * nd, [(kernel // 2,) * 2] * nd, dtype, conv_init(), name)


def _bn(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs; output ``planes`` channels. Frames or clips (kernels follow ``x.ndim``)."""
  planes: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False, inject: jax.Array | None = None) -> jax.Array:
    """x: (N, *spatial, C_in). ``inject`` (same shape as x) is added to the residual branch's input."""
    nd = x.ndim - 2
    y = x if inject is None else x + inject
    y = _conv(self.planes, 3, self.strides, nd, self.dtype, "conv1")(y)
    y = nn.relu(_bn(train, self.dtype, "bn1")(y))
    y = _bn(train, self.dtype, "bn2")(_conv(self.planes, 3, 1, nd, self.dtype, "conv2")(y))
    return nn.relu(y + _shortcut(self, x, self.planes, train))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride) -> 1x1 to 4 * ``planes``; the inner two are ``inner_width`` (default planes) wide."""
  planes: int
  strides: int = 1
  inner_width: int | None = None  # wide ResNets widen the inner convs only
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False, inject: jax.Array | None = None) -> jax.Array:
    nd = x.ndim - 2
    inner = self.inner_width or self.planes
    y = x if inject is None else x + inject
    y = nn.relu(_bn(train, self.dtype, "bn1")(_conv(inner, 1, 1, nd, self.dtype, "conv1")(y)))
    y = nn.relu(_bn(train, self.dtype, "bn2")(_conv(inner, 3, self.strides, nd, self.dtype, "conv2")(y)))
    y = _bn(train, self.dtype, "bn3")(_conv(self.planes * 4, 1, 1, nd, self.dtype, "conv3")(y))
    return nn.relu(y + _shortcut(self, x, self.planes * 4, train))


def _shortcut(block: nn.Module, x: jax.Array, out: int, train: bool) -> jax.Array:
  """Identity, or (shortcut type B) a strided 1x1 conv + BatchNorm when the shape changes."""
  if block.strides == 1 and x.shape[-1] == out:
    return x
  x = _conv(out, 1, block.strides, x.ndim - 2, block.dtype, "downsample_conv")(x)
  return _bn(train, block.dtype, "downsample_bn")(x)


BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
  """2D ResNet on frames (N, H, W, C); see the module docstring for inputs and names."""
  depth: int = 50
  num_classes: int = 1000
  width: int = 64  # base channels: stem ``width``, stages width * (1, 2, 4, 8) (x4 for bottlenecks)
  dropout_rate: float = 0.0  # before the classifier; needs a 'dropout' rng when training
  normalize_input: str | None = "imagenet"
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32
  # 'imagenet': 7x7/2 conv + 3x3/2 max pool (H/4); 'small': 3x3/1 conv + 2x2/2 max pool (H/2), for
  # small frames (e.g. the embedded 64x64 clips) whose detail the ImageNet stem would alias away.
  stem_type: str = "imagenet"

  def setup(self):
    if self.depth not in STAGES:
      raise ValueError(f"ResNet depth must be one of {sorted(STAGES)}, got {self.depth}")
    kind, counts = STAGES[self.depth]
    block = BLOCKS[kind]
    if self.stem_type not in ("imagenet", "small"):
      raise ValueError(f"ResNet stem_type must be 'imagenet' or 'small', got {self.stem_type!r}")
    k, s = (7, 2) if self.stem_type == "imagenet" else (3, 1)
    self.conv1 = nn.Conv(self.width, (k, k), strides=(s, s), padding=[(k // 2, k // 2)] * 2, use_bias=False,
                         dtype=self.dtype, kernel_init=conv_init())
    self.bn1 = nn.BatchNorm(momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    for i, n in enumerate(counts):
      planes = self.width * 2 ** i
      setattr(self, f"layer{i + 1}", [block(planes, 2 if i > 0 and j == 0 else 1, dtype=self.dtype)
                                      for j in range(n)])
    self.dropout = nn.Dropout(self.dropout_rate)
    self.fc = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=layers.torch_default_init())

  def stem(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, H, W, C) raw input -> (N, H/4, W/4, width) ('small': H/2): normalise, conv1, bn1, ReLU, max pool."""
    if x.ndim != 4:
      raise ValueError(f"ResNet expects frames (N, H, W, C), got shape {x.shape}")
    x = normalize(x.astype(jnp.float32), self.normalize_input).astype(self.dtype)
    x = nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
    if self.stem_type == "small":
      return nn.max_pool(x, (2, 2), strides=(2, 2))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])

  def stage(self, i: int, x: jax.Array, *, train: bool = False, inject: jax.Array | None = None) -> jax.Array:
    """Stage ``i`` (0..3, torchvision's layer{i+1}, Caffe's res{i+2}); ``inject`` goes into block a."""
    for j, block in enumerate(getattr(self, f"layer{i + 1}")):
      x = block(x, train=train, inject=inject if j == 0 else None)
    return x

  def head(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Features (N, h, w, C) -> logits (N, num_classes) float32: average pool, dropout, fc."""
    x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    x = self.dropout(x, deterministic=not train)
    return self.fc(x).astype(jnp.float32)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, H, W, C) -> (N, num_classes) float32 logits."""
    x = self.stem(x, train=train)
    for i in range(4):
      x = self.stage(i, x, train=train)
    return self.head(x, train=train)


def cross_modality_init(rgb_params: Mapping[str, Any], in_channels: int) -> dict:
  """TSN's cross-modality pre-training: the stem conv1 kernel of an RGB ResNet, averaged over its
  input channels and replicated to ``in_channels`` (e.g. 10 for 5 stacked flows).

  ``rgb_params`` is a ResNet's parameter tree, or any tree holding ResNets (a TSN's params, or
  ``{'params': ..., 'batch_stats': ...}``); every ResNet in it (a mapping with 'conv1' and 'fc') gets
  the new kernel (kh, kw, in_channels, C_out); everything else is returned unchanged.
  """
  found = []

  def walk(tree):
    if not isinstance(tree, Mapping):
      return tree
    out = {k: walk(v) for k, v in tree.items()}
    if "conv1" in out and "fc" in out and "kernel" in out["conv1"]:
      kernel = jnp.asarray(out["conv1"]["kernel"])
      mean = jnp.mean(kernel, axis=-2, keepdims=True)
      out["conv1"] = {**out["conv1"], "kernel": jnp.repeat(mean, in_channels, axis=-2)}
      found.append(kernel.shape)
    return out

  if in_channels < 1:
    raise ValueError(f"in_channels must be >= 1, got {in_channels}")
  result = walk(rgb_params)
  if not found:
    raise ValueError("cross_modality_init found no ResNet parameters (a mapping with 'conv1' and 'fc')")
  return result
