"""Bicubic upsampling as a parameter-free "SR model" (the tables' baseline).

Input LR frames (N, h, w, C) in [0, 1]; output (N, h*scale, w*scale, C).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from arsr_jax.media import degrade


class Bicubic(nn.Module):
  scale: int = 4
  clip: bool = True

  @nn.compact
  def __call__(self, lr: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    sr = degrade.bicubic_upsample(lr, self.scale)
    return jax.numpy.clip(sr, 0.0, 1.0) if self.clip else sr
