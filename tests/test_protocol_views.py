"""TSN's test views in the protocol and its training augmentation (tsn-pytorch test_models.py
--test_crops 10 / GroupOverSample; GroupMultiScaleCrop + GroupRandomHorizontalFlip(is_flow))."""

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsr_jax.data import recognition_data
from arsr_jax.flow import io as flow_io
from arsr_jax.flow.tvl1 import TVL1Params
from arsr_jax.steps import protocol as protocol_steps

H, W, CROP = 10, 12, 6
# (top, left) of tsn-pytorch's fill_fix_offset for a 10x12 frame and 6 px crops: steps (12-6)//4 = 1
# across and (10-6)//4 = 1 down; upper left, upper right, lower left, lower right, centre.
OFFSETS = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]


class _SegmentNet(nn.Module):
  """(N, S, H, W, C) -> (N, 3): a position-sensitive, non-linear score per snippet, averaged over
  the snippets (TSN's consensus)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    n, s = x.shape[:2]
    return nn.Dense(3)(jnp.tanh(x.reshape(n, s, -1))).mean(1)


def _rec(kind, channels, seed):
  net = _SegmentNet()
  variables = net.init(jax.random.key(seed), jnp.zeros((1, 1, CROP, CROP, channels)))
  return types.SimpleNamespace(model=net, variables=variables, kind=kind, crop_size=CROP), net


def _explicit(net, variables, snippets, flow):
  """Mean over the 10 views, each view scored on its own: the 5 crops by hand, then mirrored."""
  scores = []
  for top, left in OFFSETS:
    crop = snippets[:, :, top:top + CROP, left:left + CROP]
    flipped = crop[:, :, :, ::-1].copy()
    if flow:
      flipped[..., 0::2] *= -1  # u changes sign under a horizontal mirror
    for view in (crop, flipped):
      scores.append(np.asarray(net.apply(variables, jnp.asarray(view))))
  return np.mean(scores, axis=0)


def test_ten_views_score_as_the_mean_of_explicit_per_view_scores(monkeypatch):
  rng = np.random.default_rng(0)
  s = 2
  frames = rng.integers(0, 256, (1, s, 2, H, W, 3), np.uint8)  # (B, S, L+1, H, W, 3), L = 1
  flow = rng.uniform(-6, 6, (s, H, W, 2)).astype(np.float32)  # what "TV-L1" returns here
  monkeypatch.setattr(protocol_steps.tvl1, "tvl1_flow_sharded", lambda a, b, params, mesh: jnp.asarray(flow))
  spatial, net = _rec("rgb", 3, 0)
  temporal, _ = _rec("flow", 2, 1)
  step = protocol_steps.make_two_stream_step(protocol_steps.HR, protocol_steps.HR, {"spatial": spatial, "temporal": temporal}, TVL1Params(), 20.0,
                                 0, True, views=10)
  batch = {"sp_lr": frames[:, :, :1], "sp_hr": frames[:, :, 0], "tp_lr": frames[:, :, :, None],
           "tp_hr": frames, "hr_flow": np.zeros((1, s, 1, H, W, 2), np.float32)}
  out = jax.jit(step)(batch)
  rgb = frames[:, :, 0].astype(np.float32) / 255.0
  np.testing.assert_allclose(out["spatial"], _explicit(net, spatial.variables, rgb, False), rtol=1e-5, atol=1e-6)
  stored = np.asarray(flow_io.dequantize_flow(flow_io.quantize_flow(flow, 20.0), 20.0))[None]  # (1, S, H, W, 2)
  np.testing.assert_allclose(out["temporal"], _explicit(net, temporal.variables, stored, True), rtol=1e-5, atol=1e-6)
  one = jax.jit(protocol_steps.make_two_stream_step(protocol_steps.HR, protocol_steps.HR, {"spatial": spatial}, TVL1Params(), 20.0, 0, True, views=1))
  centre = rgb[:, :, 2:8, 3:9]  # (10-6)//2, (12-6)//2: the single centre crop
  np.testing.assert_allclose(one(batch)["spatial"], net.apply(spatial.variables, jnp.asarray(centre)), rtol=1e-5,
                             atol=1e-6)


def test_mirrored_flow_negates_u_only():
  x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(1, 2, 3, 4, 4)  # channels u1, v1, u2, v2
  views = np.asarray(protocol_steps.tsn_views(jnp.asarray(x), 0, 10, flow=True))
  assert views.shape == (1, 20, 3, 4, 4)  # 10 views of 2 segments; size 0 = whole frame
  np.testing.assert_array_equal(views[:, :2], x)
  np.testing.assert_array_equal(views[:, 2:4, ..., 0::2], -x[:, :, :, ::-1, 0::2])
  np.testing.assert_array_equal(views[:, 2:4, ..., 1::2], x[:, :, :, ::-1, 1::2])
  rgb = np.asarray(protocol_steps.tsn_views(jnp.asarray(x[..., :3]), 0, 10))
  np.testing.assert_array_equal(rgb[:, 2:4], x[:, :, :, ::-1, :3])  # frames: plain mirror
  with pytest.raises(ValueError, match="protocol.views=3"):
    protocol_steps.tsn_views(jnp.asarray(x), 0, 3)


def _sampler(kind, **kw):
  return recognition_data.SampleRecognition(kind=kind, num_segments=2, flow_stack=2, crop_size=8, **kw)


def _example():
  rng = np.random.default_rng(1)
  return {"hr": rng.integers(0, 256, (6, 16, 20, 3), np.uint8),
          "flow": rng.uniform(-3, 3, (5, 16, 20, 2)).astype(np.float16), "label": 3}


def test_training_flip_negates_flow_u_and_mirrors_the_rgb_frame():
  ex = _example()
  plain, flipping = _sampler("two_stream"), _sampler("two_stream", flip=True)
  flips = 0
  for seed in range(8):
    a = plain.sample(ex, np.random.default_rng(seed))
    b = flipping.sample(ex, np.random.default_rng(seed))  # same segments and crop, then maybe mirrored
    if np.array_equal(a["rgb"], b["rgb"]):
      np.testing.assert_array_equal(a["flow"], b["flow"])
      continue
    flips += 1
    np.testing.assert_array_equal(b["rgb"], a["rgb"][..., ::-1, :])
    np.testing.assert_array_equal(b["flow"][..., 0::2], -a["flow"][..., ::-1, 0::2])
    np.testing.assert_array_equal(b["flow"][..., 1::2], a["flow"][..., ::-1, 1::2])
  assert 0 < flips < 8
  again = flipping.sample(ex, np.random.default_rng(3))
  np.testing.assert_array_equal(again["flow"], flipping.sample(ex, np.random.default_rng(3))["flow"])  # per rng


def test_scale_jitter_takes_tsn_crops_resized_to_the_input_side():
  """Every jittered input is one of TSN's crops (side pair, fixed position) resized to crop_size."""
  ex = _example()
  frames = ex["hr"][:2]  # (2, 16, 20, 3)
  scales = (1.0, 0.875, 0.75, 0.66)
  # int(16 x scale) = 16, 14, 12, 10; 10 is within 2 px of the 8 px input side and snaps to 8.
  sides = [16, 14, 12, 8]
  pairs = [(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1]  # max_distort 1
  found = set()
  for seed in range(40):
    out = recognition_data.multiscale_crop({"rgb": frames}, scales, 8, np.random.default_rng(seed))["rgb"]
    assert out.shape == (2, 8, 8, 3) and out.dtype == np.uint8
    hits = [(ch, cw, y, x) for ch, cw in pairs for y, x in recognition_data.crop_offsets(16, 20, ch, cw)
            if np.array_equal(out, recognition_data._bilinear(frames[:, y:y + ch, x:x + cw], 8) if (ch, cw) != (8, 8)
                              else frames[:, y:y + ch, x:x + cw])]
    assert hits, seed
    found.add(hits[0][:2])
  assert len(found) >= 4 and any(ch != cw for ch, cw in found)  # several scales, aspect jitter
  offsets = recognition_data.crop_offsets(16, 20, 12, 14)
  assert offsets[:5] == [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]  # corners, centre: steps (16-12)//4, (20-14)//4
  assert len(set(offsets)) == 13 and all(y + 12 <= 16 and x + 14 <= 20 for y, x in offsets)
  with pytest.raises(ValueError, match="needs data.crop_size"):
    recognition_data.SampleRecognition(kind="rgb", num_segments=2, scale_jitter=scales).sample(
        ex, np.random.default_rng(0))
