"""Spatiotemporal Residual Networks (Feichtenhofer, Pinz & Wildes, NIPS 2016), 2D form.

Two ResNet streams (:class:`arsr_jax.recognition.resnet.ResNet`): ``appearance`` on RGB frames
(N, H, W, 3) in [0, 1] and ``motion`` on stacked optical flow (N, H, W, 2L) in pixels (channels
[u_1, v_1, ..., u_L, v_L], see :func:`arsr_jax.recognition.tsn.stack_flow`; L = 10 by default, as
feichtenhofer/st-resnet's 224x224x20 flow input). Each stream normalises its own input.

Motion-to-appearance residual connections sit at the first block of every stage (res2a ... res5a):
the motion stream's input to that block is added to the input of the appearance block's residual
branch, while the appearance shortcut and the whole motion stream are unchanged (the paper's
x^a_{l+1} = x^a_l + F(x^a_l + x^m_l)). Gradients flow through the connections into the motion
stream, as the released code (``backpropFuseFrom = 1``). Not reproduced: the released MatConvNet
code adds the motion block's output after the appearance block's sum, and turns 1x1 convs into
temporal (ConvTime) filters over 5 frames.

Like TSN, ``__call__`` also takes snippets (N, S, H, W, C) and averages per-segment logits. It
returns ``{'spatial': (N, C), 'temporal': (N, C)}`` float32 logits; fuse them with
:func:`arsr_jax.recognition.tsn.fuse`. Dropout defaults to 0 (st-resnet's ``dropOutRatio = 0``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.recognition.resnet import ResNet
from arsr_jax.recognition.tsn import consensus

__all__ = ["STResNet"]


class STResNet(nn.Module):
  """Two-stream ResNet with motion -> appearance connections; see the module docstring."""
  num_classes: int = 101
  depth: int = 50
  width: int = 64
  flow_stack: int = 10  # flow fields per motion snippet (2 * flow_stack channels)
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  stem_type: str = "imagenet"  # ResNet stem; 'small' for small frames (see resnet.ResNet)

  def setup(self):
    args = (self.depth, self.num_classes, self.width, self.dropout_rate)
    self.appearance = ResNet(*args, normalize_input="imagenet", dtype=self.dtype, stem_type=self.stem_type)
    self.motion = ResNet(*args, normalize_input="flow", dtype=self.dtype, stem_type=self.stem_type)

  def __call__(self, rgb: jax.Array, flow: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
    """rgb (N, [S,] H, W, 3), flow (N, [S,] H, W, 2 * flow_stack) -> {'spatial', 'temporal'} logits."""
    c = 2 * self.flow_stack
    if (rgb.ndim not in (4, 5) or rgb.shape[-1] != 3 or flow.shape[-1] != c
        or rgb.shape[:-1] != flow.shape[:-1]):
      raise ValueError(f"STResNet expects rgb (N, [S,] H, W, 3) and flow (N, [S,] H, W, {c}) of the same "
                       f"size, got {rgb.shape} and {flow.shape}")
    if rgb.ndim == 4:
      return self._streams(rgb, flow, train)
    n, s = rgb.shape[:2]
    out = self._streams(rgb.reshape(n * s, *rgb.shape[2:]), flow.reshape(n * s, *flow.shape[2:]), train)
    return {k: consensus(v.reshape(n, s, -1)) for k, v in out.items()}

  def _streams(self, rgb: jax.Array, flow: jax.Array, train: bool) -> dict[str, jax.Array]:
    a = self.appearance.stem(rgb, train=train)
    m = self.motion.stem(flow, train=train)
    for i in range(4):
      a, m = self.appearance.stage(i, a, train=train, inject=m), self.motion.stage(i, m, train=train)
    return {"spatial": self.appearance.head(a, train=train), "temporal": self.motion.head(m, train=train)}
