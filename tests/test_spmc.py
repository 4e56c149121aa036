"""SPMC (Tao et al. ICCV 2017): the forward-splatting SPMC layer on analytic cases, its gradients,
the ConvLSTM's memory across frames, the luma path, the parameter count and the 'spmc' objective."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from arsr_jax import losses
from arsr_jax.media import degrade
from arsr_jax.models import spmc
from test_models_zoo import _jit  # XLA:CPU options that cut compile time


def _rand(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


@pytest.mark.parametrize("scale", [2, 4])
def test_zero_flow_is_zero_upsampling(scale):
  image = _rand((2, 3, 5, 2))
  out = np.asarray(spmc.splat(image, np.zeros((2, 3, 5, 2), np.float32), scale))
  expected = np.zeros((2, 3 * scale, 5 * scale, 2), np.float32)
  expected[:, ::scale, ::scale] = image  # LR (y, x) lands on HR (s*y, s*x), nothing else
  np.testing.assert_array_equal(out, expected)


def test_integer_shifts_move_the_splat_exactly_and_drop_what_leaves_the_frame():
  s, image = 4, _rand((1, 4, 4, 1), 1)
  flow = np.zeros((1, 4, 4, 2), np.float32)
  flow[..., 0], flow[..., 1] = 1.0, -1.0  # one LR pixel right and up: s HR pixels
  out = np.asarray(spmc.splat(image, flow, s))[0, ..., 0]
  expected = np.zeros((16, 16), np.float32)
  expected[0:12:4, 4:16:4] = image[0, 1:, :3, 0]  # row 0 and column 3 leave the frame
  np.testing.assert_array_equal(out, expected)
  flow[..., 0], flow[..., 1] = 3 / s, 1 / s  # HR-pixel shifts: (dx, dy) = (3, 1)
  out = np.asarray(spmc.splat(image, flow, s))[0, ..., 0]
  expected = np.zeros((16, 16), np.float32)
  expected[1::4, 3::4] = image[0, ..., 0]
  np.testing.assert_allclose(out, expected, atol=1e-6)


def test_half_pixel_flow_splits_the_weight():
  s = 2
  flow = np.zeros((1, 1, 1, 2), np.float32)
  flow[..., 0] = 0.5 / s  # half an HR pixel to the right
  out = np.asarray(spmc.splat(np.ones((1, 1, 1, 1), np.float32), flow, s))[0, ..., 0]
  np.testing.assert_allclose(out, [[0.5, 0.5], [0.0, 0.0]], atol=1e-7)
  flow[..., 1] = 0.5 / s  # and half down: four quarters
  out = np.asarray(spmc.splat(np.ones((1, 1, 1, 1), np.float32), flow, s))[0, ..., 0]
  np.testing.assert_allclose(out, [[0.25, 0.25], [0.25, 0.25]], atol=1e-7)
  # Two pixels landing on one HR pixel add up (no normalization, the paper's eq. 4).
  two = np.zeros((1, 1, 2, 2), np.float32)
  two[0, 0, 1, 0] = -1.0  # pixel (0, 1) moves onto pixel (0, 0)
  out = np.asarray(spmc.splat(np.asarray([[[[2.0], [3.0]]]], np.float32), two, s))[0, ..., 0]
  assert out[0, 0] == 5.0 and out.sum() == 5.0


def test_splat_gradients_match_finite_differences():
  s = 4
  rng = np.random.default_rng(3)
  image = rng.uniform(size=(1, 3, 3, 2)).astype(np.float32)
  # HR positions s*(x + u) with fractional parts in [0.3, 0.7]: +-eps stays inside one bilinear cell.
  flow = ((rng.integers(-1, 2, size=(1, 3, 3, 2)) + rng.uniform(0.3, 0.7, size=(1, 3, 3, 2))) / s).astype(np.float32)
  probe = rng.normal(size=(1, 12, 12, 2)).astype(np.float32)
  loss = lambda im, fl: jnp.sum(spmc.splat(im, fl, s) * probe)  # noqa: E731
  f = _jit(loss)
  g_image, g_flow = _jit(jax.grad(loss, argnums=(0, 1)))(image, flow)
  assert np.isfinite(g_image).all() and np.isfinite(g_flow).all()
  eps = 1e-2 / s  # 0.01 HR pixels
  for arr, grad, which in ((image, g_image, 0), (flow, g_flow, 1)):
    numeric = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
      hi, lo = arr.copy(), arr.copy()
      hi[idx] += eps
      lo[idx] -= eps
      args_hi = (hi, flow) if which == 0 else (image, hi)
      args_lo = (lo, flow) if which == 0 else (image, lo)
      numeric[idx] = (float(f(*args_hi)) - float(f(*args_lo))) / (2 * eps)
    np.testing.assert_allclose(np.asarray(grad), numeric, rtol=2e-2, atol=2e-2)
  assert np.abs(g_flow).max() > 0.1  # the flow does get a gradient


@functools.lru_cache(maxsize=None)
def _model_and_variables(luma=True, features=8, scale=4, k=3):
  model = spmc.SPMC(scale=scale, features=features, luma=luma)
  variables = _jit(lambda x: model.init(jax.random.key(0), x))(jnp.zeros((1, k, 8, 8, 3)))
  return model, variables


def test_shapes_padding_training_outputs_and_bad_windows():
  model, variables = _model_and_variables()
  clip = _rand((2, 3, 10, 9, 3), 4)  # LR not a multiple of 4: padded inside, output cropped
  out, sr = _jit(lambda v, x: (model.apply(v, x, train=True), model.apply(v, x)))(variables, clip)
  assert out["sr"].shape == (2, 40, 36, 3) and out["sr_steps"].shape == (2, 3, 40, 36, 3)
  assert out["lr_flow"].shape == (2, 3, 10, 9, 2)
  np.testing.assert_array_equal(out["sr"], out["sr_steps"][:, -1])
  np.testing.assert_allclose(sr, out["sr"], atol=1e-5)  # eval: the SR frame alone
  for bad in ((1, 2, 8, 8, 3), (1, 1, 8, 8, 3), (1, 8, 8, 3)):
    with pytest.raises(ValueError, match="K odd >= 3"):
      jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(bad)))


def test_convlstm_carries_earlier_frames_into_the_output():
  """Frame -1 (the first) reaches the last step's output only through the ConvLSTM state."""
  model, variables = _model_and_variables()
  clip = _rand((1, 3, 8, 8, 3), 5)
  other = clip.copy()
  other[:, 0] = _rand((1, 8, 8, 3), 6)
  run = _jit(lambda x: model.apply(variables, x, train=True))
  a, b = run(clip), run(other)
  assert np.abs(a["sr"] - b["sr"]).max() > 1e-4
  np.testing.assert_array_equal(a["lr_flow"][:, 1:], b["lr_flow"][:, 1:])  # only frame 0's flow changed
  # Each step's output: the bicubic-upsampled centre frame + a residual that needs no flow to exist.
  assert not np.allclose(a["sr_steps"][:, 0], a["sr_steps"][:, 2])


def test_luma_path_keeps_the_bicubic_chroma():
  x = _rand((4, 5, 3), 7)
  np.testing.assert_allclose(spmc.ycbcr_to_rgb(spmc.rgb_to_ycbcr(x)), x, atol=1e-5)
  model, variables = _model_and_variables()
  clip = _rand((1, 3, 8, 8, 3), 8)
  out = _jit(model.apply)(variables, clip)
  chroma = degrade.bicubic_upsample(spmc.rgb_to_ycbcr(jnp.asarray(clip[:, 1])), 4)[..., 1:]
  np.testing.assert_allclose(spmc.rgb_to_ycbcr(out)[..., 1:], chroma, atol=1e-5)


def _conv(k, cin, cout):
  return k * k * cin * cout + cout


def test_parameter_count_follows_table_1():
  """No published count exists; this is Table 1's layers counted by hand (luma: 1 channel in/out)."""
  coarse = _conv(5, 2, 24) + _conv(3, 24, 24) + _conv(5, 24, 24) + _conv(3, 24, 24) + _conv(3, 24, 32)
  fine = _conv(5, 5, 24) + 3 * _conv(3, 24, 24) + _conv(3, 24, 8)  # [I_i, I_0, flow (2), warped I_0]
  encoder = _conv(5, 1, 32) + _conv(3, 32, 64) + _conv(3, 64, 64) + _conv(3, 64, 128)
  lstm = _conv(3, 128 + 128, 4 * 128)
  decoder = (_conv(3, 128, 128) + _conv(4, 128, 64) + _conv(3, 64, 64) + _conv(4, 64, 32) + _conv(3, 32, 32)
             + _conv(5, 32, 1))
  expected = coarse + fine + encoder + lstm + decoder
  variables = jax.eval_shape(lambda: spmc.SPMC().init(jax.random.key(0), jnp.zeros((1, 3, 8, 8, 3))))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables)) == expected == 1_722_161


def test_freeze_motion_stops_the_sr_gradient_into_the_flow_network():
  model, variables = _model_and_variables()
  clip, hr = _rand((1, 3, 8, 8, 3), 9), _rand((1, 32, 32, 3), 10)

  def grads(params):
    def one(frozen):
      m = model.clone(freeze_motion=frozen)
      return jax.grad(lambda p: jnp.mean((m.apply({"params": p}, clip) - hr) ** 2))(params)
    return one(False), one(True)
  free, frozen = _jit(grads)(variables["params"])
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(free["motion"])) > 0
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(frozen["motion"]))
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(frozen["fusion"])) > 0


def _objective(**kw):
  cfg = ml_collections.ConfigDict({"name": "spmc", **kw})
  return losses.build_objective(cfg)[0]


def test_motion_loss_prefers_the_true_flow_and_penalizes_rough_flow():
  """Frame i = the reference moved 1 px right: F_i(p) = (-1, 0) maps it back (I_i(p) = I_0(p - e_x))."""
  ref = degrade.bicubic_upsample(jnp.asarray(_rand((1, 6, 6, 3), 11)), 4)[0]  # smooth 24x24
  lr = jnp.stack([jnp.roll(ref, 1, axis=1), ref, jnp.roll(ref, 1, axis=1)])[None]  # (1, 3, 24, 24, 3)
  true = jnp.zeros((1, 3, 24, 24, 2)).at[:, (0, 2), ..., 0].set(-1.0)
  terms = _jit(losses.spmc_motion_terms)
  right, wrong = terms(lr, true), terms(lr, -true)
  assert float(right["warp"]) < 0.25 * float(wrong["warp"])  # only the wrapped border column differs
  assert float(right["smoothness"]) == 0.0
  rough = true.at[:, 0, ::2, :, 1].add(0.5)
  assert float(terms(lr, rough)["smoothness"]) > 0
  g = _jit(jax.grad(lambda f: losses.spmc_motion_terms(lr, f)["warp"]))(true + 0.3)
  assert np.isfinite(g).all() and float(jnp.abs(g).max()) > 0


def test_spmc_objective_weights_steps_and_terms():
  rng = np.random.default_rng(12)
  steps = jnp.asarray(rng.uniform(size=(2, 3, 16, 16, 3)), jnp.float32)
  hr = jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)
  batch = {"hr": hr, "lr": jnp.asarray(rng.uniform(size=(2, 3, 4, 4, 3)), jnp.float32),
           "sr_steps": steps, "lr_flow": jnp.asarray(rng.normal(size=(2, 3, 4, 4, 2)), jnp.float32)}
  y = lambda x: (16.0 + x @ jnp.asarray([65.481, 128.553, 24.966])) / 255.0  # noqa: E731
  per_step = [float(jnp.mean((y(steps[:, i]) - y(hr)) ** 2)) for i in range(3)]
  loss, aux = _objective(step_weights=(0.0, 0.0, 1.0), flow_weight=0.5, smoothness_weight=0.1)(steps[:, -1], batch, {})
  assert float(aux["sr"]) == pytest.approx(per_step[2], rel=1e-5)
  assert float(loss) == pytest.approx(per_step[2] + 0.5 * (float(aux["warp"]) + 0.1 * float(aux["smoothness"])),
                                      rel=1e-5)
  _, aux = _objective()(steps[:, -1], batch, {})  # default: kappa_i = 1/K
  assert float(aux["sr"]) == pytest.approx(np.mean(per_step), rel=1e-5)
  with pytest.raises(ValueError, match="3 weights"):
    _objective(step_weights=(1.0, 1.0))(steps[:, -1], batch, {})
  with pytest.raises(ValueError, match="model.name='spmc'"):
    _objective()(steps[:, -1], {"hr": hr, "lr": batch["lr"]}, {})
