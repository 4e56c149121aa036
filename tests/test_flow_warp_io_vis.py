"""Backward warping, .flo files, TSN quantisation, colour wheel, temporal profiles, PNGs."""

import colorsys
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from PIL import Image

from arsr_jax.flow import (dequantize_flow, flow_to_color, quantize_flow, read_flo, resize_flow,
                           save_png, temporal_profile, warp, write_flo)

FLOW_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flow"


def numpy_backward_warp(image, flow, mode):
  """Independent bilinear reference: out[y, x] = image at (x + u, y + v)."""
  h, w = image.shape[:2]
  out = np.zeros(image.shape, np.float64)
  for y in range(h):
    for x in range(w):
      sx, sy = x + flow[y, x, 0], y + flow[y, x, 1]
      if mode == "nearest":  # edge extension == clamping the sample point
        sx, sy = min(max(sx, 0), w - 1), min(max(sy, 0), h - 1)
      x0, y0 = int(np.floor(sx)), int(np.floor(sy))
      fx, fy = sx - x0, sy - y0
      for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
          if 0 <= yy < h and 0 <= xx < w and wx * wy:
            out[y, x] += wy * wx * image[yy, xx]
  return out


@pytest.mark.parametrize("mode", ["nearest", "constant"])
def test_warp_matches_numpy_bilinear(mode):
  rng = np.random.default_rng(0)
  image = rng.random((2, 9, 11, 3)).astype(np.float32)
  flow = rng.uniform(-3, 3, (2, 9, 11, 2)).astype(np.float32)
  warped, valid = warp(image, flow, mode=mode, return_mask=True)
  for i in range(2):
    np.testing.assert_allclose(warped[i], numpy_backward_warp(image[i], flow[i], mode), atol=1e-5)
  ys, xs = np.mgrid[0:9, 0:11]
  inside = ((xs + flow[..., 0] >= 0) & (xs + flow[..., 0] <= 10)
            & (ys + flow[..., 1] >= 0) & (ys + flow[..., 1] <= 8))
  np.testing.assert_array_equal(valid, inside)


def test_warp_reconstructs_frame_from_next():
  """warp(frame[t + 1], flow[t]) == frame[t] for an integer translation, inside the frame."""
  rng = np.random.default_rng(1)
  frame1 = rng.random((1, 10, 12, 1)).astype(np.float32)
  frame0 = np.roll(frame1, (1, 2), axis=(1, 2))  # frame0[y, x] = frame1[y - 1, x - 2]
  flow = np.broadcast_to(np.float32([-2, -1]), (1, 10, 12, 2))
  np.testing.assert_allclose(warp(frame1, flow)[:, 1:, 2:], frame0[:, 1:, 2:], atol=1e-6)


def test_warp_gradients():
  rng = np.random.default_rng(2)
  image = jnp.asarray(rng.random((1, 5, 6, 2)), jnp.float32)
  # Sample points at fractional offsets 0.2-0.8: bilinear interpolation is smooth there.
  flow = jnp.asarray(rng.integers(-1, 2, (1, 5, 6, 2)) + rng.uniform(0.2, 0.8, (1, 5, 6, 2)),
                     jnp.float32)
  check_grads(jax.jit(lambda im, f: warp(im, f, mode="nearest")), (image, flow), order=1, modes=["rev"],
              eps=1e-3, atol=2e-2, rtol=2e-2)
  grad = jax.grad(lambda f: warp(image, f).sum())(flow)
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_flo_round_trip_and_header(tmp_path):
  flow = np.random.default_rng(0).normal(size=(7, 5, 2)).astype(np.float32)
  path = tmp_path / "a.flo"
  write_flo(path, flow)
  data = path.read_bytes()
  assert data[:4] == b"PIEH" and len(data) == 12 + 7 * 5 * 8
  assert np.frombuffer(data[4:12], "<i4").tolist() == [5, 7]  # width, height
  np.testing.assert_array_equal(read_flo(path), flow)


def test_flo_reads_flyingchairs_ground_truth():
  gt = sorted((FLOW_DATA / "flyingchairs").glob("*-gt.flo"))
  if not gt:
    pytest.skip("FlyingChairs data not found")
  flow = read_flo(gt[0])
  assert flow.shape == (384, 512, 2) and flow.dtype == np.float32 and np.all(np.isfinite(flow))


@pytest.mark.parametrize("corrupt,message", [
    (lambda d: b"PIEX" + d[4:], "bad .flo magic"),
    (lambda d: d[:-9], "truncated"),
    (lambda d: d + b"\0" * 8, "trailing bytes"),
    (lambda d: d[:4] + np.asarray([-3, 7], "<i4").tobytes() + d[12:], "implausible .flo size"),
    (lambda d: d[:4] + np.asarray([10**9, 10**9], "<i4").tobytes() + d[12:], "implausible"),
    (lambda d: d[:6], "not a .flo file"),
])
def test_flo_corrupt_files_raise_naming_the_file(tmp_path, corrupt, message):
  path = tmp_path / "bad.flo"
  write_flo(path, np.zeros((7, 5, 2), np.float32))
  path.write_bytes(corrupt(path.read_bytes()))
  with pytest.raises(ValueError, match=message) as info:
    read_flo(path)
  assert str(path) in str(info.value)


def test_write_flo_rejects_bad_shapes(tmp_path):
  with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
    write_flo(tmp_path / "x.flo", np.zeros((4, 4, 3)))


def test_quantization_round_trip():
  flow = np.linspace(-20, 20, 2001, dtype=np.float32)
  q = quantize_flow(flow)
  assert q.dtype == np.uint8 and q[0] == 0 and q[-1] == 255 and quantize_flow(np.float32(0)) == 128
  assert np.abs(dequantize_flow(q) - flow).max() <= 40 / 255 / 2 + 1e-5
  np.testing.assert_array_equal(quantize_flow(np.float32([-35, 50])), [0, 255])  # clipped
  np.testing.assert_array_equal(np.asarray(quantize_flow(jnp.asarray(flow))), q)  # JAX in, JAX out
  assert isinstance(dequantize_flow(jnp.asarray(q)), jax.Array)
  np.testing.assert_array_equal(quantize_flow(flow, bound=10)[[0, -1]], [0, 255])


def test_resize_flow_rescales_vectors():
  flow = np.broadcast_to(np.float32([1.5, -2.0]), (8, 6, 2))
  out = resize_flow(flow, 16, 12)
  assert out.shape == (16, 12, 2)
  np.testing.assert_allclose(out, np.broadcast_to([3.0, -4.0], (16, 12, 2)), atol=1e-5)


def _hue(rgb):
  return colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255))[0] * 360


def test_color_wheel_zero_white_and_direction_hue():
  flow = np.zeros((2, 3, 2), np.float32)
  flow[0, 0], flow[0, 1], flow[0, 2] = (1, 0), (0, 1), (-1, 0)
  flow[1, 0], flow[1, 1] = (0, -1), (0.5, 0)
  img = flow_to_color(flow)
  assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
  np.testing.assert_array_equal(img[1, 2], [255, 255, 255])  # zero flow: white
  np.testing.assert_array_equal(img[0, 0], [255, 0, 0])  # +x: red
  assert 40 < _hue(img[0, 1]) < 70  # +y (down): yellow-orange
  assert 180 < _hue(img[0, 2]) < 210  # -x: sky blue
  assert 250 < _hue(img[1, 0]) < 290  # -y (up): violet
  assert _hue(img[1, 1]) == _hue(img[0, 0]) and img[1, 1, 1] > 100  # same hue, paler at half speed
  # Hue turns steadily with the direction (colour wheel, not random colours).
  angles = np.linspace(0.1, 2 * np.pi - 0.1, 24)
  ring = flow_to_color(np.stack([np.cos(angles), np.sin(angles)], -1)[None])[0]
  hues = np.unwrap(np.deg2rad([_hue(c) for c in ring]))
  assert np.all(np.diff(hues) > 0) or np.all(np.diff(hues) < 0)


def test_color_wheel_batch_unknown_and_max_flow():
  flow = np.zeros((2, 4, 4, 2), np.float32)
  flow[0, 0, 0] = (np.nan, 0)
  flow[1, 0, 0] = (4, 0)
  img = flow_to_color(flow, max_flow=8)
  assert img.shape == (2, 4, 4, 3)
  np.testing.assert_array_equal(img[0, 0, 0], [0, 0, 0])  # unknown: black
  assert 100 < img[1, 0, 0, 1] < 160  # half of max_flow: half saturated red
  with pytest.raises(ValueError):
    flow_to_color(np.zeros((4, 4, 3)))


def test_temporal_profile_and_png(tmp_path):
  frames = np.random.default_rng(0).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
  profile = temporal_profile(frames, row=2)
  assert profile.shape == (5, 7, 3) and profile.dtype == np.uint8
  np.testing.assert_array_equal(profile, frames[:, 2])
  grey = temporal_profile(frames[..., 0], row=-1)
  np.testing.assert_array_equal(grey, np.repeat(frames[:, -1, :, :1], 3, -1))
  with pytest.raises(ValueError, match="row 6"):
    temporal_profile(frames, row=6)
  save_png(tmp_path / "p.png", profile)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.png")), profile)
  save_png(tmp_path / "f.png", np.full((3, 4), 0.5, np.float32))
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "f.png")), np.full((3, 4), 128))
