"""SR models and losses: shapes, parameter counts, analytic loss cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsr_jax import losses, models
from arsr_jax.media import degrade


def _num_params(variables):
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


def test_vdsr_shape_and_parameter_count():
  model = models.build_model("vdsr", 4)
  lr = jnp.zeros((2, 12, 10, 3))
  variables = model.init(jax.random.key(0), lr)
  assert model.apply(variables, lr).shape == (2, 48, 40, 3)
  # 3->64 conv, 18 x (64->64), 64->3: 1,792 + 18 * 36,928 + 1,731 (the paper's ~0.67 M).
  assert _num_params(variables) == 668_227


def test_vdsr_starts_near_bicubic():
  model = models.build_model("vdsr", 4)
  lr = jax.random.uniform(jax.random.key(1), (1, 8, 8, 3))
  sr = model.apply(model.init(jax.random.key(0), lr), lr)
  np.testing.assert_allclose(sr, degrade.bicubic_upsample(lr, 4), atol=2e-2)


def test_bicubic_model_has_no_parameters_and_upsamples():
  model = models.build_model("bicubic", 2)
  lr = jnp.full((1, 4, 4, 3), 0.5)
  variables = model.init(jax.random.key(0), lr)
  assert not jax.tree.leaves(variables)
  np.testing.assert_allclose(model.apply(variables, lr), 0.5, atol=1e-6)


def test_build_model_rejects_unknown_names_and_options():
  with pytest.raises(ValueError, match="Unknown model 'vdsrr'"):
    models.build_model("vdsrr", 4)
  with pytest.raises(ValueError, match="no option"):
    models.build_model("vdsr", 4, num_layer=3)


def test_bicubic_downsample_of_constant_is_constant_and_checks_divisibility():
  x = np.full((2, 16, 16, 3), 77, np.uint8)
  y = degrade.bicubic_downsample(x, 4)
  assert y.shape == (2, 4, 4, 3) and y.dtype == np.uint8 and (y == 77).all()
  with pytest.raises(ValueError, match="not divisible"):
    degrade.bicubic_downsample(np.zeros((10, 10, 3), np.uint8), 4)


def test_resize_flow_rescales_vectors():
  flow = np.zeros((8, 8, 2), np.float32) + np.float32([1.0, -2.0])
  out = degrade.resize_flow(flow, 16, 32)
  np.testing.assert_allclose(out[4, 4], [4.0, -4.0], atol=1e-5)


def test_wmse_equals_mse_for_uniform_unit_weights():
  k1, k2 = jax.random.split(jax.random.key(0))
  pred, target = jax.random.uniform(k1, (2, 8, 8, 3)), jax.random.uniform(k2, (2, 8, 8, 3))
  np.testing.assert_allclose(losses.weighted_mse(pred, target, jnp.ones((2, 8, 8))),
                             losses.mse(pred, target), rtol=1e-6)
  np.testing.assert_allclose(losses.weighted_mse(pred, target, jnp.full((2, 8, 8), 3.0)),
                             3 * losses.mse(pred, target), rtol=1e-6)


def test_sosr_loss_ignores_static_pixels_and_weights_by_flow_magnitude():
  objective, frozen = losses.build_objective(_loss_cfg("sosr"))
  assert frozen == {}
  hr = jnp.zeros((1, 4, 4, 3))
  flow = jnp.zeros((1, 4, 4, 2)).at[0, 1, 2].set(jnp.array([3.0, 4.0]))  # |flow| = 5 at one pixel
  static_error = hr.at[0, 0, 0].set(1.0)  # error where nothing moves
  loss, _ = objective(static_error, {"hr": hr, "flow": flow}, frozen)
  assert float(loss) == 0.0
  moving_error = hr.at[0, 1, 2].set(jnp.array([1.0, 0.0, 0.0]))
  loss, aux = objective(moving_error, {"hr": hr, "flow": flow}, frozen)
  np.testing.assert_allclose(loss, 5.0 * 1.0 / (4 * 4 * 3), rtol=1e-6)
  np.testing.assert_allclose(aux["mse"], 1.0 / 48, rtol=1e-6)


def test_unknown_loss_fails_clearly():
  with pytest.raises(ValueError, match="Unknown loss"):
    losses.build_objective(_loss_cfg("wmsee"))


def _loss_cfg(name):
  import ml_collections
  return ml_collections.ConfigDict({"name": name, "perceptual_weight": 0.0})


def test_tosr_warp_terms_vanish_for_a_static_scene_and_for_exact_motion():
  fn = losses.pixel_loss("mse")
  frame = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
  static = jnp.stack([frame, frame], axis=1)  # (B, 2, H, W, C)
  terms = losses.tosr_terms(static, static, jnp.zeros((1, 16, 16, 2)), fn)
  assert float(terms["consistency"]) == 0.0 and float(terms["warp_hr"]) == 0.0
  # Frame t+1 is frame t moved right by 2 px: flow t -> t+1 is u = +2 everywhere.
  moved = jnp.roll(frame, 2, axis=2)
  pair = jnp.stack([frame, moved], axis=1)
  flow = jnp.zeros((1, 16, 16, 2)).at[..., 0].set(2.0)
  terms = losses.tosr_terms(pair, pair, flow, fn)
  assert float(terms["consistency"]) < 1e-10  # out-of-frame samples are masked
  wrong = losses.tosr_terms(pair, pair, -flow, fn)
  assert float(wrong["consistency"]) > 1e-3


def test_tosr_objective_weights_and_shape_check():
  import ml_collections
  cfg = ml_collections.ConfigDict({"name": "tosr", "pixel": "huber", "delta": 0.01, "a": 1.0, "b": 2.0, "c": 3.0})
  objective, frozen = losses.build_objective(cfg)
  k1, k2 = jax.random.split(jax.random.key(1))
  sr, hr = jax.random.uniform(k1, (2, 2, 8, 8, 3)), jax.random.uniform(k2, (2, 2, 8, 8, 3))
  flow = jnp.ones((2, 8, 8, 2))
  loss, terms = objective(sr, {"hr": hr, "flow": flow}, frozen)
  np.testing.assert_allclose(loss, terms["content"] + 2 * terms["consistency"] + 3 * terms["warp_hr"], rtol=1e-6)
  with pytest.raises(ValueError, match="siamese pairs"):
    objective(sr[:, 0], {"hr": hr[:, 0], "flow": flow}, frozen)


def test_pixel_losses_against_closed_forms():
  pred, target = jnp.array([0.0, 0.005, 0.5]), jnp.zeros(3)
  np.testing.assert_allclose(losses.huber(pred, target, delta=0.01),
                             np.mean([0.0, 0.5 * 0.005 ** 2, 0.01 * (0.5 - 0.005)]), rtol=1e-6)
  np.testing.assert_allclose(losses.charbonnier(pred, target, eps=1e-3),
                             np.mean(np.sqrt(np.array([0.0, 0.005, 0.5]) ** 2 + 1e-6)), rtol=1e-6)
  np.testing.assert_allclose(losses.l1(pred, target), 0.505 / 3, rtol=1e-6)


def test_relativistic_gan_losses():
  real, fake = jnp.array([3.0, 2.0]), jnp.array([-1.0, 0.0])
  # A discriminator that separates real from fake well has a small loss; the generator a large one.
  assert float(losses.relativistic_discriminator_loss(real, fake)) < 0.1
  assert float(losses.relativistic_generator_loss(real, fake)) > 2.0
  # Symmetry: swapping roles swaps the losses.
  np.testing.assert_allclose(losses.relativistic_discriminator_loss(fake, real),
                             losses.relativistic_generator_loss(real, fake), rtol=1e-6)
