"""Recipe mechanics through the one loop: adversarial steps, init_from, progressive growing."""

import dataclasses
import pathlib

import jax
import numpy as np
import pytest

from arsr_jax import checkpointing, config_lib, main, upgrade, weights
from arsr_jax.jobs import sr as sr_job
from arsr_jax.steps import sr as sr_steps
from test_upgrade import write_old_layout

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _recipe(name, variant="smoke", data_dir=None, **train_overrides):
  c = config_lib.recipe(name, variant)
  c.data.data_dir = data_dir
  c.train.batch_size = 8
  c.eval.batch_size = 8
  c.eval.max_clips = 1
  c.train.update(train_overrides)
  return c


@pytest.mark.slow
def test_gan_step_updates_generator_and_discriminator_from_one_batch():
  c = _recipe("esrgan")
  c.optimizer.warmup_steps = 0  # a first step with learning rate 0 would not move the generator
  b, b_frozen = sr_job.build(c)
  init = sr_steps.make_init_fn(b, (1, 8, 8, 3), (1, 32, 32, 3))
  state = jax.jit(init)(jax.random.key(0))
  assert set(state.params) == {"generator", "discriminator"}
  step = sr_steps.make_train_step(b)
  rng = np.random.default_rng(0)
  batch = {"lr": rng.uniform(size=(2, 8, 8, 3)).astype(np.float32),
           "hr": rng.uniform(size=(2, 32, 32, 3)).astype(np.float32),
           "flow": np.zeros((2, 32, 32, 2), np.float32)}
  new, metrics = jax.jit(step)(state, batch, b_frozen, jax.random.key(1))
  values = metrics
  assert np.isfinite(values["gan_g"]) and np.isfinite(values["gan_d"])
  for net in ("generator", "discriminator"):
    before, after = jax.tree.leaves(state.params[net]), jax.tree.leaves(new.params[net])
    assert any(not np.allclose(x, y) for x, y in zip(before, after)), f"{net} did not change"
  stats_before = jax.tree.leaves(state.model_state["discriminator"])
  stats_after = jax.tree.leaves(new.model_state["discriminator"])
  assert any(not np.allclose(x, y) for x, y in zip(stats_before, stats_after)), "BatchNorm stats frozen"


@pytest.mark.slow
def test_init_from_copies_matching_generator_parameters(small_data_dir, tmp_path):
  psnr = _recipe("esrgan", "smoke,psnr", small_data_dir, num_steps=2)
  main.run(psnr, str(tmp_path / "psnr"))
  _, source = checkpointing.load_latest_state(str(tmp_path / "psnr"))
  gan = _recipe("esrgan", "smoke", small_data_dir)
  b, b_frozen = sr_job.build(gan)
  mesh_sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  init = sr_steps.make_init_fn(b, (1, 8, 8, 3), (1, 32, 32, 3))
  state = sr_job.init_from(jax.jit(init)(jax.random.key(3)), str(tmp_path / "psnr"), mesh_sharding)
  src = weights.flatten(source["params"]["generator"])
  dst = weights.flatten(jax.device_get(state.params["generator"]))
  assert src.keys() == dst.keys()
  for k in src:
    np.testing.assert_array_equal(src[k], dst[k])
  other = _recipe("rcan", "smoke", small_data_dir)
  b, b_frozen = sr_job.build(other)
  init = sr_steps.make_init_fn(b, (1, 8, 8, 3))
  with pytest.raises(ValueError, match="not a sub-network"):
    sr_job.init_from(jax.jit(init)(jax.random.key(0)), str(tmp_path / "psnr"), mesh_sharding)


@pytest.mark.slow
def test_progressive_stage2_grows_from_stage1_and_starts_at_its_output(small_data_dir, tmp_path):
  stage1 = _recipe("dvsr_progressive", "smoke,stage1", small_data_dir, num_steps=2)
  r1 = main.run(stage1, str(tmp_path / "s1"))
  assert r1["model"]["psnr"] is not None
  stage2 = _recipe("dvsr_progressive", "smoke,stage2", small_data_dir, num_steps=2,
                   init_from=str(tmp_path / "s1"))
  r2 = main.run(stage2, str(tmp_path / "s2"))
  assert r2["step"] == 2 and r2["model"]["psnr"] is not None
  _, s1 = checkpointing.load_latest_state(str(tmp_path / "s1"))
  b, b_frozen = sr_job.build(stage2)
  init = sr_steps.make_init_fn(b, (1, 4, 16, 16, 3))
  grown = sr_job.init_from(jax.jit(init)(jax.random.key(0)), str(tmp_path / "s1"),
                           jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  lr = np.random.default_rng(0).uniform(size=(1, 4, 16, 16, 3)).astype(np.float32)
  b1, b1_frozen = sr_job.build(stage1)
  small_out = b1.model.apply({"params": s1["params"]["generator"]}, lr)
  big_out = b.model.apply({"params": grown.params["generator"]}, lr, alpha=0.0)
  from arsr_jax.models import layers
  np.testing.assert_allclose(big_out, layers.resize_linear(small_out, big_out.shape[1:4]), atol=1e-5)


@pytest.mark.slow
def test_sosr_trains_on_tvl1_flow_computed_on_the_accelerator(small_data_dir, tmp_path):
  c = _recipe("sosr_vdsr", "smoke", small_data_dir, num_steps=2)
  c.data.flow_source = "tvl1"
  c.data.tvl1 = {"nscales": 2, "warps": 1, "outer_iterations": 2, "inner_iterations": 10}
  results = main.run(c, str(tmp_path))
  assert results["step"] == 2 and results["model"]["psnr_moving"] is not None
  bad = _recipe("sosr_vdsr", "smoke", small_data_dir)
  bad.data.tvl1 = {"nscale": 2}
  bad.data.flow_source = "tvl1"
  with pytest.raises((ValueError, TypeError), match="nscale"):
    sr_job.build(bad)
  bad.data.flow_source = "farneback"
  with pytest.raises(ValueError, match="Unknown data.flow_source"):
    sr_job.build(bad)


@pytest.mark.slow
def test_tvl1_flow_of_synthetic_frames_weights_the_moving_actors():
  """The TV-L1 weights SoSR would use agree with the exact flow where actors move."""
  from arsr_jax import losses
  from arsr_jax.data import pipeline
  from tfds_builders.synthetic_actions import generator
  c = _recipe("sosr_vdsr", "smoke")
  c.data.flow_source = "tvl1"
  clip = generator.render_clip(np.random.default_rng(7), generator.ClipSpec(frame_size=64, num_frames=4))
  pairs = np.concatenate([clip["hr"][:1], clip["hr"][1:2]], axis=-1).astype(np.float32) / 255
  flow = sr_steps.with_flow({"flow_frames": pairs}, pipeline.flow_fn(c.data))["flow"]
  w_tvl1 = np.asarray(losses.flow_magnitude(flow))[0]
  w_true = np.asarray(losses.flow_magnitude(clip["flow"][:1].astype(np.float32)))[0]
  moving, static = w_true > 0.5, clip["mask"][0] == 0
  assert w_tvl1[moving].mean() > 4 * w_tvl1[static].mean()
  assert np.corrcoef(w_tvl1.ravel(), w_true.ravel())[0, 1] > 0.5


@pytest.mark.slow
def test_ema_generator_follows_the_trained_one_and_is_evaluated(small_data_dir, tmp_path):
  c = _recipe("esrgan", "smoke,psnr", small_data_dir, num_steps=3, ema_decay=0.5)
  c.optimizer.warmup_steps = 0
  main.run(c, str(tmp_path))
  _, state = checkpointing.load_latest_state(str(tmp_path))
  trained, ema = weights.flatten(state["params"]["generator"]), weights.flatten(state["ema_params"])
  assert trained.keys() == ema.keys()
  assert any(not np.allclose(trained[k], ema[k]) for k in trained)  # lags behind, but is not the init
  c.mode = "eval"
  with_ema = main.run(c, str(tmp_path))
  assert with_ema["step"] == 3


def test_ema_update_rule_over_steps():
  c = _recipe("vdsr")
  c.model.num_layers, c.model.features = 2, 4
  c.optimizer.warmup_steps = 0
  b, b_frozen = sr_job.build(c)
  state = jax.jit(sr_steps.make_init_fn(dataclasses.replace(b, ema_decay=0.9), (1, 4, 4, 3)))(jax.random.key(0))
  step = sr_steps.make_train_step(dataclasses.replace(b, ema_decay=0.9))
  step = jax.jit(step)
  rng = np.random.default_rng(0)
  expected = weights.flatten(jax.device_get(state.params["generator"]))
  for _ in range(3):
    batch = {"lr": rng.uniform(size=(2, 4, 4, 3)).astype(np.float32),
             "hr": rng.uniform(size=(2, 16, 16, 3)).astype(np.float32),
             "flow": np.zeros((2, 16, 16, 2), np.float32)}
    state, _ = step(state, batch, {}, jax.random.key(1))
    current = weights.flatten(jax.device_get(state.params["generator"]))
    expected = {k: 0.9 * expected[k] + 0.1 * current[k] for k in current}
  got = weights.flatten(jax.device_get(state.ema_params))
  for k in expected:
    np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_init_from_an_unrolled_run_after_upgrade(small_data_dir, tmp_path):
  """A run written with per-block names (the unrolled nets before the scan change) is refused as
  train.init_from with one line naming the upgrade command; upgraded, it seeds a VDSR: its
  conv1..convN middle layers become the stacked 'body' parameters."""
  src = _recipe("vdsr", "smoke", small_data_dir, num_steps=2)
  src.model.num_layers, src.model.features = 4, 8
  main.run(src, str(tmp_path / "src"))
  _, source = checkpointing.load_latest_state(str(tmp_path / "src"))
  new = _recipe("vdsr", "smoke")
  new.model.num_layers, new.model.features = 4, 8
  b, _ = sr_job.build(new)
  write_old_layout(tmp_path / "src", tmp_path / "old", b.model)
  state = jax.jit(sr_steps.make_init_fn(b, (1, 8, 8, 3)))(jax.random.key(0))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with pytest.raises(ValueError, match="python -m arsr_jax.upgrade"):
    sr_job.init_from(state, str(tmp_path / "old"), device, b.model)
  upgrade.upgrade(tmp_path / "old")
  state = sr_job.init_from(state, str(tmp_path / "old"), device, b.model)
  assert "body" in state.params["generator"] and "conv1" not in state.params["generator"]
  lr = np.random.default_rng(0).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(b.model.apply({"params": state.params["generator"]}, lr),
                             b.model.apply({"params": source["params"]["generator"]}, lr), atol=1e-5)


@pytest.mark.slow
def test_resume_an_unrolled_run_after_upgrade(small_data_dir, tmp_path):
  """A run whose checkpoints predate the scan change (per-block names; same config keys) is refused
  with one line naming the upgrade command, nothing changed; after ``arsr_jax.upgrade`` its
  parameters, EMA and Adam moments are in the stacked layout and it resumes, then trains on."""
  src = _recipe("vdsr", "smoke", small_data_dir, num_steps=2)
  src.model.num_layers, src.model.features = 4, 8
  main.run(src, str(tmp_path / "src"))
  _, source = checkpointing.load_latest_state(str(tmp_path / "src"))
  new = _recipe("vdsr", "smoke", small_data_dir, num_steps=4)
  new.model.num_layers, new.model.features = 4, 8
  b, _ = sr_job.build(new)
  write_old_layout(tmp_path / "src", tmp_path / "old", b.model)
  old = tmp_path / "old"
  with pytest.raises(checkpointing.StateTreeMismatch, match=f"python -m arsr_jax.upgrade {old}"):
    main.run(new, str(old))
  assert checkpointing.steps(old / "checkpoints") == [2] and not (old / "damaged_checkpoints").exists()
  upgrade.upgrade(old)
  job = sr_job.sr_job(new)
  repl = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = checkpointing.abstract(jax.eval_shape(job.init_fn, jax.random.key(0)), repl)
  with checkpointing.manager(old, max_to_keep=3) as mngr:
    state, _ = checkpointing.restore_latest(mngr, abstract, None, strict=True)
  assert int(state.step) == 2 and "body" in state.params["generator"]
  mu = state.opt_state.inner_states["generator"].inner_state[0].mu["generator"]
  np.testing.assert_array_equal(mu["body"]["kernel"], source["opt_state"]["inner_states"]["generator"][
      "inner_state"][0]["mu"]["generator"]["body"]["kernel"])
  lr = np.random.default_rng(0).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(b.model.apply({"params": state.params["generator"]}, lr),
                             b.model.apply({"params": source["params"]["generator"]}, lr), atol=1e-5)
  main.run(new, str(old))  # resumes at step 2, trains to 4, evaluates
  step, latest = checkpointing.load_latest_state(str(old))
  assert step == 4 and "body" in latest["params"]["generator"] and "conv1" not in latest["params"]["generator"]


@pytest.mark.slow
def test_gan_terms_equal_the_four_pass_formulation():
  """_gan_terms reuses D(hr) for the generator's view; loss, gradients (discriminator parameters and SR
  frames) and BatchNorm state equal the textbook four discriminator passes."""
  import flax
  from arsr_jax import losses
  b, _ = sr_job.build(_recipe("esrgan"))
  disc, (g_fn, d_fn) = b.discriminator, losses.gan_losses(b.gan_type)
  rng = np.random.default_rng(0)
  hr, sr = (rng.uniform(size=(3, 32, 32, 3)).astype(np.float32) for _ in range(2))
  v = disc.init(jax.random.key(0), hr)
  params, state = v["params"], {k: x for k, x in v.items() if k != "params"}

  def run(p, x, s):
    return disc.apply({"params": p, **s}, x, train=True, mutable=list(s))

  def reference(p, x):
    fixed = jax.lax.stop_gradient(p)
    real_g, _ = run(fixed, hr, state)
    fake_g, _ = run(fixed, x, state)
    real_d, s = run(p, hr, state)
    fake_d, s = run(p, jax.lax.stop_gradient(x), s)
    return 0.1 * g_fn(jax.lax.stop_gradient(real_g), fake_g) + d_fn(real_d, fake_d), flax.core.unfreeze(s)

  def ours(p, x):
    loss, _, s = sr_steps._gan_terms(disc, p, state, x, hr, 0.0, {}, 0.1, (g_fn, d_fn))  # noqa: SLF001
    return loss, s
  (want, want_s), want_g = jax.value_and_grad(reference, (0, 1), has_aux=True)(params, sr)
  (got, got_s), got_g = jax.value_and_grad(ours, (0, 1), has_aux=True)(params, sr)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  for a, c in zip(jax.tree.leaves((got_g, got_s)), jax.tree.leaves((want_g, want_s))):
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7)


def test_spmc_phases_train_the_parts_the_paper_trains():
  """Tao et al. Sec. 4: phase 1 (stage1) trains the motion network alone through the warp loss,
  phase 2 (stage2) the detail fusion net with the motion frozen; the objective logs every term."""
  rng = np.random.default_rng(0)
  batch = {"lr": rng.uniform(size=(2, 3, 8, 8, 3)).astype(np.float32),
           "hr": rng.uniform(size=(2, 32, 32, 3)).astype(np.float32),
           "flow": np.zeros((2, 32, 32, 2), np.float32)}
  for variant, moved in (("smoke,stage1", {"motion"}), ("smoke,stage2", {"fusion"})):
    c = _recipe("spmc", variant)
    c.optimizer.warmup_steps = 0  # a first step with learning rate 0 would move nothing
    b, _ = sr_job.build(c)
    state = jax.jit(sr_steps.make_init_fn(b, (1, 3, 8, 8, 3)))(jax.random.key(0))
    new, metrics = jax.jit(sr_steps.make_train_step(b))(state, batch, {}, jax.random.key(1))
    assert {"sr", "mse", "warp", "smoothness"} <= set(metrics) and np.isfinite(metrics["loss"])
    changed = {part for part in ("motion", "fusion")
               if any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(state.params["generator"][part]),
                                                               jax.tree.leaves(new.params["generator"][part])))}
    assert changed == moved, variant
  with pytest.raises(ValueError, match="pick one"):
    config_lib.recipe("spmc", "stage1,stage2")
