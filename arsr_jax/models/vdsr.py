"""VDSR (Kim et al., CVPR 2016): a 20-layer 3x3 conv net predicting the residual
between the HR frame and its bicubic upsampling.

Input LR frames (N, h, w, 3) in [0, 1]; output (N, h*scale, w*scale, 3).
20 conv layers, 64 channels, ReLU after all but the last: 668,227 parameters
(the paper's ~0.67 M) at the default size. The 18 identical middle layers run as
one ``nn.scan`` (``layers.repeat``), their parameters stacked under ``body``
(18, ...); ``remat=True`` recomputes their activations in the backward pass. Older
checkpoints' per-block names (``conv1`` .. ``conv18``) are converted once by
``python -m arsr_jax.upgrade`` (models/legacy_layout.py).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.media import degrade
from arsr_jax.models import layers


class VDSR(nn.Module):
  scale: int = 4
  num_layers: int = 20
  features: int = 64
  dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32
  remat: bool = False  # recompute middle-layer activations in the backward pass (less memory)
  scan_unroll: int | None = None  # blocks per loop iteration; None: layers.repeat's default

  @nn.compact
  def __call__(self, lr: jax.Array, *, train: bool = False) -> jax.Array:
    base = degrade.bicubic_upsample(lr.astype(jnp.float32), self.scale)
    x = base.astype(self.dtype)
    he = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    conv = dict(features=self.features, kernel_size=(3, 3), dtype=self.dtype, kernel_init=he)
    if self.num_layers > 1:
      x = layers.ConvReLU(**conv, name="conv0")(x)
    middle = self.num_layers - 2
    if middle > 0:
      x = layers.repeat(layers.ConvReLU, conv, middle, x, name="body", remat=self.remat,
                        unroll=self.scan_unroll, train=train)
    # The residual head starts near zero so training begins at the bicubic baseline.
    residual = nn.Conv(lr.shape[-1], (3, 3), dtype=self.dtype, name=f"conv{self.num_layers - 1}",
                       kernel_init=nn.initializers.variance_scaling(1e-4, "fan_in", "normal"))(x)
    return base + residual.astype(jnp.float32)
