"""SPMC video SR (Tao et al., "Detail-revealing Deep Video Super-resolution", ICCV 2017).

Input: K LR frames (N, K, h, w, 3) in [0, 1], K odd (the released models use K = 3), in temporal
order. Output: the centre frame super-resolved, (N, h*scale, w*scale, 3), not clipped. Three parts
(paper Sec. 3, Fig. 2), run for every frame i of the window, in order:

  motion estimation (Sec. 3.1: VESPCN's coarse-to-fine network, Caballero et al. CVPR 2017, Sec. 3.2)
      F_i = ME(I_i, I_0): LR flow (N, h, w, 2) in LR pixels, (u, v) = (x, y), *from* frame i *to* the
      reference 0 ("we calculate Flow(i->0) and use forward warping to warp i-frame to 0-frame",
      the authors in jiangsutx/SPMC_VideoSR issue #14). Coarse: convs k5s2 24, k3 24, k5s2 24, k3 24,
      k3 32 (ReLU, tanh last), depth-to-space x4 -> 2 channels; fine: on [I_i, I_0, coarse flow,
      I_0 warped by it], convs k5s2 24, k3 24 x3, k3 8 (tanh last), depth-to-space x2; flow = coarse
      + fine. VESPCN's tanh outputs are normalized coordinates; here each is ``max_flow`` * tanh in
      LR pixels (``max_flow`` is ours: frame-size independent).
  SPMC layer (Sec. 3.2, eqs. 3-4; no parameters) ``splat``: every LR pixel p of I_i is sent to the
      HR position scale * (p + F_i(p)) and bilinearly splatted there,
      J_q = sum_p I_i(p) M(x_p^s - x_q) M(y_p^s - y_q), M(d) = max(0, 1 - |d|), without
      normalization (zero flow is zero-upsampling: LR (y, x) lands on HR (s*y, s*x)).
  detail fusion net (Sec. 3.3, Table 1): encoder conv k5 32, k3s2 64, k3 64, k3s2 128 (ReLU);
      ConvLSTM (128 channels, 3x3) at 1/4 of the HR size, its state carried across the K frames;
      decoder conv k3 128, deconv k4s2 64, + skip (encoder's 3rd layer), conv k3 64, deconv k4s2
      32, + skip (encoder's 1st layer), conv k3 32 (ReLU), conv k5 -> output channels; the output
      of step i is that + the bicubic-upsampled reference frame (I_0^(i) = Net_D + I_0^{L up}).
      The SR frame is the last step's (the released test script keeps output[:, -1]).

Layer sizes: Table 1 as transcribed by two independent re-implementations
(JesseYang/VideoSR cfgs/config_VideoSR.py, nameless-Chatoyant/SPMC_VideoSR-pytorch
cfgs/config_latest.py); skip positions as in LoSealL/VideoSuperResolution's Spmc.py. The ConvLSTM
kernel (3x3) and forget-gate bias (1.0, TensorFlow's BasicConvLSTMCell, which the released script
imports) are not in those tables. Not read from the paper either: weight initialization (Flax
defaults here). ``luma=True`` (default) works as the released code: the network sees and predicts
BT.601 Y only (its 1-channel graph), Cb/Cr of the output are the bicubic-upsampled reference's;
``luma=False`` runs the same network on all C channels. LR frames are edge-padded at the bottom
and right to a multiple of 4 (as the released test script) and the output cropped back.

No parameter count is published (paper or released code: the released graph .pb is not in the
repository); at any scale, luma, ``features=32``: 1,722,161, which is Table 1 counted layer by layer
(tests/test_spmc.py).

With ``train=True`` the network returns {'sr': the SR frame, 'sr_steps': (N, K, H, W, C) every
step's output, 'lr_flow': (N, K, h, w, 2) the flows F_i} for the paper's losses
(losses.py 'spmc'); otherwise just the SR frame.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax.flow.warp import warp
from arsr_jax.media import degrade
from arsr_jax.models import layers

# BT.601 RGB [0, 1] -> YCbCr [0, 1] (16-235 / 16-240 levels), the released code's rgb2ycbcr.
_YCBCR = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0
_RGB = np.linalg.inv(_YCBCR)


def rgb_to_ycbcr(x: jax.Array) -> jax.Array:
  """(..., 3) RGB in [0, 1] -> (..., 3) YCbCr in [0, 1] (BT.601, studio range)."""
  return jnp.einsum("...c,dc->...d", x, jnp.asarray(_YCBCR, x.dtype)) + jnp.asarray(_YCBCR_OFFSET, x.dtype)


def ycbcr_to_rgb(x: jax.Array) -> jax.Array:
  """Inverse of ``rgb_to_ycbcr``."""
  return jnp.einsum("...c,dc->...d", x - jnp.asarray(_YCBCR_OFFSET, x.dtype), jnp.asarray(_RGB, x.dtype))


def splat(image: jax.Array, flow: jax.Array, scale: int) -> jax.Array:
  """The SPMC layer: forward-warps LR ``image`` to the HR grid with bilinear splatting.

  image (N, h, w, C), flow (N, h, w, 2) in LR pixels -> (N, h*scale, w*scale, C): LR pixel (y, x)
  lands at HR (scale*(y + v), scale*(x + u)) and adds its value, weighted bilinearly, to the 4 HR
  pixels around it (eq. 4; weights are not normalized). Contributions that fall outside the HR
  frame are dropped. A scatter-add, differentiable w.r.t. both ``image`` and ``flow``.
  """
  n, h, w, c = image.shape
  hh, ww = h * scale, w * scale
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  x = scale * (xs + flow[..., 0].astype(jnp.float32))  # (N, h, w) HR positions
  y = scale * (ys + flow[..., 1].astype(jnp.float32))
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = x - x0, y - y0  # d weight / d flow flows through these (floor has no gradient)
  image = image.astype(jnp.float32)
  values, indices = [], []
  for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
    yi, xi = y0 + dy, x0 + dx
    inside = (yi >= 0) & (yi <= hh - 1) & (xi >= 0) & (xi <= ww - 1)
    idx = jnp.clip(yi, 0, hh - 1).astype(jnp.int32) * ww + jnp.clip(xi, 0, ww - 1).astype(jnp.int32)
    values.append(image * jnp.where(inside, weight, 0.0)[..., None])
    indices.append(idx)
  values = jnp.concatenate(values, axis=1).reshape(n, -1, c)  # (N, 4*h*w, C)
  indices = jnp.concatenate(indices, axis=1).reshape(n, -1)
  out = jax.vmap(lambda i, v: jnp.zeros((hh * ww, c), jnp.float32).at[i].add(v))(indices, values)
  return out.reshape(n, hh, ww, c)


class MotionEstimation(nn.Module):
  """VESPCN's coarse-to-fine flow: (frame (N, h, w, C), ref (N, h, w, C)) -> (N, h, w, 2) flow from
  frame to ref in LR pixels (h, w divisible by 4)."""
  max_flow: float = 8.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frame: jax.Array, ref: jax.Array) -> jax.Array:
    def stack(x, specs, block, name):
      for j, (k, s, f) in enumerate(specs):
        x = nn.Conv(f, (k, k), (s, s), padding="SAME", dtype=self.dtype, name=f"{name}{j}")(x)
        x = nn.relu(x) if j < len(specs) - 1 else jnp.tanh(x.astype(jnp.float32))
      return self.max_flow * layers.depth_to_space(x, block)

    coarse = stack(jnp.concatenate([frame, ref], -1).astype(self.dtype),
                   ((5, 2, 24), (3, 1, 24), (5, 2, 24), (3, 1, 24), (3, 1, 32)), 4, "coarse")
    aligned = warp(ref.astype(jnp.float32), coarse)  # ref sampled at p + coarse(p): frame i's estimate
    fine = stack(jnp.concatenate([frame.astype(jnp.float32), ref.astype(jnp.float32), coarse, aligned],
                                 -1).astype(self.dtype),
                 ((5, 2, 24), (3, 1, 24), (3, 1, 24), (3, 1, 24), (3, 1, 8)), 2, "fine")
    return coarse + fine


class ConvLSTMCell(nn.Module):
  """(x (N, h, w, F), (h, c) state (N, h, w, F) each) -> (output, new state); gates i, f, o, g
  from one 3x3 conv of [x, h]; forget bias 1."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, state):
    hid, cell = state
    gates = nn.Conv(4 * self.features, (3, 3), padding="SAME", dtype=self.dtype, name="gates")(
        jnp.concatenate([x, hid.astype(x.dtype)], -1)).astype(jnp.float32)
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    cell = nn.sigmoid(f + 1.0) * cell + nn.sigmoid(i) * jnp.tanh(g)
    hid = nn.sigmoid(o) * jnp.tanh(cell)
    return hid, (hid, cell)


class DetailFusion(nn.Module):
  """One time step: (sparse HR frame (N, H, W, C), ConvLSTM state) -> (residual (N, H, W, out), state);
  H, W divisible by 4."""
  features: int = 32
  out_channels: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, state):
    f = self.features

    def conv(y, feat, k, s, name):
      return nn.relu(nn.Conv(feat, (k, k), (s, s), padding="SAME", dtype=self.dtype, name=name)(y))

    def deconv(y, feat, name):
      return nn.relu(nn.ConvTranspose(feat, (4, 4), (2, 2), padding="SAME", dtype=self.dtype, name=name)(y))

    e1 = conv(x.astype(self.dtype), f, 5, 1, "enc1")
    e3 = conv(conv(e1, 2 * f, 3, 2, "enc2"), 2 * f, 3, 1, "enc3")
    e4 = conv(e3, 4 * f, 3, 2, "enc4")
    y, state = ConvLSTMCell(4 * f, dtype=self.dtype, name="lstm")(e4, state)
    y = deconv(conv(y.astype(self.dtype), 4 * f, 3, 1, "dec1"), 2 * f, "dec2")
    y = deconv(conv(y + e3, 2 * f, 3, 1, "dec3"), f, "dec4")
    y = conv(y + e1, f, 3, 1, "dec5")
    y = nn.Conv(self.out_channels, (5, 5), padding="SAME", dtype=self.dtype, name="dec6")(y)
    return y.astype(jnp.float32), state


class SPMC(nn.Module):
  INPUT_NDIM: ClassVar[int] = 5  # takes K-frame windows (N, K, h, w, C)

  scale: int = 4
  features: int = 32  # encoder widths f, 2f, 2f, 4f (Table 1: 32)
  luma: bool = True  # network on BT.601 Y, chroma bicubic (the released code); False: all channels
  max_flow: float = 8.0  # bound of the coarse and of the fine flow, LR pixels
  freeze_motion: bool = False  # no gradient from the SR loss into the flow (the paper's phase 2)
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, clip: jax.Array, *, train: bool = False):
    """(N, K, h, w, C) -> (N, h*scale, w*scale, C) float32; with ``train`` a dict (module docstring)."""
    if clip.ndim != 5 or clip.shape[1] < 3 or clip.shape[1] % 2 == 0:
      raise ValueError(f"SPMC takes K-frame windows (N, K, h, w, C) with K odd >= 3 (data.input_frames), "
                       f"got shape {clip.shape}")
    if self.luma and clip.shape[-1] != 3:
      raise ValueError(f"SPMC with luma=True takes RGB frames, got {clip.shape[-1]} channels")
    n, k, h, w, c = clip.shape
    s = self.scale
    clip = clip.astype(jnp.float32)
    ph, pw = -h % 4, -w % 4  # the released script pads LR to a multiple of 4 (edge)
    padded = jnp.pad(clip, ((0, 0), (0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    frames = rgb_to_ycbcr(padded)[..., :1] if self.luma else padded
    ref = frames[:, k // 2]
    up_ref = degrade.bicubic_upsample(ref, s)

    motion = MotionEstimation(self.max_flow, dtype=self.dtype, name="motion")
    fusion = DetailFusion(self.features, frames.shape[-1], dtype=self.dtype, name="fusion")
    hh, ww = (h + ph) * s // 4, (w + pw) * s // 4
    state = (jnp.zeros((n, hh, ww, 4 * self.features), jnp.float32),) * 2
    outputs, flows = [], []
    for i in range(k):  # -T .. T in temporal order; modules are shared across steps
      flow = motion(frames[:, i], ref)
      flows.append(flow)
      sparse = splat(frames[:, i], jax.lax.stop_gradient(flow) if self.freeze_motion else flow, s)
      residual, state = fusion(sparse, state)
      outputs.append(residual + up_ref)
    steps = jnp.stack(outputs, axis=1)[:, :, :h * s, :w * s]  # (N, K, H, W, C')
    if self.luma:
      chroma = degrade.bicubic_upsample(rgb_to_ycbcr(clip[:, k // 2])[..., 1:], s)
      steps = ycbcr_to_rgb(jnp.concatenate([steps, jnp.broadcast_to(chroma[:, None], steps.shape[:-1] + (2,))],
                                           axis=-1))
    if not train:
      return steps[:, -1]
    return {"sr": steps[:, -1], "sr_steps": steps, "lr_flow": jnp.stack(flows, axis=1)[:, :, :h, :w]}
