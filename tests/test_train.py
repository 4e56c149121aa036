"""The training loop: data parallelism, exact resume, checkpoint safety, end-to-end smoke run."""

import json
import os

import jax
import numpy as np
import pytest

from arsr_jax import checkpointing, main, sharding
from arsr_jax.evaluation import batched
from arsr_jax.jobs import sr as sr_job
from arsr_jax.steps import sr as sr_steps
from configs import sosr_vdsr


def tiny_config(data_dir, **train_overrides):
  c = sosr_vdsr.get_config("smoke")
  c.data.data_dir = data_dir
  c.model.num_layers = 3
  c.model.features = 8
  c.optimizer.schedule = "constant"
  c.optimizer.warmup_steps = 0
  c.train.batch_size = 8
  c.train.num_steps = 6
  c.train.log_every = 2
  c.train.checkpoint_every = 2
  c.eval.batch_size = 8
  c.eval.max_clips = 2
  c.train.update(train_overrides)
  return c


def _params_close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_train_step_on_8_devices_equals_1_device():
  assert jax.device_count() == 8, "conftest must simulate 8 CPU devices"
  config = tiny_config(None)
  b, b_frozen = sr_job.build(config)
  init_fn = sr_steps.make_init_fn(b, (1, 8, 8, 3))
  train_step = sr_steps.make_train_step(b)
  rng = np.random.default_rng(0)
  batch = {"lr": rng.uniform(size=(8, 8, 8, 3)).astype(np.float32),
           "hr": rng.uniform(size=(8, 32, 32, 3)).astype(np.float32),
           "flow": rng.normal(size=(8, 32, 32, 2)).astype(np.float32)}
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = sharding.make_mesh(devices)
    repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    state = jax.jit(init_fn, out_shardings=repl)(jax.random.key(0))
    step = jax.jit(train_step, in_shardings=(repl, batched, repl, repl), out_shardings=(repl, repl))
    global_batch = sharding.to_global(batch, mesh)
    assert len(global_batch["lr"].sharding.device_set) == len(devices)
    new_state, metrics = step(state, global_batch, {}, jax.random.key(1))
    results.append((new_state, metrics))
  (s1, m1), (s8, m8) = results
  _params_close(s1.params, s8.params)
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
  assert int(s8.step) == 1


def test_batch_not_divisible_by_devices_is_rejected(small_data_dir, tmp_path):
  config = tiny_config(small_data_dir, batch_size=12)
  with pytest.raises(ValueError, match="train.batch_size=12 is not divisible by the 8 devices"):
    main.run(config, str(tmp_path))


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(small_data_dir, tmp_path):
  straight = tmp_path / "straight"
  main.run(tiny_config(small_data_dir), str(straight))
  interrupted = tmp_path / "interrupted"
  first = main.run(tiny_config(small_data_dir, steps_per_run=3), str(interrupted))
  assert first == {"step": 3, "finished": False}
  assert checkpointing.load_latest_state(str(interrupted))[0] == 3
  results = main.run(tiny_config(small_data_dir), str(interrupted))
  assert results["step"] == 6
  step_a, state_a = checkpointing.load_latest_state(str(straight))
  step_b, state_b = checkpointing.load_latest_state(str(interrupted))
  assert step_a == step_b == 6
  _params_close(state_a["params"], state_b["params"], rtol=1e-6, atol=1e-7)
  assert set(state_a["params"]) == {"generator"}
  _params_close(state_a["opt_state"], state_b["opt_state"], rtol=1e-6, atol=1e-7)
  # keep-N retention: of the saved steps 2, 3, 4, 6 only the newest 3 remain.
  assert sorted(int(p) for p in os.listdir(interrupted / "checkpoints") if p.isdigit()) == [3, 4, 6]
  # A finished run rerun with the same command resumes (nothing to train) and re-evaluates.
  again = main.run(tiny_config(small_data_dir), str(interrupted))
  assert again["model"] == results["model"]


@pytest.mark.slow
def test_workdir_of_another_model_is_refused_and_left_intact(small_data_dir, tmp_path):
  main.run(tiny_config(small_data_dir, num_steps=2), str(tmp_path))
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  other = tiny_config(small_data_dir, num_steps=4)
  other.model.features = 16
  with pytest.raises(ValueError, match="different run: model"):
    main.run(other, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before


@pytest.mark.slow
def test_nan_guard_stops_and_keeps_last_good_checkpoint(small_data_dir, tmp_path):
  main.run(tiny_config(small_data_dir, num_steps=2), str(tmp_path))
  bad = tiny_config(small_data_dir, num_steps=6, checkpoint_every=1, log_every=1)
  bad.optimizer.learning_rate = float("inf")
  with pytest.raises(FloatingPointError, match=r"last good checkpoint \(step 2\)"):
    main.run(bad, str(tmp_path))
  step, state = checkpointing.load_latest_state(str(tmp_path))
  assert step == 2
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


@pytest.mark.slow
def test_eval_mode_restores_latest_checkpoint(small_data_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    c = tiny_config(small_data_dir)
    c.mode = "eval"
    main.run(c, str(tmp_path))
  trained = main.run(tiny_config(small_data_dir, num_steps=2), str(tmp_path))
  c = tiny_config(small_data_dir, num_steps=2)
  c.mode = "eval"
  evaluated = main.run(c, str(tmp_path))
  assert evaluated["model"] == trained["model"] and evaluated["step"] == 2
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["step"] == 2


@pytest.mark.slow
def test_smoke_config_beats_bicubic_on_moving_pixels(small_data_dir, tmp_path):
  c = sosr_vdsr.get_config("smoke")
  c.data.data_dir = small_data_dir
  results = main.run(c, str(tmp_path))
  assert results["model"]["psnr_moving"] > results["bicubic"]["psnr_moving"] + 0.3
  assert results["model"]["ssim_moving"] > results["bicubic"]["ssim_moving"]
  assert os.listdir(tmp_path / "tensorboard"), "no TensorBoard event file written"


def test_eval_batches_cover_clips_of_different_lengths(monkeypatch):
  """UCF101/HMDB51 videos differ in length: every frame is evaluated once, padding is marked."""
  from arsr_jax.data import pipeline
  rng = np.random.default_rng(0)
  clips = [{"hr": rng.integers(0, 255, (t, 8, 8, 3), np.uint8), "lr": rng.integers(0, 255, (t, 2, 2, 3), np.uint8),
            "flow": np.zeros((t - 1, 8, 8, 2), np.float16)} for t in (5, 3, 6)]
  monkeypatch.setattr(pipeline, "get_source", lambda *a: clips)
  config = tiny_config(None)
  batches = list(batched.padded_batches(pipeline.eval_items(config.data), 4))
  valid = np.concatenate([b["index"] for b in batches]) >= 0
  assert len(batches) == 4 and valid.sum() == 14 and not valid[14:].any()
  hr = np.concatenate([b["hr"] for b in batches])[valid]
  assert hr.dtype == np.uint8  # frames travel as uint8; the eval step converts them on the device
  assert batches[0]["flow"].dtype == np.float16  # flow as stored
  np.testing.assert_array_equal(hr, np.concatenate([c["hr"] for c in clips]))


def test_uint8_batches_train_exactly_like_float_batches():
  """The pipeline sends uint8 frames (4x fewer bytes) and float16 flow as stored (2x); the step's
  conversion on the device equals the float32 path."""
  config = tiny_config(None)
  b, _ = sr_job.build(config)
  state = jax.jit(sr_steps.make_init_fn(b, (1, 8, 8, 3)))(jax.random.key(0))
  step = jax.jit(sr_steps.make_train_step(b))
  rng = np.random.default_rng(0)
  u8 = {"lr": rng.integers(0, 256, (4, 8, 8, 3), np.uint8), "hr": rng.integers(0, 256, (4, 32, 32, 3), np.uint8),
        "flow": rng.normal(size=(4, 32, 32, 2)).astype(np.float16)}
  f32 = dict(lr=u8["lr"].astype(np.float32) / 255.0, hr=u8["hr"].astype(np.float32) / 255.0,
             flow=u8["flow"].astype(np.float32))
  (s_u8, m_u8), (s_f32, m_f32) = (step(state, x, {}, jax.random.key(1)) for x in (u8, f32))
  np.testing.assert_allclose(m_u8["loss"], m_f32["loss"], rtol=1e-6)
  _params_close(s_u8.params, s_f32.params)
