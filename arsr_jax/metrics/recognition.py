"""Action-recognition metrics on SR outputs and temporal consistency of SR clips.

Host-side (numpy, over a whole split):

* single-label: ``accuracy``, ``per_class_accuracy``, ``confusion_matrix``, and how
  closely a method's classifier scores follow a reference's (the HR clips' or
  bicubic's): ``topk_agreement``, ``kl_divergence``.
* TinyVIRAT multi-label protocol (Demir et al., ICPR 2020): a video is cut into
  consecutive 16-frame clips (``clip_windows`` / ``clip_frame_indices``), a
  class's video score is the max over its clips of sigmoid(logit)
  (``multilabel_video_scores``), a class is predicted above 0.5
  (``multilabel_predictions``), and methods are ranked by the F1 averaged over
  classes (``macro_f1``).

Device-side (jax, jittable, batched): ``warping_error``, the flow-warping error of
a clip.

Scores are (N, C) logits or probabilities (only their order matters, except for
``kl_divergence``, which takes logits); labels are (N,) integer class ids.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax.flow.warp import warp

# ----------------------------------------------------------------------------- single-label


def _scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
  scores, labels = np.asarray(scores), np.asarray(labels)
  if scores.ndim != 2 or labels.shape != scores.shape[:1]:
    raise ValueError(f"expected scores (N, C) and labels (N,), got {scores.shape} and {labels.shape}")
  return scores, labels.astype(np.int64)


def accuracy(scores, labels) -> float:
  """Top-1 accuracy in [0, 1] of scores (N, C) against labels (N,); NaN for N = 0."""
  scores, labels = _scores_labels(scores, labels)
  return float(np.mean(np.argmax(scores, axis=1) == labels)) if len(labels) else float("nan")


def per_class_accuracy(scores, labels, num_classes: int) -> np.ndarray:
  """(C,) float64 top-1 accuracy (recall) per true class; NaN for classes absent from ``labels``."""
  scores, labels = _scores_labels(scores, labels)
  correct = np.bincount(labels, weights=np.argmax(scores, axis=1) == labels, minlength=num_classes)
  count = np.bincount(labels, minlength=num_classes)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, correct / count, np.nan)[:num_classes]


def confusion_matrix(pred, labels, num_classes: int) -> np.ndarray:
  """(C, C) int64 counts; entry [i, j] = items of true class i predicted as j (sklearn's layout).

  ``pred`` and ``labels`` are (N,) class ids in [0, num_classes).
  """
  pred, labels = np.asarray(pred, np.int64), np.asarray(labels, np.int64)
  if pred.shape != labels.shape or pred.ndim != 1:
    raise ValueError(f"confusion_matrix: expected pred and labels (N,), got {pred.shape}, {labels.shape}")
  if len(pred) and (min(pred.min(), labels.min()) < 0 or max(pred.max(), labels.max()) >= num_classes):
    raise ValueError(f"confusion_matrix: class ids must lie in [0, {num_classes})")
  return np.bincount(labels * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def topk_agreement(scores, reference_scores, k: int = 1) -> float:
  """Fraction of items whose reference top-1 class is among the top-k classes of ``scores``.

  k = 1: argmax(scores) == argmax(reference_scores). k = 5: the reference's top-1
  is within the method's top 5. Both (N, C); ties rank the lower class id first
  (as argmax). NaN for N = 0.
  """
  scores, reference = np.asarray(scores), np.asarray(reference_scores)
  if scores.shape != reference.shape or scores.ndim != 2:
    raise ValueError(f"topk_agreement: expected two (N, C) arrays, got {scores.shape}, {reference.shape}")
  if not 1 <= k <= scores.shape[1]:
    raise ValueError(f"topk_agreement: k must be in 1..{scores.shape[1]}, got {k}")
  if not len(scores):
    return float("nan")
  top_k = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return float(np.mean(np.any(top_k == np.argmax(reference, axis=1)[:, None], axis=1)))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  x = logits - logits.max(axis=-1, keepdims=True)
  return x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))


def kl_divergence(p_logits, q_logits) -> float:
  """Mean over items of KL(softmax(p_logits) || softmax(q_logits)) in nats; both (N, C).

  Direction: P is the reference (e.g. the classifier on HR clips), Q the method
  being compared, i.e. sum_c P_c (log P_c - log Q_c). Computed in float64.
  """
  p, q = np.asarray(p_logits, np.float64), np.asarray(q_logits, np.float64)
  if p.shape != q.shape or p.ndim != 2:
    raise ValueError(f"kl_divergence: expected two (N, C) arrays, got {p.shape}, {q.shape}")
  log_p, log_q = _log_softmax(p), _log_softmax(q)
  return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))


# ----------------------------------------------------------------------------- TinyVIRAT multi-label


def clip_windows(num_frames: int, clip_len: int = 16) -> list[tuple[int, int]]:
  """Consecutive non-overlapping clips [start, end) covering a video of ``num_frames`` frames.

  Windows start at 0, clip_len, 2 clip_len, ...; when num_frames is not a
  multiple of clip_len, the last window is shifted back to end at the last frame
  (num_frames - clip_len, num_frames), overlapping its predecessor, so no frame
  is dropped and every window is a real clip_len-frame clip. A video shorter than
  clip_len gives the single window (0, num_frames); the caller pads it to clip_len
  by repeating the last frame (``clip_frame_indices`` does both).
  """
  if num_frames < 1 or clip_len < 1:
    raise ValueError(f"clip_windows: need num_frames >= 1 and clip_len >= 1, got {num_frames}, {clip_len}")
  if num_frames <= clip_len:
    return [(0, num_frames)]
  windows = [(s, s + clip_len) for s in range(0, num_frames - clip_len + 1, clip_len)]
  if windows[-1][1] < num_frames:
    windows.append((num_frames - clip_len, num_frames))
  return windows


def clip_frame_indices(num_frames: int, clip_len: int = 16) -> np.ndarray:
  """(K, clip_len) int frame indices of ``clip_windows``; a short video repeats its last frame."""
  starts = np.asarray([s for s, _ in clip_windows(num_frames, clip_len)])
  return np.minimum(starts[:, None] + np.arange(clip_len), num_frames - 1)


def multilabel_video_scores(clip_logits, clip_valid) -> np.ndarray:
  """Video scores (N, C) in [0, 1]: max over valid clips of sigmoid(logits).

  Args:
    clip_logits: (N, K, C) per-clip logits, K clips per video (padded).
    clip_valid: (N, K) bool, False for padding clips.

  Returns:
    (N, C) float64; NaN rows for videos without a valid clip (never predicted).
  """
  logits = np.asarray(clip_logits, np.float64)
  valid = np.asarray(clip_valid, bool)
  if logits.ndim != 3 or valid.shape != logits.shape[:2]:
    raise ValueError(f"multilabel_video_scores: expected (N, K, C) logits and (N, K) valid, got "
                     f"{logits.shape} and {valid.shape}")
  best = np.max(np.where(valid[..., None], logits, -np.inf), axis=1, initial=-np.inf)
  scores = 0.5 * (1.0 + np.tanh(0.5 * best))  # sigmoid, monotone: max of sigmoids = sigmoid of max
  return np.where(valid.any(axis=1)[:, None], scores, np.nan)


def multilabel_predictions(video_scores, threshold: float = 0.5) -> np.ndarray:
  """(N, C) bool: score strictly above ``threshold`` (NaN scores are negative)."""
  return np.asarray(video_scores) > threshold


def macro_f1(pred, labels) -> tuple[float, np.ndarray]:
  """Macro-averaged F1 of multi-label predictions; (float, per-class (C,) float64).

  pred, labels: (N, C) bool. Per class F1 = 2 TP / (2 TP + FP + FN); a class with
  TP + FP + FN = 0 (never present, never predicted) scores 0, sklearn's
  ``f1_score(average='macro', zero_division=0)``. The macro F1 is the plain mean
  over all C classes, those included.
  """
  pred, labels = np.asarray(pred, bool), np.asarray(labels, bool)
  if pred.shape != labels.shape or pred.ndim != 2:
    raise ValueError(f"macro_f1: expected pred and labels (N, C), got {pred.shape} and {labels.shape}")
  tp = np.sum(pred & labels, axis=0)
  fp = np.sum(pred & ~labels, axis=0)
  fn = np.sum(~pred & labels, axis=0)
  denom = 2 * tp + fp + fn
  per_class = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0).astype(np.float64)
  return float(per_class.mean()) if per_class.size else float("nan"), per_class


# ----------------------------------------------------------------------------- temporal consistency


def warping_error(frames: jax.Array, flow: jax.Array, *, border: int = 0) -> jax.Array:
  """Flow-warping error of clips: (..., T, H, W, 3), (..., T-1, H, W, 2) -> (...,) float32.

  For each t < T-1, frame t+1 is backward-warped by the forward flow t -> t+1
  (sampled at x + flow_t(x), bilinear, ``flow.warp.warp``) and compared with frame t:
  the mean over pixels and channels of the squared difference, over the pixels
  whose sample point lies inside the frame and at least ``border`` pixels from each
  edge of the image. The result is the mean over t (of the pairs with any such
  pixel; NaN if none). Frames in [0, 1], flow in pixels as (u, v). Occlusions are
  not masked.
  """
  t = frames.shape[-4] if frames.ndim >= 4 else 0
  if t < 2 or frames.shape[-1] != 3 or flow.shape != (*frames.shape[:-4], t - 1, *frames.shape[-3:-1], 2):
    raise ValueError(f"warping_error: expected frames (..., T >= 2, H, W, 3) and flow (..., T-1, H, W, 2), got "
                     f"{frames.shape} and {flow.shape}")
  frames = frames.astype(jnp.float32)
  warped, valid = warp(frames[..., 1:, :, :, :], flow.astype(jnp.float32), return_mask=True)
  h, w = frames.shape[-3:-1]
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]  # border may be traced
  valid = valid & (ys >= border) & (ys < h - border) & (xs >= border) & (xs < w - border)
  w_pix = valid.astype(jnp.float32)
  sq = jnp.mean(jnp.square(warped - frames[..., :-1, :, :, :]), axis=-1)
  count = jnp.sum(w_pix, axis=(-2, -1))
  per_pair = jnp.sum(w_pix * sq, axis=(-2, -1)) / jnp.maximum(count, 1.0)
  has = (count > 0).astype(jnp.float32)
  n = jnp.sum(has, axis=-1)
  return jnp.where(n > 0, jnp.sum(has * per_pair, axis=-1) / jnp.maximum(n, 1.0), jnp.nan)
