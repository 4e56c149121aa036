"""Paired differences between two methods judged on the same windows, with a clip bootstrap.

Windows cut from one video are correlated, so intervals resample whole clips: each bootstrap
replicate draws clips with replacement and averages the per-window differences of all their windows.
"""

from __future__ import annotations

import numpy as np


def per_window_kl(p_logits, q_logits) -> np.ndarray:
  """(N,) KL(softmax(p) || softmax(q)) in nats per row of (N, C) logits (P the reference)."""
  p, q = (np.asarray(x, np.float64) for x in (p_logits, q_logits))
  lp = p - p.max(-1, keepdims=True)
  lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
  lq = q - q.max(-1, keepdims=True)
  lq = lq - np.log(np.exp(lq).sum(-1, keepdims=True))
  return np.sum(np.exp(lp) * (lp - lq), axis=-1)


def clip_bootstrap(diff, clips, *, num_samples: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict[str, float]:
  """Mean of per-window differences (N,) and its percentile interval, resampling clips.

  Args:
    diff: (N,) per-window differences (method - baseline).
    clips: (N,) clip id of each window.
  Returns:
    {'mean', 'low', 'high', 'clips', 'windows'}: the mean over windows and the ``level``
    interval of that mean over ``num_samples`` replicates that each draw as many clips as
    there are, with replacement.
  """
  diff, clips = np.asarray(diff, np.float64), np.asarray(clips)
  if diff.shape != clips.shape or diff.ndim != 1 or not len(diff):
    raise ValueError(f"clip_bootstrap: need equal non-empty 1-D diff and clips, got {diff.shape}, {clips.shape}")
  ids = np.unique(clips)
  sums = np.array([diff[clips == c].sum() for c in ids])
  counts = np.array([(clips == c).sum() for c in ids], np.float64)
  rng = np.random.default_rng(seed)
  draw = rng.integers(0, len(ids), size=(num_samples, len(ids)))
  means = sums[draw].sum(1) / counts[draw].sum(1)
  a = (1.0 - level) / 2.0
  return {"mean": float(diff.mean()), "low": float(np.quantile(means, a)), "high": float(np.quantile(means, 1 - a)),
          "clips": int(len(ids)), "windows": int(len(diff))}
