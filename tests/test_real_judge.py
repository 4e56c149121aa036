"""Statistics and outputs of the real-video judging (studies/real_judge.py, metrics/paired.py)."""

import numpy as np
import pytest

from arsr_jax.studies import real_judge
from arsr_jax.metrics import paired
from arsr_jax.metrics import recognition as recognition_metrics


def test_per_window_kl_and_clip_bootstrap():
  rng = np.random.default_rng(0)
  p, q = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  kl = paired.per_window_kl(p, q)
  assert np.all(kl >= 0) and np.isclose(kl.mean(), recognition_metrics.kl_divergence(p, q))
  assert np.allclose(paired.per_window_kl(p, p), 0.0)
  # Clip 0's windows all +1, clip 1's all -1: resampling clips spans both; windows alone would not.
  diff, clips = np.array([1.0, 1.0, 1.0, -1.0]), np.array([0, 0, 0, 1])
  ci = paired.clip_bootstrap(diff, clips, num_samples=4000)
  assert ci["mean"] == 0.5 and ci["low"] == -1.0 and ci["high"] == 1.0 and ci["clips"] == 2
  ci = paired.clip_bootstrap(np.full(8, 0.3), np.repeat(np.arange(4), 2))
  assert ci["low"] == pytest.approx(0.3) and ci["high"] == pytest.approx(0.3)
  with pytest.raises(ValueError):
    paired.clip_bootstrap(diff, clips[:3])


def test_window_starts_cover_short_videos():
  assert list(real_judge.window_starts(40, 4)) == [0, 8, 16, 24]
  assert list(real_judge.window_starts(300, 4)) == [0, 95, 189, 284]
  assert real_judge.gt_class("v_Biking_g01_c01.mp4") == "riding a bike" and real_judge.gt_class("x.mp4") is None


def test_summarize_table_and_figure(tmp_path):
  rng = np.random.default_rng(1)
  hr = rng.normal(size=(8, 400)) * 3
  rec = {"clips": [0] * 4 + [1] * 4, "videos": ["a.mp4", "v_Biking_g01.mp4"], "gt": [None] * 4 + ["riding a bike"] * 4,
         "hr": hr.tolist()}
  for m, noise in (("bicubic", 2.0), ("vdsr", 0.5), ("consistency", 0.25)):
    rec[m] = {"logits": (hr + noise * rng.normal(size=hr.shape)).tolist(), "psnr": [25.0 + noise] * 8,
              "ssim": [0.8] * 8}
  s = real_judge.summarize(rec)
  v = s["methods"]["vdsr"]
  assert v["kl_from_hr"] < s["methods"]["bicubic"]["kl_from_hr"] and v["vs_bicubic"]["kl"]["mean"] < 0
  assert v["vs_bicubic"]["psnr"]["mean"] == pytest.approx(-1.5) and s["gt_windows"] == 4
  assert "vs_bicubic" not in s["methods"]["bicubic"] and s["clips"] == 2
  c = s["methods"]["consistency"]["vs_vdsr"]  # the third target: consistency vs pixel-loss VDSR
  assert c["kl"]["mean"] < 0 and c["psnr"]["mean"] == pytest.approx(-0.25)
  assert "vs_vdsr" not in s["methods"]["vdsr"] and "vs_vdsr" not in s["methods"]["bicubic"]
  md = real_judge.table({"corpus_test": {"x4": s}})
  assert "| corpus_test | x4 | vdsr |" in md and "| corpus_test | x4 | bicubic |" in md
  assert "Paired differences to the pixel-loss VDSR" in md and md.count("| corpus_test | x4 | consistency |") == 2
  real_judge.kl_figure(str(tmp_path / "kl.png"), rec, s, "x4")
  assert (tmp_path / "kl.png").stat().st_size > 1000


def test_merge_adds_methods_judged_later():
  old = {"clips": [0, 0], "videos": ["a.mp4"], "gt": [None, None], "hr": [[0.0, 1.0]] * 2,
         "bicubic": {"logits": [[0.0, 1.0]] * 2, "psnr": [1.0, 1.0], "ssim": [0.5, 0.5]}}
  new = {"clips": [0, 0], "videos": ["a.mp4"], "gt": [None, None], "hr": [],
         "vdsr": {"logits": [[0.0, 2.0]] * 2, "psnr": [2.0, 2.0], "ssim": [0.6, 0.6]}, "steps": {"vdsr": 3}}
  merged = real_judge.merge(old, new)
  assert set(merged) == {"clips", "videos", "gt", "hr", "bicubic", "vdsr"} and merged["hr"] == old["hr"]
  with pytest.raises(ValueError, match="different videos"):
    real_judge.merge(old, dict(new, videos=["b.mp4"]))
