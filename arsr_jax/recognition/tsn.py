"""Temporal Segment Networks (Wang et al., ECCV 2016) on a ResNet backbone.

Follows yjxiong/temporal-segment-networks and its PyTorch port (yjxiong/tsn-pytorch): a video is
split into S equal segments, one snippet is taken from each (an RGB frame, or a stack of
``flow_stack`` consecutive optical-flow fields), the same 2D network scores every snippet and the
segment consensus averages the per-segment logits.

``TSN``: snippets (N, S, H, W, C) -> logits (N, num_classes), float32, with C = 3 for
``modality='rgb'`` (frames in [0, 1]) or C = 2 * flow_stack for ``'flow'`` (flow in pixels,
stacked by :func:`stack_flow` as [u_1, v_1, u_2, v_2, ...]). The backbone (``ResNet``, submodule
``backbone``) normalises its input itself: ImageNet mean/std for RGB, flow clipped to +-20 px and
divided by 20. Dropout before the classifier defaults to TSN's 0.8 (rgb) / 0.7 (flow); training
with dropout needs a 'dropout' rng. TSN's partial BatchNorm (frozen statistics except the first
layer) is not reproduced: train with ``train=False`` to keep every BatchNorm frozen.

Pure helpers: :func:`segment_indices` (TSN's train/test snippet sampling), :func:`stack_flow`,
:func:`consensus`, :func:`fuse` (two-stream late fusion, TSN's ``eval_scores.py``) and :func:`mirror`
(horizontal flips, flow u negated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax.recognition.resnet import ResNet

__all__ = ["TSN", "consensus", "fuse", "mirror", "segment_indices", "stack_flow"]

DEFAULT_DROPOUT = {"rgb": 0.8, "flow": 0.7}  # tsn-pytorch README: --dropout 0.8 (RGB), 0.7 (Flow)


def _xp(x):
  return jnp if isinstance(x, jax.Array) else np


def segment_indices(num_frames: int, num_segments: int, flow_stack: int = 1, *, train: bool = False,
                    rng: np.random.Generator | int | None = None) -> np.ndarray:
  """0-based start frames (num_segments,) of TSN's snippets; snippet k is frames
  ``start[k] : start[k] + flow_stack``.

  Test (``train=False``), tsn-pytorch's ``_get_test_indices``: with
  tick = (num_frames - flow_stack + 1) / num_segments, start[i] = int(tick / 2 + tick * i), the
  middle of each equal segment (repeats when the video is shorter than ``num_segments``).
  Train, ``_sample_indices``: a uniformly random start inside each of the equal segments of
  length (num_frames - flow_stack + 1) // num_segments; if that is 0, sorted random starts over
  the whole video (num_frames > num_segments) or all zeros. ``rng`` seeds a NumPy Generator.
  """
  if num_segments < 1 or flow_stack < 1:
    raise ValueError(f"num_segments and flow_stack must be >= 1, got {num_segments} and {flow_stack}")
  if num_frames < flow_stack:
    raise ValueError(f"video has {num_frames} frames, fewer than the {flow_stack} one snippet needs "
                     f"(flow_stack={flow_stack}, num_segments={num_segments})")
  span = num_frames - flow_stack + 1  # number of valid start positions
  if not train:
    tick = span / float(num_segments)
    return np.array([int(tick / 2.0 + tick * i) for i in range(num_segments)], dtype=np.int64)
  rng = np.random.default_rng(rng)
  duration = span // num_segments
  if duration > 0:
    return np.arange(num_segments, dtype=np.int64) * duration + rng.integers(duration, size=num_segments)
  if num_frames > num_segments:
    return np.sort(rng.integers(span, size=num_segments)).astype(np.int64)
  return np.zeros(num_segments, dtype=np.int64)


def stack_flow(flow):
  """Flow fields (..., L, H, W, 2) as (u, v) in pixels -> one snippet (..., H, W, 2L), channels
  [u_1, v_1, u_2, v_2, ...] (TSN's interleaved x/y stacking). NumPy in, NumPy out; JAX in, JAX out."""
  if flow.ndim < 4 or flow.shape[-1] != 2:
    raise ValueError(f"expected flow (..., L, H, W, 2), got shape {flow.shape}")
  *lead, length, h, w, _ = flow.shape
  x = _xp(flow).moveaxis(flow, -4, -2)  # (..., H, W, L, 2)
  return x.reshape(*lead, h, w, 2 * length)


def mirror(x, flow: bool = False):
  """Horizontal flip of frames or flow stacks (..., H, W, C); a flow stack (channels [u1, v1, u2, ...]
  in pixels) also negates every u, as tsn-pytorch inverts the x images of a flipped flow crop
  (GroupRandomHorizontalFlip(is_flow=True), GroupOverSample). NumPy in, NumPy out; JAX in, JAX out."""
  x = x[..., ::-1, :]
  if not flow:
    return x
  return x * np.where(np.arange(x.shape[-1]) % 2 == 0, -1, 1).astype(x.dtype)


def consensus(logits):
  """Segment consensus: (N, S, C) per-segment scores -> (N, C), their average."""
  if logits.ndim != 3:
    raise ValueError(f"expected per-segment scores (N, S, C), got shape {logits.shape}")
  return logits.mean(axis=1)


def fuse(scores: Sequence[Any], weights: Sequence[float] = (1.0, 1.5)):
  """Late fusion of streams: sum_k w_k * scores_k / sum_k w_k, each scores_k (N, C).

  TSN's ``eval_scores.py`` adds the weighted (segment-averaged) scores without dividing; dividing
  by the sum of the weights rescales every class equally, so the argmax (accuracy) is TSN's.
  The default (1, 1.5) is TSN's RGB : flow weighting.
  """
  if len(scores) != len(weights) or not scores:
    raise ValueError(f"fuse needs one weight per stream, got {len(scores)} score arrays and "
                     f"{len(weights)} weights")
  if sum(weights) == 0:
    raise ValueError(f"fuse weights sum to zero: {tuple(weights)}")
  xp = jnp if any(isinstance(s, jax.Array) for s in scores) else np
  total = sum(w * xp.asarray(s) for w, s in zip(weights, scores))
  return total / sum(weights)


class TSN(nn.Module):
  """One TSN stream: (N, S, H, W, C) snippets -> (N, num_classes) segment-consensus logits."""
  modality: str = "rgb"  # 'rgb' or 'flow'
  num_classes: int = 101
  depth: int = 50
  width: int = 64
  flow_stack: int = 5  # flow fields per snippet (tsn-pytorch's new_length, default 5); RGB snippets: 1 frame
  dropout_rate: float | None = None  # None: 0.8 for rgb, 0.7 for flow
  dtype: Any = jnp.float32
  stem_type: str = "imagenet"  # ResNet stem; 'small' for small frames (see resnet.ResNet)

  @property
  def in_channels(self) -> int:
    return 3 if self.modality == "rgb" else 2 * self.flow_stack

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if self.modality not in DEFAULT_DROPOUT:
      raise ValueError(f"TSN modality must be 'rgb' or 'flow', got {self.modality!r}")
    if x.ndim != 5 or x.shape[-1] != self.in_channels:
      raise ValueError(f"TSN ({self.modality}, flow_stack={self.flow_stack}) expects snippets "
                       f"(N, S, H, W, {self.in_channels}), got shape {x.shape}")
    n, s = x.shape[:2]
    rate = DEFAULT_DROPOUT[self.modality] if self.dropout_rate is None else self.dropout_rate
    backbone = ResNet(self.depth, self.num_classes, self.width, rate,
                      "imagenet" if self.modality == "rgb" else "flow", self.dtype, self.stem_type,
                      name="backbone")
    logits = backbone(x.reshape(n * s, *x.shape[2:]), train=train)
    return consensus(logits.reshape(n, s, -1))
