"""DVSR and progressive DVSR (Demir et al., TinyVIRAT, ICPR 2020).

Both follow the released code (UgurDemir/Tiny-VIRAT: deepnn/nets/models/g6.py for
the end-to-end DVSR, pg2.py in its '3D' mode for the progressive one): 3D convs
(3x3x3, stride 1, zero padding 1) on clips, LeakyReLU 0.2, no normalisation,
PyTorch's default initialisation (biases start at zero here).

``DVSR``: LR clips (N, T, h, w, 3) in [0, 1] -> SR clips (N, T, h*s, w*s, 3), not clipped.
  conv_in (F) -> num_blocks x 3D-RRDB (growth G) -> conv_body, + conv_in's features
  log2(s) x [trilinear x2 in space, conv, LReLU]
  projection: conv, LReLU, conv -> 3, tanh
  + the input upsampled trilinearly (global residual)
Defaults are the released configs' g6 settings (F=32, G=16, 4 blocks).

``ProgressiveDVSR``: grows one x2 stage at a time; ``stage`` of log2(scale) stages
are built. The encoder is conv_in and one 3D-RRDB (F=G=32) per stage, plus the
conv_in skip. Decoder stage i (``up_i``) is ``d_i`` temporal stride-2 convs, then an
UpBlock (conv, trilinear x2 in space + conv, conv); before stage i > 0 its input is
resized to (T, its h, its w) and the encoder output, resized to the same size, is
added. Each stage has its own RGB head (conv, LReLU, conv 1x1x1 -> 3, tanh) and the
trilinearly resized input is added to it.

Temporal growth (``temporal_growth=True``, pg2's behaviour and the paper's): stage i
has d_i = S - 1 - i stride-2 convs (S = log2(scale)), so a model at stage k turns
(N, T, h, w, 3) into (N, T / 2^(S-k), h*2^k, w*2^k, 3): at 4x and T=16, 8 frames at
2x, then 16 at 4x; at 8x 4, 8, 16. T must be divisible by 2^(S-1). With
``temporal_growth=False`` there are no stride-2 convs and every stage keeps T frames.
Either way the full model (stage S) maps T frames to T frames.

Fade-in (call argument ``alpha``, a scalar in [0, 1], traceable; None = 1, no fade):
  encoder:  feat = (1 - alpha) * feat_after_k-1_RRDBs + alpha * feat_after_k_RRDBs
  output:   out  = (1 - alpha) * up2(prev) + alpha * current
where ``prev`` is the stage-(k-1) output (its RGB head plus its own global residual,
computed from the decoder's stage k-1 features) and ``up2`` trilinear x2 (in time
too under temporal growth). So alpha = 0 reproduces exactly the stage-(k-1) model's
output, upsampled, and alpha = 1 is the stage-k model; alpha grows 0 -> 1 during the
transition (the paper's alpha; pg2.py's ``fadein`` is 1 - alpha). alpha is ignored at
stage 1.

Parameter names are ``conv_in``, ``rrdb_i``, ``up_i``, ``rgb_i`` (i < stage), and init
creates every stage's RGB head, so a stage-k model's parameters are a subset of the
stage-(k+1) model's: ``grow_params(small, big)`` copies a trained smaller model into
a freshly initialised bigger one.

Foreground attention (``attention=True``, both models; locpg2.py's saliency branch):
an ``AttentionDecoder`` named ``attention`` reads the encoder features (progressive:
the faded RRDB output before the conv_in skip, as locpg2; DVSR: conv_body's output
before the skip) and predicts a map (N, T', H', W', 1) in [0, 1] of the SR output's
size, at every stage and alpha. ``__call__`` then returns ``{'sr': clip, 'attention':
map}``. Its BatchNorms add a ``batch_stats`` collection (batch statistics when
``train``, running averages otherwise). The decoder's parameters do not depend on
the stage, so parameters still nest across stages and ``grow_params`` works. The
losses are the trainer's business; the paper's (conf/228l.py): action CE on
``stop_gradient(sr) * attention`` x1, L1 mean(attention) x5e-4, and the SR L1
weighted by ``stop_gradient(attention)`` x1 (joint SR + action training: L1 x100,
action CE x0.5). With ``attention=False`` (default) outputs and parameters are
those of the plain models.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from arsr_jax.models import layers


def _conv3d(features: int, name: str, dtype: Any, strides=1, kernel=(3, 3, 3)) -> nn.Conv:
  pad = [(k // 2, k // 2) for k in kernel]
  return nn.Conv(features, kernel, strides=strides, padding=pad, dtype=dtype,
                 kernel_init=layers.torch_default_init(), name=name)


def _num_stages(scale: int) -> int:
  if scale < 2 or scale & (scale - 1):
    raise ValueError(f"DVSR scales must be powers of two, got {scale}")
  return int(math.log2(scale))


def _add_input(residual: jax.Array, clip: jax.Array) -> jax.Array:
  """Global residual: residual (N, T', H, W, 3) + the clip resized trilinearly to (T', H, W)."""
  return residual.astype(jnp.float32) + layers.resize_linear(clip.astype(jnp.float32), residual.shape[1:4])


def _rrdb3d(growth: int, dtype: Any, name: str) -> layers.RRDB:
  return layers.RRDB(growth, (3, 3, 3), kernel_init=layers.torch_default_init(), dtype=dtype, name=name)


class AttentionDecoder(nn.Module):
  """locpg2 saliency decoder: (N, T, h, w, F) encoder features -> (N, T', H', W', 1) in [0, 1].

  ``num_layers`` x [trilinear resize, conv 3x3x3, BatchNorm, LReLU], the last one
  conv -> 1 channel and sigmoid instead (no BatchNorm). Layer i resizes to
  (T', min(2^(i+1) h, H'), min(2^(i+1) w, W')) and the last to (T', H', W') exactly,
  so with num_layers = log2(H'/h) each layer upsamples x2 in space (locpg2's
  trilinear (1, 2, 2)); time is resized to T' at the first layer. Hidden widths
  halve down to F/4 at the last hidden layer (locpg2: F/4 at 4x; F/2, F/4 at 8x).
  """
  features: int = 32
  num_layers: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, size: tuple[int, int, int], *, train: bool = False) -> jax.Array:
    if self.num_layers < 1:
      raise ValueError(f"AttentionDecoder needs num_layers >= 1, got {self.num_layers}")
    t_out, h_out, w_out = size
    h, w = x.shape[2:4]
    for i in range(self.num_layers - 1):
      x = layers.resize_linear(x, (t_out, min(h << (i + 1), h_out), min(w << (i + 1), w_out)))
      width = max(1, self.features >> max(1, i + 4 - self.num_layers))
      x = _conv3d(width, f"conv{i}", self.dtype)(x)
      # PyTorch BatchNorm3d's defaults (its momentum 0.1 is 0.9 here, eps 1e-5).
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                       name=f"bn{i}")(x)
      x = layers.leaky_relu(x)
    x = layers.resize_linear(x, (t_out, h_out, w_out))
    x = _conv3d(1, f"conv{self.num_layers - 1}", self.dtype)(x)
    return jax.nn.sigmoid(x.astype(jnp.float32))


class DVSR(nn.Module):
  INPUT_NDIM: ClassVar[int] = 5  # takes clips (N, T, h, w, C)

  scale: int = 4
  num_blocks: int = 4
  features: int = 32
  growth: int = 16
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32
  attention: bool = False  # also predict a foreground attention map (returns a dict)

  @nn.compact
  def __call__(self, clip: jax.Array, *, train: bool = False) -> jax.Array | dict[str, jax.Array]:
    """(N, T, h, w, 3) -> (N, T, h*scale, w*scale, 3), float32.

    With ``attention``: {'sr': that clip, 'attention': (N, T, h*scale, w*scale, 1) in [0, 1]}.
    """
    num_up = _num_stages(self.scale)
    c1 = _conv3d(self.features, "conv_in", self.dtype)(clip.astype(self.dtype))
    y = c1
    for i in range(self.num_blocks):
      y = _rrdb3d(self.growth, self.dtype, f"rrdb_{i}")(y)
    trunk = _conv3d(self.features, "conv_body", self.dtype)(y)
    y = c1 + trunk
    for i in range(num_up):
      _, t, h, w, _ = y.shape
      y = layers.resize_linear(y, (t, 2 * h, 2 * w))
      y = layers.leaky_relu(_conv3d(self.features, f"up_{i}", self.dtype)(y))
    y = layers.leaky_relu(_conv3d(self.features, "conv_hr", self.dtype)(y))
    y = jnp.tanh(_conv3d(clip.shape[-1], "conv_out", self.dtype)(y))
    out = _add_input(y, clip)
    if not self.attention:
      return out
    attn = AttentionDecoder(self.features, num_up, dtype=self.dtype, name="attention")(
        trunk, out.shape[1:4], train=train)
    return {"sr": out, "attention": attn}


class UpStage(nn.Module):
  """pg2 decoder stage: (N, T, h, w, F) -> (N, T / 2^temporal_down, 2h, 2w, F)."""
  features: int = 32
  temporal_down: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.temporal_down):
      x = layers.leaky_relu(_conv3d(self.features, f"down{i}", self.dtype, strides=(2, 1, 1))(x))
    x = layers.leaky_relu(_conv3d(self.features, "conv1", self.dtype)(x))
    _, t, h, w, _ = x.shape
    x = layers.resize_linear(x, (t, 2 * h, 2 * w))
    x = layers.leaky_relu(_conv3d(self.features, "conv2", self.dtype)(x))
    return layers.leaky_relu(_conv3d(self.features, "conv3", self.dtype)(x))


class RGBHead(nn.Module):
  """pg2 projection: conv 3x3x3, LReLU, conv 1x1x1 -> channels, tanh. (N, T, H, W, F) -> (N, T, H, W, 3)."""
  features: int = 32
  channels: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = layers.leaky_relu(_conv3d(self.features, "conv", self.dtype)(x))
    return jnp.tanh(_conv3d(self.channels, "proj", self.dtype, kernel=(1, 1, 1))(x))


class ProgressiveDVSR(nn.Module):
  INPUT_NDIM: ClassVar[int] = 5  # takes clips (N, T, h, w, C)

  scale: int = 4
  stage: int | None = None  # active x2 stages, 1..log2(scale); None = all
  features: int = 32
  growth: int = 32
  temporal_growth: bool = True
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32
  attention: bool = False  # also predict a foreground attention map (returns a dict)

  @property
  def num_stages(self) -> int:
    return _num_stages(self.scale)

  @property
  def active_stages(self) -> int:
    k = self.num_stages if self.stage is None else self.stage
    if not 1 <= k <= self.num_stages:
      raise ValueError(f"ProgressiveDVSR stage must be in 1..{self.num_stages} at scale {self.scale}, got {k}")
    return k

  @nn.compact
  def __call__(self, clip: jax.Array, *, alpha: float | jax.Array | None = None,
               train: bool = False) -> jax.Array | dict[str, jax.Array]:
    """(N, T, h, w, 3) -> (N, T', h*2^stage, w*2^stage, 3), float32; T' = T unless temporal growth.

    With ``attention``: {'sr': that clip, 'attention': (N, T', h*2^stage, w*2^stage, 1) in [0, 1]}.
    """
    s, k = self.num_stages, self.active_stages
    t_in = clip.shape[1]
    if self.temporal_growth and t_in % 2 ** (s - 1):
      raise ValueError(f"ProgressiveDVSR with temporal growth at scale {self.scale} needs T divisible "
                       f"by {2 ** (s - 1)}, got T={t_in}")
    fading = alpha is not None and k > 1
    a = jnp.asarray(alpha if fading else 1.0, jnp.float32)

    # Encoder: conv_in, one RRDB per stage (the newest faded in), conv_in skip.
    c1 = _conv3d(self.features, "conv_in", self.dtype)(clip.astype(self.dtype))
    prev_feat, feat = c1, c1
    for i in range(k):
      prev_feat, feat = feat, _rrdb3d(self.growth, self.dtype, f"rrdb_{i}")(feat)
    if fading:
      feat = ((1.0 - a) * prev_feat.astype(jnp.float32) + a * feat.astype(jnp.float32)).astype(self.dtype)
    enc = c1 + feat

    # Decoder: one UpStage per stage; later stages also see the encoder output.
    heads = [RGBHead(self.features, clip.shape[-1], dtype=self.dtype, name=f"rgb_{i}") for i in range(k)]
    y, stage_feats = enc, []
    for i in range(k):
      if i > 0:
        size = (t_in, y.shape[2], y.shape[3])
        y = layers.resize_linear(y, size) + layers.resize_linear(enc, size)
      down = s - 1 - i if self.temporal_growth else 0
      y = UpStage(self.features, down, dtype=self.dtype, name=f"up_{i}")(y)
      stage_feats.append(y)
    if self.is_initializing():  # create every stage's head so smaller stages' params are a subset
      for i in range(k - 1):
        heads[i](stage_feats[i])

    out = _add_input(heads[k - 1](y), clip)
    if fading:
      prev = _add_input(heads[k - 2](stage_feats[k - 2]), clip)
      out = (1.0 - a) * layers.resize_linear(prev, out.shape[1:4]) + a * out
    if not self.attention:
      return out
    attn = AttentionDecoder(self.features, s, dtype=self.dtype, name="attention")(
        feat, out.shape[1:4], train=train)
    return {"sr": out, "attention": attn}


def grow_params(small_params: Any, big_params: Any) -> Any:
  """Returns ``big_params`` with every leaf that ``small_params`` has replaced by the small one's.

  Works on any nested dicts (``params`` or whole variable dicts). Raises if the
  small tree has a path the big one lacks or a leaf of another shape.
  """
  small = traverse_util.flatten_dict(small_params)
  big = traverse_util.flatten_dict(big_params)
  missing = [k for k in small if k not in big]
  if missing:
    raise ValueError(f"grow_params: the bigger model lacks {['/'.join(map(str, k)) for k in missing[:5]]}")
  for key, value in small.items():
    if jnp.shape(value) != jnp.shape(big[key]):
      raise ValueError(f"grow_params: {'/'.join(map(str, key))} has shape {jnp.shape(value)}, "
                       f"the bigger model's is {jnp.shape(big[key])}")
  return traverse_util.unflatten_dict({**big, **small})
