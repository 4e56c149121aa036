"""What a new user meets in the first hour: honest numbers, clear one-line errors, early refusals."""

import json
import math

import numpy as np

from arsr_jax import io
from arsr_jax.evaluation import protocol, sr_eval
from arsr_jax.metrics import image as iq


def test_psnr_of_identical_frames_is_inf_everywhere(tmp_path):
  frames = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
  psnr = np.asarray(iq.psnr_y(frames, frames, border=2))
  assert np.all(np.isposinf(psnr))
  assert iq.mean_of(psnr) == math.inf
  assert iq.mean_of([30.0, np.nan, 32.0]) == 31.0 and iq.mean_of([np.nan]) is None
  results = {"methods": {"hr": {"psnr": iq.mean_of(psnr), "ssim": 1.0, "x": float("nan")}},
             "dataset": "d", "split": "test", "num_videos": 3, "scale": 4, "num_segments": 3}
  assert "| hr | inf | 1.0000 |" in protocol.results_table(results)
  io.write_json(tmp_path / "r.json", results)
  back = json.loads((tmp_path / "r.json").read_text())  # strict JSON: no Infinity / NaN tokens
  assert back["methods"]["hr"]["psnr"] == "inf" and back["methods"]["hr"]["x"] is None
  assert float(back["methods"]["hr"]["psnr"]) == math.inf
  assert io.json_safe({"a": [np.float32(-np.inf), 1, True, 2.5]}) == {"a": ["-inf", 1, True, 2.5]}


def test_sr_eval_table_shows_inf():
  r = {"step": 1, "dataset": "d", "split": "test", "num_frames": 2, "scale": 4, "moving_threshold_px": 0.5, "model_name": "vdsr"}
  r.update({m: {"psnr": math.inf, "ssim": 1.0, "psnr_moving": None, "ssim_moving": None} for m in sr_eval.METHODS})
  assert "inf" in sr_eval.results_table(r)
