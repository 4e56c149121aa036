"""Tests of the embedded `synthetic_actions` data set (generator + TFDS builder)."""

import collections

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfds_builders.synthetic_actions as synthetic_actions
from arsr_jax.media.degrade import bicubic_downsample
from arsr_jax.flow.warp import warp
from tfds_builders.synthetic_actions import generator
from tfds_builders.synthetic_actions import synthetic_actions_dataset_builder as sa_builder

SMALL = generator.ClipSpec(frame_size=64, num_frames=8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("tfds")
  synthetic_actions.prepare("small", data_dir=str(path))
  return str(path)


@pytest.fixture(scope="module")
def small_builder(data_dir):
  return tfds.builder("synthetic_actions/small", data_dir=data_dir)


def _records(source):
  return {int(ex["id"]): ex for ex in (source[i] for i in range(len(source)))}


# ------------------------------------------------------------------- determinism


def test_render_is_deterministic_by_seed():
  a = generator.render_clip(np.random.default_rng([0, 0, 5]), SMALL)
  b = generator.render_clip(np.random.default_rng([0, 0, 5]), SMALL)
  c = generator.render_clip(np.random.default_rng([1, 0, 5]), SMALL)
  for key in ("hr", "flow", "mask"):
    np.testing.assert_array_equal(a[key], b[key])
  assert a["label"] == b["label"]
  assert not np.array_equal(a["hr"], c["hr"])


def test_two_builds_are_identical(data_dir, tmp_path):
  other = synthetic_actions.prepare("small", data_dir=str(tmp_path))
  first = _records(tfds.data_source("synthetic_actions/small", split="test", data_dir=data_dir))
  second = _records(other.as_data_source(split="test"))
  assert first.keys() == second.keys()
  for i in first:
    for key in ("hr", "lr", "flow", "mask", "label"):
      np.testing.assert_array_equal(first[i][key], second[i][key])


def test_seed_changes_data():
  cfg = sa_builder.Builder.builder_configs["small"]
  other = sa_builder.SyntheticActionsConfig(
      name="small_seed1", frame_size=cfg.frame_size, num_frames=cfg.num_frames, seed=1)
  a = sa_builder.make_example(cfg, "train", 3)
  b = sa_builder.make_example(other, "train", 3)
  assert a["label"] == b["label"]  # label depends on the index only
  assert not np.array_equal(a["hr"], b["hr"])


# ---------------------------------------------------------- features and values


def test_feature_shapes_dtypes_and_values(small_builder):
  cfg = small_builder.builder_config
  t, size, lr_size = cfg.num_frames, cfg.frame_size, cfg.frame_size // cfg.scale
  assert (t, size, cfg.scale) == (8, 64, 4)
  assert small_builder.info.splits["train"].num_examples == cfg.num_train
  assert small_builder.info.splits["test"].num_examples == cfg.num_test
  assert small_builder.info.features["label"].names == list(generator.CLASS_NAMES)
  source = small_builder.as_data_source(split="train")
  for i in range(0, len(source), 9):
    ex = source[i]
    assert ex["hr"].shape == (t, size, size, 3) and ex["hr"].dtype == np.uint8
    assert ex["lr"].shape == (t, lr_size, lr_size, 3) and ex["lr"].dtype == np.uint8
    assert ex["flow"].shape == (t - 1, size, size, 2) and ex["flow"].dtype == np.float16
    assert ex["mask"].shape == (t, size, size) and ex["mask"].dtype == np.uint8
    assert 0 <= int(ex["label"]) < generator.NUM_CLASSES
    assert set(np.unique(ex["mask"])) <= {0, 1} and ex["mask"].any()
    np.testing.assert_array_equal(ex["lr"], bicubic_downsample(ex["hr"], cfg.scale))
    # Background flow is exactly zero; actors never touch the frame border.
    assert np.all(ex["flow"][ex["mask"][:-1] == 0] == 0)
    border = np.concatenate([ex["mask"][:, [0, -1], :], ex["mask"][:, :, [0, -1]].swapaxes(1, 2)], 1)
    assert not border.any()


def _erode(mask, radius):
  """Binary erosion of (..., H, W) bool masks with a (2r+1)^2 square (False outside)."""
  h, w = mask.shape[-2:]
  padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(radius, radius)] * 2)
  out = np.ones_like(mask)
  for dy in range(2 * radius + 1):
    for dx in range(2 * radius + 1):
      out &= padded[..., dy:dy + h, dx:dx + w]
  return out


@pytest.mark.parametrize("spec", [SMALL, generator.ClipSpec(frame_size=96, num_frames=6)])
def test_flow_warps_next_frame_onto_current(spec):
  """warp(frame t+1, flow t) == frame t on actor interiors visible in both frames."""
  errors, static_errors = [], []
  for label in range(generator.NUM_CLASSES):
    clip = generator.render_clip(np.random.default_rng([3, label]), spec, label=label)
    hr, flow, ids = clip["hr"].astype(np.float32) / 255.0, clip["flow"], clip["actor_id"]
    t, h, w = ids.shape
    interior = np.stack([_erode(ids == k, 2) for k in range(1, 4)])       # (3, T, H, W)
    ys, xs = np.mgrid[:h, :w]
    tx = np.clip(np.round(xs + flow[..., 0]).astype(int), 0, w - 1)     # (T-1, H, W)
    ty = np.clip(np.round(ys + flow[..., 1]).astype(int), 0, h - 1)
    frames = np.arange(t - 1)[:, None, None]
    # Same actor, interior at both ends of the flow vector.
    valid = (interior[:, :-1] & interior[:, 1:][:, frames, ty, tx]).any(axis=0)
    assert valid.sum() > 100
    warped = np.asarray(warp(hr[1:], flow))
    errors.append(np.abs(warped - hr[:-1]).mean(-1)[valid].mean())
    static_errors.append(np.abs(hr[1:] - hr[:-1]).mean(-1)[valid].mean())
    assert np.all(flow[clip["mask"][:-1] == 0] == 0)
  errors, static_errors = np.array(errors), np.array(static_errors)
  assert errors.max() < 0.02                                 # ~5 grey levels
  assert errors.mean() < 0.25 * static_errors.mean()
  assert np.all(errors < 0.5 * static_errors)                 # every class moves visibly


# -------------------------------------------------------------------- read back


def test_data_source_and_grain_read_back_the_render(data_dir, small_builder):
  cfg = small_builder.builder_config
  source = tfds.data_source("synthetic_actions/small", split="test", data_dir=data_dir)
  assert len(source) == cfg.num_test
  dataset = grain.MapDataset.source(source).map(lambda ex: (int(ex["id"]), ex))
  records = dict(dataset)
  assert sorted(records) == list(range(cfg.num_test))
  for i in (0, 7, cfg.num_test - 1):
    expected = sa_builder.make_example(cfg, "test", i)
    for key in ("hr", "lr", "flow", "mask"):
      np.testing.assert_array_equal(records[i][key], expected[key])
    assert int(records[i]["label"]) == expected["label"] == i % generator.NUM_CLASSES
  direct = generator.render_clip(np.random.default_rng([cfg.seed, 1, 7]), cfg, label=7)
  np.testing.assert_array_equal(records[7]["hr"], direct["hr"])
  np.testing.assert_array_equal(records[7]["flow"], direct["flow"].astype(np.float16))


def test_every_class_present_and_balanced(small_builder):
  for split in ("train", "test"):
    source = small_builder.as_data_source(split=split)
    counts = collections.Counter(int(source[i]["label"]) for i in range(len(source)))
    assert set(counts) == set(range(generator.NUM_CLASSES))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_class_names_are_texture_times_motion():
  assert len(generator.CLASS_NAMES) == len(set(generator.CLASS_NAMES)) == 12
  for label, name in enumerate(generator.CLASS_NAMES):
    texture, motion = generator.split_label(label)
    assert name == f"{texture}_{motion}"
