"""Recognition metrics (single- and multi-label), the warping error, temporal profiles and PIL plots."""

import math

import jax
import numpy as np
import pytest
from PIL import Image

from arsr_jax.evaluation import plots, profiles
from arsr_jax.metrics import recognition as recognition_metrics

_SCORES = np.array([[0.9, 0.1, 0.0],   # -> 0
                    [0.2, 0.3, 0.5],   # -> 2
                    [0.1, 0.8, 0.1],   # -> 1
                    [0.6, 0.3, 0.1]])  # -> 0
_LABELS = np.array([0, 2, 0, 0])


def test_single_label_metrics():
  assert recognition_metrics.accuracy(_SCORES, _LABELS) == 0.75
  per_class = recognition_metrics.per_class_accuracy(_SCORES, _LABELS, 4)
  np.testing.assert_allclose(per_class[[0, 2]], [2 / 3, 1.0])
  assert np.isnan(per_class[1]) and np.isnan(per_class[3])  # absent from the labels
  cm = recognition_metrics.confusion_matrix(np.argmax(_SCORES, 1), _LABELS, 3)
  np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 0, 0], [0, 0, 1]])  # rows: true class
  with pytest.raises(ValueError, match="class ids"):
    recognition_metrics.confusion_matrix([3], [0], 3)


def test_topk_agreement_and_kl_direction():
  ref = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
  # scores' ranking: row0 0>1>2, row1 2>1>0, row2 1>0=2, row3 0>1>2 (top-1s 0, 2, 1, 0).
  assert recognition_metrics.topk_agreement(_SCORES, ref, k=1) == 0.0
  assert recognition_metrics.topk_agreement(_SCORES, ref, k=2) == 0.5  # ref top-1 in top 2: rows 0 and 3
  assert recognition_metrics.topk_agreement(_SCORES, ref, k=3) == 1.0
  assert recognition_metrics.topk_agreement(_SCORES, _SCORES, k=1) == 1.0
  p, q = np.zeros((1, 2)), np.array([[math.log(3.0), 0.0]])  # P = (1/2, 1/2), Q = (3/4, 1/4)
  np.testing.assert_allclose(recognition_metrics.kl_divergence(p, q), 0.5 * math.log(4 / 3), rtol=1e-12)
  np.testing.assert_allclose(recognition_metrics.kl_divergence(q, p), 0.75 * math.log(1.5) + 0.25 * math.log(0.5), rtol=1e-12)
  assert recognition_metrics.kl_divergence(_SCORES * 7, _SCORES * 7) == pytest.approx(0.0, abs=1e-12)


def test_clip_windows():
  assert recognition_metrics.clip_windows(32) == [(0, 16), (16, 32)]
  assert recognition_metrics.clip_windows(40) == [(0, 16), (16, 32), (24, 40)]  # last shifted back to the end
  assert recognition_metrics.clip_windows(16) == [(0, 16)]
  assert recognition_metrics.clip_windows(5) == [(0, 5)]
  assert recognition_metrics.clip_windows(10, clip_len=4) == [(0, 4), (4, 8), (6, 10)]
  np.testing.assert_array_equal(recognition_metrics.clip_frame_indices(5, 8), [[0, 1, 2, 3, 4, 4, 4, 4]])
  np.testing.assert_array_equal(recognition_metrics.clip_frame_indices(6, 4), [[0, 1, 2, 3], [2, 3, 4, 5]])
  with pytest.raises(ValueError):
    recognition_metrics.clip_windows(0)


def test_multilabel_protocol():
  logits = np.array([[[2.0, -1.0], [-3.0, 0.5], [50.0, 50.0]],   # third clip is padding
                     [[-2.0, -2.0], [-1.0, -4.0], [0.0, 0.0]],
                     [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]]])      # no valid clip
  valid = np.array([[True, True, False], [True, True, True], [False, False, False]])
  scores = recognition_metrics.multilabel_video_scores(logits, valid)
  sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
  np.testing.assert_allclose(scores[:2], [[sig(2.0), sig(0.5)], [0.5, 0.5]], rtol=1e-12)
  assert np.all(np.isnan(scores[2]))
  pred = recognition_metrics.multilabel_predictions(scores)
  np.testing.assert_array_equal(pred, [[True, True], [False, False], [False, False]])  # 0.5 is not above

  pred = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 1]], bool)
  labels = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 1]], bool)
  # class 0: TP1 FP1 FN0 -> 2/3; class 1: TP1 FN1 -> 2/3; class 2: nothing -> 0; class 3: TP1 FP1 -> 2/3.
  f1, per_class = recognition_metrics.macro_f1(pred, labels)
  np.testing.assert_allclose(per_class, [2 / 3, 2 / 3, 0.0, 2 / 3])
  assert f1 == pytest.approx(0.5)


def test_warping_error_analytic_cases():
  rng = np.random.default_rng(0)
  first = rng.uniform(size=(2, 6, 10, 3)).astype(np.float32)
  # Content moves 2 px right per frame: frame t+1 at x + 2 is frame t at x; flow t -> t+1 = (2, 0).
  moving = np.stack([np.roll(first, 2 * t, axis=2) for t in range(4)], axis=1)  # (2, 4, 6, 10, 3)
  flow = np.zeros((2, 3, 6, 10, 2), np.float32)
  flow[..., 0] = 2.0
  static = np.repeat(first[:, None], 4, axis=1)
  err = jax.jit(recognition_metrics.warping_error)
  exact, wrong, still = err(moving, flow), err(moving, np.zeros_like(flow)), err(static, np.zeros_like(flow))
  assert exact.shape == wrong.shape == still.shape == (2,)
  np.testing.assert_allclose(exact, 0.0, atol=1e-6)  # the wrapped-around columns sample outside: masked
  np.testing.assert_array_equal(still, 0.0)
  assert np.all(wrong > 0.01)
  assert np.all(err(moving, flow, border=2) < 1e-6)

  # Hand-computed, H = 1, W = 3, grey: u = 0.5 samples frame 1 at x = 0.5, 1.5 (2.5 is outside).
  row = lambda *v: np.repeat(np.array(v, np.float32)[None, :, None], 3, axis=-1)  # noqa: E731
  frames = np.stack([row(0.0, 0.5, 1.0), row(1.0, 0.0, 0.0), row(1.0, 0.0, 0.0)])  # (3, 1, 3, 3)
  flow = np.zeros((2, 1, 3, 2), np.float32)
  flow[0, ..., 0] = 0.5  # pair 0: (0.5 - 0)^2 and (0 - 0.5)^2 -> 0.25; pair 1: static -> 0
  np.testing.assert_allclose(recognition_metrics.warping_error(frames, flow), 0.125, rtol=1e-6)
  assert np.isnan(recognition_metrics.warping_error(frames, flow, border=1))  # no pixel left
  with pytest.raises(ValueError, match="T-1"):
    recognition_metrics.warping_error(frames, flow[:1])


def test_temporal_profiles_layout():
  a = np.zeros((3, 4, 5, 3), np.uint8)
  b = np.ones((3, 4, 6, 3), np.float32) * 0.5
  img = profiles.temporal_profiles({"a": a, "b": b}, row=1, gap=2)
  assert img.shape == (3, 5 + 2 + 6, 3) and img.dtype == np.uint8
  assert np.all(img[:, :5] == 0) and np.all(img[:, 5:7] == 255) and np.all(img[:, 7:] == 128)
  img = profiles.temporal_profiles({"a": a, "b": b}, row=-1, gap=2, vertical=True)
  assert img.shape == (3 + 2 + 3, 6, 3)
  assert np.all(img[:3, 5] == 255)  # the narrower profile is padded


def test_scatter_png_and_grid(tmp_path):
  path = tmp_path / "scatter.png"
  x, y = [0.25, 0.75, np.nan, 0.5], [0.75, 0.25, 0.3, 0.5]
  img = plots.scatter_png(path, x, y, title="per-class accuracy", xlabel="bicubic", ylabel="ours")
  assert img.shape == (480, 480, 3) and img.dtype == np.uint8
  with Image.open(path) as png:
    assert png.size == (480, 480) and png.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(png), img)
  for (px, py), color in (((0.25, 0.75), plots.ABOVE_COLOR), ((0.75, 0.25), plots.BELOW_COLOR),
                          ((0.5, 0.5), plots.EQUAL_COLOR)):
    c, r = plots.scatter_pixel(px, py)
    assert tuple(img[r, c]) == color
  c, r = plots.scatter_pixel(0.1, 0.9)
  assert tuple(img[r, c]) == (255, 255, 255)  # nothing drawn there
  text = img[32:50, 56:140].astype(int)  # the "above: 1" count in the box's top-left corner
  assert np.any((text[..., 2] > 150) & (text[..., 0] < 100))  # blue (anti-aliased) text
  small = plots.scatter_png(None, [0.2], [0.1], size=200, limits=(0.0, 0.5))
  assert small.shape == (200, 200, 3)
  c, r = plots.scatter_pixel(0.2, 0.1, size=200, limits=(0.0, 0.5))
  assert tuple(small[r, c]) == plots.BELOW_COLOR

  grid = plots.image_grid([np.zeros((4, 5, 3), np.uint8), np.ones((6, 3))], ["a", "b"], gap=2)
  assert grid.shape == (14 + 6, 5 + 2 + 5, 3)
  assert np.all(grid[14:18, :5] == 0) and np.all(grid[14:20, 7:10] == 255)
