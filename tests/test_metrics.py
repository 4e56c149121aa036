"""PSNR / SSIM on Y against analytic cases."""

import jax.numpy as jnp
import numpy as np

from arsr_jax.metrics import image as image_metrics


def test_rgb_to_y_matches_bt601_range():
  np.testing.assert_allclose(image_metrics.rgb_to_y(jnp.zeros((3,))), 16.0)
  np.testing.assert_allclose(image_metrics.rgb_to_y(jnp.ones((3,))), 235.0, atol=1e-3)


def test_psnr_of_known_error():
  target = jnp.full((1, 8, 8, 3), 0.5)
  # A uniform gray offset of d/255 in RGB shifts Y by d * 219/255.
  pred = target + 10 / 255
  expected = 10 * np.log10(255 ** 2 / (10 * 219 / 255) ** 2)
  np.testing.assert_allclose(image_metrics.psnr_y(pred, target), [expected], rtol=1e-4)


def test_psnr_border_and_mask():
  target = jnp.zeros((1, 8, 8, 3))
  pred = target.at[0, 0, :].set(1.0)  # error only on the top row
  assert np.isfinite(image_metrics.psnr_y(pred, target)[0])
  assert image_metrics.psnr_y(pred, target, border=1)[0] > 90  # cropped away
  mask = jnp.zeros((1, 8, 8), bool).at[0, 4:, :].set(True)
  assert image_metrics.psnr_y(pred, target, mask=mask)[0] > 90  # error outside the mask
  assert np.isnan(image_metrics.psnr_y(pred, target, mask=jnp.zeros((1, 8, 8), bool))[0])


def test_ssim_identity_and_degradation():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32)
  np.testing.assert_allclose(image_metrics.ssim_y(x, x), [1.0, 1.0], atol=1e-5)
  noisy = jnp.clip(x + 0.2 * jnp.asarray(rng.normal(size=x.shape), jnp.float32), 0, 1)
  s = image_metrics.ssim_y(noisy, x)
  assert (s < 0.9).all() and (s > -1).all()
  mask = jnp.zeros((2, 32, 32), bool).at[:, 10:20, 10:20].set(True)
  assert np.isfinite(image_metrics.ssim_y(noisy, x, mask=mask)).all()


def test_ssim_matches_reference_formula_on_constant_images():
  # For constant images the SSIM reduces to the luminance term (2 mx my + C1) / (mx^2 + my^2 + C1).
  a, b = jnp.full((1, 16, 16, 3), 0.4), jnp.full((1, 16, 16, 3), 0.6)
  ya, yb = float(image_metrics.rgb_to_y(image_metrics.quantize(a))[0, 0, 0]), float(image_metrics.rgb_to_y(image_metrics.quantize(b))[0, 0, 0])
  c1 = (0.01 * 255) ** 2
  expected = (2 * ya * yb + c1) / (ya ** 2 + yb ** 2 + c1)
  np.testing.assert_allclose(image_metrics.ssim_y(a, b), [expected], rtol=1e-4)
