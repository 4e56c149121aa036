"""TV-L1 in JAX: accuracy on synthetic motion and FlyingChairs, agreement with OpenCV, API, CLI.

Compilation dominates the run time here, so tests share a few parameter sets
and frame sizes (one compilation each).
"""

import concurrent.futures
import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from arsr_jax import sharding as arsr_sharding
from arsr_jax.media.video import write_video
from arsr_jax.flow import __main__ as flow_cli
from arsr_jax.flow import dequantize_flow, ops, read_flo, tvl1
from arsr_jax.flow.tvl1 import TVL1Params, tvl1_flow

FLOW_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flow"
SMALL = TVL1Params(nscales=2)  # 64x64 synthetic pairs: displacements up to ~2 px
TINY = TVL1Params(nscales=1, warps=2, inner_iterations=10, outer_iterations=3)
TINY_FLAGS = ["--nscales", "1", "--warps", "2", "--inner-iterations", "10", "--outer-iterations", "3"]

try:
  import cv2
  cv2.optflow.DualTVL1OpticalFlow_create  # noqa: B018
except (ImportError, AttributeError):
  cv2 = None
needs_cv2 = pytest.mark.skipif(cv2 is None, reason="cv2.optflow (opencv-contrib) not installed")


def opencv_tvl1(p: TVL1Params):
  kwargs = dict(tau=p.tau, lambda_=p.lambda_, theta=p.theta, nscales=p.nscales, warps=p.warps,
                epsilon=p.epsilon, outerIterations=p.outer_iterations, scaleStep=p.scale_step,
                gamma=p.gamma, medianFiltering=p.median_filtering)
  try:  # OpenCV 5 spells it with three n's
    return cv2.optflow.DualTVL1OpticalFlow_create(**kwargs, innnerIterations=p.inner_iterations)
  except (cv2.error, TypeError):
    return cv2.optflow.DualTVL1OpticalFlow_create(**kwargs, innerIterations=p.inner_iterations)


def texture(x, y, seed=0):
  """Smooth texture (12 plane waves, wavelengths 6-24 px) at any (x, y), in [0, 255]."""
  rng = np.random.default_rng(seed)
  img = np.zeros_like(x, dtype=np.float64)
  for _ in range(12):
    wavelength, angle, phase = rng.uniform(6, 24), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    img += np.sin(2 * np.pi / wavelength * (x * np.cos(angle) + y * np.sin(angle)) + phase)
  return np.clip(128 + 15 * img, 0, 255)


def epe(flow, gt, margin=0):
  err = np.linalg.norm(np.asarray(flow, np.float64) - gt, axis=-1)
  return float(err[margin:err.shape[0] - margin, margin:err.shape[1] - margin].mean())


@functools.lru_cache(maxsize=None)
def synthetic_pairs(size=64):
  """Frames (2, S, S) float in [0, 1] and exact flows (2, S, S, 2): translation, 3 deg rotation."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float64)
  shift = (1.5, -0.7)
  c, a = (size - 1) / 2, np.deg2rad(3.0)
  # frame1(p) = frame0(q) where q maps to p: translation q = p - t, rotation q = R^-1 (p - c) + c.
  rot_x = np.cos(a) * (x - c) + np.sin(a) * (y - c) + c
  rot_y = -np.sin(a) * (x - c) + np.cos(a) * (y - c) + c
  frame0 = np.stack([texture(x, y)] * 2)
  frame1 = np.stack([texture(x - shift[0], y - shift[1]), texture(rot_x, rot_y)])
  gt_shift = np.broadcast_to(np.asarray(shift), (size, size, 2))
  fwd_x = np.cos(a) * (x - c) - np.sin(a) * (y - c) + c
  fwd_y = np.sin(a) * (x - c) + np.cos(a) * (y - c) + c
  gt_rot = np.stack([fwd_x - x, fwd_y - y], axis=-1)
  return (frame0 / 255).astype(np.float32), (frame1 / 255).astype(np.float32), np.stack([gt_shift, gt_rot])


@functools.lru_cache(maxsize=None)
def synthetic_flow():
  frame0, frame1, _ = synthetic_pairs()
  return np.asarray(tvl1_flow(frame0, frame1, SMALL))


@pytest.mark.parametrize("index,name", [(0, "translation (1.5, -0.7)"), (1, "rotation 3 deg")])
def test_synthetic_motion_recovered(index, name):
  _, _, gt = synthetic_pairs()
  flow = synthetic_flow()
  assert flow.shape == (2, 64, 64, 2) and flow.dtype == np.float32
  assert epe(flow[index], gt[index], margin=8) < 0.1, name
  assert epe(flow[index], gt[index], margin=8) < 0.1 * epe(0 * gt[index], gt[index], margin=8)


def test_float16_storage_keeps_the_flow():
  """``storage='float16'`` (p and the data term stored in 16 bits between steps) is a small
  perturbation: same accuracy on the synthetic motions, flow within a few hundredths of a pixel."""
  frame0, frame1, gt = synthetic_pairs()
  ours = synthetic_flow()
  half = np.asarray(tvl1_flow(frame0, frame1, dataclasses.replace(SMALL, storage="float16")))
  assert half.dtype == np.float32
  for i in range(2):
    assert epe(half[i], gt[i], margin=8) < epe(ours[i], gt[i], margin=8) + 0.01
    assert 0 < epe(half[i], ours[i]) < 0.05  # really stored in 16 bits, and close


@needs_cv2
def test_synthetic_motion_like_opencv():
  frame0, frame1, gt = synthetic_pairs()
  flow = synthetic_flow()
  for i in range(2):
    theirs = opencv_tvl1(SMALL).calc(frame0[i], frame1[i], None)
    assert epe(flow[i], theirs) < 0.01
    assert epe(flow[i], gt[i], margin=8) <= epe(theirs, gt[i], margin=8) + 0.005


def test_uint8_rgb_and_float_inputs_agree():
  frame0, frame1, _ = synthetic_pairs()
  as_uint8 = lambda f: np.round(f * 255).astype(np.uint8)
  rgb0 = np.repeat(as_uint8(frame0)[..., None], 3, axis=-1)  # grey RGB -> the same grey
  rgb1 = np.repeat(as_uint8(frame1)[..., None], 3, axis=-1)
  from_rgb = np.asarray(tvl1_flow(rgb0, rgb1, SMALL))
  from_grey = np.asarray(tvl1_flow(as_uint8(frame0)[..., None], as_uint8(frame1)[..., None], SMALL))
  from_float = np.asarray(tvl1_flow(as_uint8(frame0) / 255.0, as_uint8(frame1) / 255.0, SMALL))
  np.testing.assert_array_equal(from_rgb, from_grey)
  np.testing.assert_allclose(from_float, from_grey, atol=2e-3)


def test_rgb_to_grey_like_opencv():
  rgb = np.random.default_rng(0).integers(0, 256, (1, 4, 5, 3), dtype=np.uint8)
  grey = np.asarray(tvl1._to_gray255(jnp.asarray(rgb)))
  if cv2 is not None:
    np.testing.assert_array_equal(grey[0], cv2.cvtColor(rgb[0], cv2.COLOR_RGB2GRAY))
  np.testing.assert_allclose(grey, np.round(rgb @ [0.299, 0.587, 0.114]), atol=1)


@needs_cv2
def test_matches_opencv_with_gamma_and_3x3_median():
  """Same algorithm, same border rules: OpenCV and JAX agree to float rounding on a small case."""
  params = TVL1Params(nscales=1, warps=2, inner_iterations=10, outer_iterations=3, gamma=0.1,
                      median_filtering=3)
  y, x = np.mgrid[0:40, 0:52].astype(np.float64)
  frame0 = (texture(x, y, seed=1) / 255).astype(np.float32)
  frame1 = (texture(x - 1, y - 0.5, seed=1) * 1.05 / 255).astype(np.float32)
  ours = np.asarray(tvl1_flow(frame0[None], frame1[None], params))[0]
  theirs = opencv_tvl1(params).calc(frame0, frame1, None)
  assert epe(ours, theirs) < 1e-3


@pytest.mark.slow
@needs_cv2
def test_flyingchairs_epe_like_opencv():
  chairs = sorted((FLOW_DATA / "flyingchairs").glob("*-gt.flo"))
  if not chairs:
    pytest.skip(f"FlyingChairs pairs not found under {FLOW_DATA}")
  # Fewer scales/warps/iterations than the defaults keep the test fast; both sides use the same.
  params = TVL1Params(nscales=3, warps=1, outer_iterations=3)
  grey, gts = [], []
  for gt_path in chairs:
    stem = str(gt_path)[:-len("-gt.flo")]
    grey.append([np.asarray(Image.open(f"{stem}-img{k}.ppm").convert("L")) for k in (0, 1)])
    gts.append(read_flo(gt_path))
  with concurrent.futures.ThreadPoolExecutor(1) as pool:  # OpenCV runs while JAX compiles
    theirs = pool.submit(lambda: [opencv_tvl1(params).calc(g0, g1, None) for g0, g1 in grey])
    ours = np.asarray(tvl1_flow(np.stack([g[0] for g in grey]), np.stack([g[1] for g in grey]), params))
    theirs = theirs.result()
  for i, gt in enumerate(gts):
    e_jax, e_cv, e_zero = epe(ours[i], gt), epe(theirs[i], gt), epe(0 * gt, gt)
    print(f"{chairs[i].name}: EPE jax {e_jax:.3f} opencv {e_cv:.3f} zero {e_zero:.3f}")
    assert e_jax <= 1.1 * e_cv
    assert e_jax < 0.9 * e_zero
    assert epe(ours[i], theirs[i]) < 0.25  # the two flows themselves are close
  mean = lambda f: np.mean([f(i, gt) for i, gt in enumerate(gts)])
  assert mean(lambda i, gt: epe(ours[i], gt)) < 0.75 * mean(lambda i, gt: epe(0 * gt, gt))


def test_params_defaults_and_config():
  p = TVL1Params()
  assert (p.tau, p.lambda_, p.theta, p.nscales, p.warps, p.epsilon) == (0.25, 0.15, 0.3, 5, 5, 0.01)
  assert (p.inner_iterations, p.outer_iterations, p.scale_step, p.gamma, p.median_filtering) == (
      30, 10, 0.8, 0.0, 5)
  assert p.storage == "float32"  # OpenCV's precision; 'float16' is opt-in
  assert TVL1Params.from_config({"lambda": 0.1, "warps": 3}) == TVL1Params(lambda_=0.1, warps=3)
  cfg = ml_collections.ConfigDict({"tau": 0.2, "median_filtering": 3})
  assert TVL1Params.from_config(cfg) == dataclasses.replace(p, tau=0.2, median_filtering=3)
  with pytest.raises(ValueError, match="unknown keys.*'warp'"):
    TVL1Params.from_config({"warp": 3})
  for bad in [dict(scale_step=1.0), dict(median_filtering=4), dict(warps=0), dict(nscales=2.5),
              dict(storage="bfloat16")]:
    with pytest.raises(ValueError):
      TVL1Params(**bad)
  with pytest.raises(dataclasses.FrozenInstanceError):
    p.tau = 0.1


def test_pyramid_shapes_follow_opencv():
  assert tvl1.pyramid_shapes(240, 320) == [(240, 320), (192, 256), (154, 205), (123, 164), (98, 131)]
  assert tvl1.pyramid_shapes(32, 32) == [(32, 32), (26, 26), (21, 21), (17, 17)]  # 14 < 16 dropped
  with pytest.raises(ValueError, match="at least 16x16"):
    tvl1.pyramid_shapes(12, 64)


def test_input_errors():
  ok = np.zeros((1, 32, 32), np.uint8)
  with pytest.raises(ValueError, match="different shapes"):
    tvl1_flow(ok, np.zeros((1, 32, 33), np.uint8))
  with pytest.raises(ValueError, match="at least 16x16"):
    tvl1_flow(np.zeros((1, 8, 8), np.uint8), np.zeros((1, 8, 8), np.uint8))
  with pytest.raises(ValueError, match="NaN or infinite"):
    bad = np.zeros((1, 32, 32), np.float32)
    bad[0, 3, 3] = np.nan
    tvl1_flow(bad, bad.copy())
  with pytest.raises(ValueError, match=r"expected frames \(N, H, W\)"):
    tvl1_flow(np.zeros((32, 32)), np.zeros((32, 32)))
  with pytest.raises(ValueError, match="mix integer and float"):
    tvl1_flow(ok, ok.astype(np.float32))


@pytest.mark.slow
def test_non_finite_device_frames_give_nan_flow_without_a_host_sync():
  """jax.Array input is not checked on the host (that would block); its bad pair's flow is NaN."""
  frames = np.zeros((2, 32, 32), np.float32)
  frames[0, 3, 3] = np.inf
  flow = np.asarray(jax.jit(functools.partial(tvl1_flow, params=TINY))(jnp.asarray(frames), jnp.asarray(frames)))
  assert np.isnan(flow[0]).all() and np.isfinite(flow[1]).all()
  eager = np.asarray(tvl1_flow(jnp.asarray(frames), jnp.asarray(frames), TINY))  # no ValueError, no sync
  assert np.isnan(eager[0]).all() and np.isfinite(eager[1]).all()


@pytest.mark.slow
@needs_cv2
def test_building_blocks_match_opencv():
  rng = np.random.default_rng(0)
  img = (rng.random((3, 23, 31)) * 255).astype(np.float32)
  for size in (3, 5):
    ours = np.asarray(jax.jit(tvl1.median_filter, static_argnums=1)(img, size))
    np.testing.assert_array_equal(ours, np.stack([cv2.medianBlur(i, size) for i in img]))
    shifted = jax.jit(functools.partial(ops._median, size=size, shifted=True))(img)  # the accelerators' form
    np.testing.assert_array_equal(np.asarray(shifted), ours)
  ours = np.asarray(jax.jit(tvl1.resize_bilinear, static_argnums=(1, 2, 3))(img[0], 18, 25, 1.25))
  np.testing.assert_allclose(ours, cv2.resize(img[0], None, fx=0.8, fy=0.8), atol=1e-3)
  u, v = (rng.uniform(-4, 4, (23, 31)).astype(np.float32) for _ in range(2))
  yy, xx = np.mgrid[0:23, 0:31].astype(np.float32)
  ours = np.asarray(jax.jit(tvl1.remap_cubic)(img[:1, None], u[None], v[None]))
  theirs = cv2.remap(img[0], xx + u, yy + v, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
  np.testing.assert_allclose(ours[0, 0], theirs, atol=0.05)
  per_tap = jax.jit(ops._remap_per_tap)(img[:1, None], u[None], v[None])  # the accelerators' form
  np.testing.assert_allclose(np.asarray(per_tap), ours, rtol=0, atol=1e-3)


@pytest.mark.slow
def test_sharded_batch():
  """shard_map helper and plain jit over a NamedSharding agree (same shapes/params as the CLI test)."""
  if jax.device_count() < 2:
    pytest.skip("needs several (fake) devices; tests/conftest.py provides 8 on CPU")
  y, x = np.mgrid[0:32, 0:48].astype(np.float64)
  frame0 = np.stack([texture(x, y, seed=s) for s in range(3)]).astype(np.uint8)
  frame1 = np.stack([texture(x - 1, y, seed=s) for s in range(3)]).astype(np.uint8)
  flow = tvl1.tvl1_flow_sharded(frame0, frame1, TINY)
  assert flow.shape == (3, 32, 48, 2)
  assert np.abs(np.median(np.asarray(flow)[:, 8:-8, 8:-8], axis=(1, 2)) - [1, 0]).max() < 0.2
  n = jax.device_count()
  sharding = jax.sharding.NamedSharding(arsr_sharding.make_mesh(), jax.sharding.PartitionSpec("data"))
  put = lambda f: jax.device_put(np.resize(f, (n,) + f.shape[1:]), sharding)
  flow_jit = jax.jit(functools.partial(tvl1_flow, params=TINY))(put(frame0), put(frame1))
  assert flow_jit.sharding.spec == jax.sharding.PartitionSpec("data")
  np.testing.assert_array_equal(np.asarray(flow_jit)[:3], np.asarray(flow))
  # Inside a batch-sharded jit (the protocol and training steps), per device: no data moves.
  in_step = jax.jit(lambda a, b: tvl1.tvl1_flow_sharded(a, b, TINY))(put(frame0), put(frame1))
  assert in_step.sharding.spec == jax.sharding.PartitionSpec("data")
  np.testing.assert_array_equal(np.asarray(in_step)[:3], np.asarray(flow))


def test_cli_writes_tsn_flow_pngs(tmp_path, capsys):
  y, x = np.mgrid[0:32, 0:48].astype(np.float64)
  frames = np.stack([np.repeat(texture(x - 1.0 * t, y)[..., None], 3, -1) for t in range(4)])
  video = tmp_path / "clip.mp4"
  write_video(video, frames / 255, fps=10)
  out = tmp_path / "flow"
  tiny = TINY_FLAGS
  assert flow_cli.main([str(video), str(out), "--batch", "2", "--vis"] + tiny) == 0
  names = sorted(p.name for p in out.iterdir())
  assert names == [f"flow_{k}_{i:05d}.png" for k in ("vis", "x", "y") for i in (1, 2, 3)]
  u = dequantize_flow(np.asarray(Image.open(out / "flow_x_00002.png")))
  v = dequantize_flow(np.asarray(Image.open(out / "flow_y_00002.png")))
  assert abs(np.median(u[6:-6, 6:-6]) - 1.0) < 0.2 and abs(np.median(v[6:-6, 6:-6])) < 0.2
  assert np.asarray(Image.open(out / "flow_vis_00001.png")).shape == (32, 48, 3)
  err = capsys.readouterr().err  # a bar from the start: count/total, rate and ETA
  assert "TV-L1 flow of clip.mp4  0/3 pairs" in err.splitlines()[0] and "ETA" in err and "3/3 pairs" in err

  assert flow_cli.main([str(video), str(out)] + tiny) == 2  # refuses a non-empty folder
  assert "--overwrite" in capsys.readouterr().err
  assert flow_cli.main([str(video), str(out), "--overwrite", "--max-frames", "2", "--batch", "2"] + tiny) == 0

  corrupt = tmp_path / "corrupt.mp4"
  corrupt.write_bytes(b"\x00\x01not a video" * 50)
  assert flow_cli.main([str(corrupt), str(tmp_path / "x")]) == 2
  assert str(corrupt) in capsys.readouterr().err


@pytest.mark.slow
def test_compaction_gives_the_same_flow_and_does_less_work():
  """Pairs that converge at different steps: stepping only the running ones changes nothing per pair.

  The eight pairs (textures moving 0-3.6 px) stop after 1 to 20 steps per warp,
  so the solver narrows the batch 8 -> 4 -> 2 -> 1, also in the middle of an
  outer iteration (where the median filter must not run again).
  """
  params = TVL1Params(nscales=2, warps=2, outer_iterations=4, inner_iterations=5, epsilon=0.02)
  y, x = np.mgrid[0:40, 0:48].astype(np.float64)
  shifts = [(0, 0), (0.4, 0), (0.9, 0.3), (1.5, -0.7), (2.2, 0.5), (0, 2.8), (3.1, 1.7), (-1.2, 0.6)]
  frame0 = np.stack([texture(x, y, seed=k) for k in range(8)]).astype(np.uint8)
  frame1 = np.stack([texture(x - dx, y - dy, seed=k) for k, (dx, dy) in enumerate(shifts)]).astype(np.uint8)
  full, full_stats = tvl1_flow(frame0, frame1, params, compact=False, return_stats=True)
  lean, lean_stats = tvl1_flow(frame0, frame1, params, compact=True, return_stats=True)
  # Same arithmetic per pair; only rounding may differ where XLA reduces a narrower batch in
  # another order (bitwise equal at the default optimisation level, not at the tests' level 0).
  np.testing.assert_allclose(np.asarray(lean), np.asarray(full), rtol=0, atol=1e-3)
  steps = np.asarray(full_stats["steps"])  # (8, levels, warps)
  np.testing.assert_array_equal(np.asarray(lean_stats["steps"]), steps)
  assert len(np.unique(steps)) >= 4, steps  # the pairs really stop at different steps
  ends = np.asarray(lean_stats["stage_ends"])  # (levels, warps, stages)
  widths = tvl1.stage_widths(8)
  assert widths == [8, 4, 2, 1] and ends.shape == steps.shape[1:] + (4,)
  np.testing.assert_array_equal(ends[..., -1], steps.max(axis=0))
  np.testing.assert_array_equal(np.asarray(full_stats["stage_ends"])[..., 0], steps.max(axis=0))
  assert (np.diff(ends, axis=-1) >= 0).all()
  assert ((ends[..., :-1] % params.inner_iterations != 0) & (ends[..., :-1] < ends[..., -1:])).any()
  work = (np.diff(ends, axis=-1, prepend=0) * widths).sum()
  assert work < 8 * steps.max(axis=0).sum(), (work, steps)
  assert work >= steps.sum()  # every step of every pair ran


@pytest.mark.slow
@pytest.mark.parametrize("components", [2, 3])
def test_fused_step_equals_split_step(components):
  """The accelerator form of the iteration (new u recomputed at the neighbours) equals the CPU form,
  borders included; 3 components = with the illumination term (a float coefficient)."""
  from arsr_jax.flow import tvl1_step
  rng = np.random.default_rng(components)
  arr = lambda scale: jnp.asarray(rng.normal(size=(2, 17, 23)) * scale, jnp.float32)  # noqa: E731
  u = tuple(arr(1.0) for _ in range(components))
  p = tuple((arr(0.3), arr(0.3)) for _ in range(components))
  ix, iy, rho_c = arr(4.0), arr(4.0), arr(10.0)
  grad = (ix ** 2 + iy ** 2).at[0, 3:6, 4:9].set(0.0)  # a flat patch: the |grad|^2 <= eps case
  coeffs = (ix, iy) + ((0.2,) if components == 3 else ())
  params = TVL1Params(gamma=0.2 if components == 3 else 0.0)
  split = tvl1_step.step_split(u, p, coeffs, grad, rho_c, params)
  fused = tvl1_step.step_fused(u, p, coeffs, grad, rho_c, params)
  for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(split)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
  assert np.abs(np.asarray(split[1][0][0]) - np.asarray(p[0][0])).max() > 0.01  # p really moved
  # On CPU the solver takes the split form; the whole solver with the fused one gives the same flow.
  frames = np.stack([texture(*np.mgrid[0:32, 0:40][::-1].astype(np.float64) - np.array([k, 0.5 * k])[:, None, None],
                             seed=k) for k in range(3)]).astype(np.float32)
  run = lambda: jax.jit(lambda a, b: tvl1._tvl1_impl(a, b, TINY, compact=False))(frames[:2], frames[1:])  # noqa: E731
  ours = np.asarray(run())
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(tvl1, "primal_dual_step", functools.partial(tvl1_step.primal_dual_step, form="fused"))
    fused_flow = np.asarray(run())
  np.testing.assert_allclose(fused_flow, ours, rtol=0, atol=1e-4)
  assert np.abs(ours).max() > 0.3
