"""VSR-DUF (Jo et al., CVPR 2018): video SR with dynamic upsampling filters.

Follows the official TensorFlow code (yhjo09/VSR-DUF: nets.py, utils.py, test.py);
XPixelGroup/BasicSR: basicsr/archs/duf_arch.py is the same network in PyTorch.

Input: 7 LR frames (N, 7, h, w, 3) in [0, 1]. Output: the centre frame super-resolved,
(N, h*scale, w*scale, 3), not clipped:

  conv 1x3x3 (64)
  B dense blocks, each: BN, ReLU, conv 1x1x1 (F -> F), BN, ReLU, conv 3x3x3 (F -> G);
      the output is concatenated to the input (F += G)
  3 more dense blocks with the 3x3x3 conv *valid* in time; their input loses one
      frame at each end before the concatenation (7 -> 1 frames)
  BN, ReLU, conv 1x3x3 (F -> 256), ReLU
  residual head:  conv 1x1x1 256 -> 256, ReLU, 1x1x1 256 -> 3 R^2
  filter head:    conv 1x1x1 256 -> 512, ReLU, 1x1x1 512 -> 25 R^2, softmax over the 25 taps
  out = depth_to_space(dynamic_filter(centre LR frame)) + depth_to_space(residual)

(B, G) = (3, 32) for 16 layers, (9, 16) for 28 and (21, 16) for 52 (F ends at 256,
256 and 448). BatchNorm eps 1e-3 (official); ``bn_momentum`` defaults to 0.99
because the official 0.999 relies on TF's zero-debiased moving averages, which
Flax does not have. Kernels He-normal (truncated, as the official code), biases 0.

Dynamic filtering: for each LR pixel and each of the R^2 sub-pixel positions
(dy, dx), the HR pixel (y*R + dy, x*R + dx) of every colour channel is the 5x5
neighbourhood of the centre LR frame (zero padded) weighted by that pixel's
filter. Filters are laid out (N, h, w, 25, R^2) with tap index 5*i + j for offset
(i - 2, j - 2) and sub-pixel index dy*R + dx; residual channels are
(dy*R + dx)*3 + c. They are exposed with ``sow``:

  out, state = model.apply(variables, clip, mutable=["intermediates"])
  filters = state["intermediates"]["filters"][0]    # (N, h, w, 25, R*R), sums to 1 over taps

Parameters at x4: 16L 1,900,640; 28L 2,118,432; 52L 5,821,952 (BasicSR's DUF and the
official graph's trainable variables: conv kernels and biases, BN scales and offsets).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from arsr_jax.models import layers

DUF_CONFIGS = {16: (3, 32), 28: (9, 16), 52: (21, 16)}  # layers -> (dense blocks before reduction, growth)
NUM_FRAMES = 7
FILTER_SIZE = 5


def dynamic_filter(frame: jax.Array, filters: jax.Array) -> jax.Array:
  """Applies per-pixel 5x5 filters to every channel of ``frame``.

  frame (N, h, w, C), filters (N, h, w, 25, R^2) -> (N, h, w, R^2, C): output
  [n, y, x, s, c] = sum_k filters[n, y, x, k, s] * frame[n, y + i_k - 2, x + j_k - 2, c].
  """
  n, h, w, c = frame.shape
  # (N, h, w, C*25) with channel index c*25 + tap: one patch extraction, no loop over pixels.
  patches = jax.lax.conv_general_dilated_patches(
      frame, (FILTER_SIZE, FILTER_SIZE), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST)
  patches = patches.reshape(n, h, w, c, FILTER_SIZE * FILTER_SIZE)
  return jnp.einsum("nyxck,nyxks->nyxsc", patches, filters, precision=jax.lax.Precision.HIGHEST)


class DUF(nn.Module):
  INPUT_NDIM: ClassVar[int] = 5  # takes clips (N, T, h, w, C)

  scale: int = 4
  num_layers: int = 16
  bn_momentum: float = 0.99
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, clip: jax.Array, *, train: bool = False) -> jax.Array:
    """(N, 7, h, w, 3) -> (N, h*scale, w*scale, 3), float32."""
    if self.num_layers not in DUF_CONFIGS:
      raise ValueError(f"DUF num_layers must be one of {sorted(DUF_CONFIGS)}, got {self.num_layers}")
    if clip.ndim != 5 or clip.shape[1] != NUM_FRAMES:
      raise ValueError(f"DUF takes clips (N, {NUM_FRAMES}, h, w, C), got shape {clip.shape}")
    num_blocks, growth = DUF_CONFIGS[self.num_layers]
    r2 = self.scale * self.scale
    he = nn.initializers.he_normal()

    def conv(feat, kernel, name, padding="SAME"):
      return nn.Conv(feat, kernel, padding=padding, dtype=self.dtype, kernel_init=he, name=name)

    def bn_relu(y, name):
      return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-3,
                                  dtype=self.dtype, name=name)(y))

    x = conv(64, (1, 3, 3), "conv1")(clip.astype(self.dtype))  # (N, 7, h, w, 64)
    for i in range(num_blocks + 3):
      reduce = i >= num_blocks  # the last 3 blocks are valid in time: T -> T - 2
      t = conv(x.shape[-1], (1, 1, 1), f"block{i}_conv_a")(bn_relu(x, f"block{i}_bn_a"))
      padding = ((0, 0), (1, 1), (1, 1)) if reduce else "SAME"
      t = conv(growth, (3, 3, 3), f"block{i}_conv_b", padding)(bn_relu(t, f"block{i}_bn_b"))
      x = jnp.concatenate([x[:, 1:-1] if reduce else x, t], axis=-1)
    x = x[:, 0]  # (N, h, w, F): a single frame is left
    x = nn.relu(conv(256, (3, 3), "conv2")(bn_relu(x, "bn_final")))

    residual = conv(clip.shape[-1] * r2, (1, 1), "res_conv2")(nn.relu(conv(256, (1, 1), "res_conv1")(x)))
    logits = conv(FILTER_SIZE * FILTER_SIZE * r2, (1, 1), "filter_conv2")(
        nn.relu(conv(512, (1, 1), "filter_conv1")(x)))
    n, h, w, _ = logits.shape
    logits = logits.astype(jnp.float32).reshape(n, h, w, FILTER_SIZE * FILTER_SIZE, r2)
    filters = jax.nn.softmax(logits, axis=-2)
    if not self.is_initializing():  # keep init's variables free of an 'intermediates' collection
      self.sow("intermediates", "filters", filters)

    centre = clip[:, NUM_FRAMES // 2].astype(jnp.float32)
    filtered = dynamic_filter(centre, filters)  # (N, h, w, R^2, C)
    filtered = filtered.reshape(n, h, w, r2 * centre.shape[-1])  # channel (dy*R + dx)*C + c
    return layers.depth_to_space(filtered + residual.astype(jnp.float32), self.scale)
