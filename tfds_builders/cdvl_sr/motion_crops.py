"""Choosing the training crops of a natural video by moving area (the CDVL-134 protocol).

A video of N frames gives clips of T frames starting at `window_starts` (evenly
spread). For each start t, TV-L1 flow of the frame pair at the middle of the
clip, (t + c, t + c + 1) with c = (T - 1) // 2, marks moving pixels
(|flow| > threshold px). Every p x p crop of a grid scores its moving fraction,
and `select` keeps the best-scoring (start, crop) pairs that do not overlap
(in time and space) one already kept.
"""

from __future__ import annotations

import numpy as np


def window_starts(num_frames: int, clip_frames: int, num_positions: int) -> np.ndarray:
  """Up to `num_positions` distinct clip starts evenly spread over [0, N - T]."""
  last = num_frames - clip_frames
  if last < 0:
    raise ValueError(f"{num_frames} frames are fewer than a clip of {clip_frames}")
  return np.unique(np.round(np.linspace(0, last, num_positions)).astype(np.int64))


def score_pair(clip_frames: int) -> int:
  """Offset c of the scored pair (c, c + 1) inside a clip."""
  return (clip_frames - 1) // 2


def grid(size: int, patch: int, stride: int) -> np.ndarray:
  """Crop offsets 0, stride, ... along one axis, plus the last one (size - patch)."""
  offsets = list(range(0, size - patch + 1, stride))
  if offsets[-1] != size - patch:
    offsets.append(size - patch)
  return np.asarray(offsets)


def moving_fractions(moving: np.ndarray, patch: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
  """(P, H, W) bool -> (P, len(ys), len(xs)) fraction of moving pixels in each p x p crop."""
  integral = np.pad(moving.astype(np.int64).cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
  y0, x0 = ys[:, None], xs[None, :]
  y1, x1 = y0 + patch, x0 + patch
  total = (integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0])
  return total / float(patch * patch)


def _iou(a: tuple[int, int], b: tuple[int, int], patch: int) -> float:
  dy, dx = max(0, patch - abs(a[0] - b[0])), max(0, patch - abs(a[1] - b[1]))
  inter = dy * dx
  return inter / (2 * patch * patch - inter)


def select(fractions: np.ndarray, starts: np.ndarray, ys: np.ndarray, xs: np.ndarray, *,
           patch: int, clip_frames: int, top_k: int, max_iou: float = 0.25,
           min_fraction: float = 0.0) -> list[tuple[float, int, int, int]]:
  """Greedy top-k (fraction, start, y, x), best first.

  A candidate is dropped when a kept clip overlaps it in time (|t - t'| < T)
  with a crop IoU above `max_iou`, or when its fraction is below `min_fraction`.
  Ties go to the earlier start, then the upper-left crop (deterministic).
  """
  p_idx, y_idx, x_idx = np.unravel_index(np.arange(fractions.size), fractions.shape)
  order = np.lexsort((x_idx, y_idx, p_idx, -fractions.ravel()))
  kept: list[tuple[float, int, int, int]] = []
  for i in order:
    score = float(fractions.ravel()[i])
    if score < min_fraction or len(kept) == top_k:
      break
    t, y, x = int(starts[p_idx[i]]), int(ys[y_idx[i]]), int(xs[x_idx[i]])
    if any(abs(t - kt) < clip_frames and _iou((y, x), (ky, kx), patch) > max_iou
           for _, kt, ky, kx in kept):
      continue
    kept.append((score, t, y, x))
  return kept
