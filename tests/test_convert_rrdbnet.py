"""ESRGAN/BasicSR RRDBNet .pth -> Flax RRDBNet: outputs match a PyTorch mirror of BasicSR's net.

Tiny config (2 blocks, 8 features, growth 4) on 8x8 inputs; torch NCHW, Flax NHWC.
"""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from arsr_jax.models import convert
from arsr_jax.models.rrdbnet import RRDBNet

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

CFG = dict(num_blocks=2, features=8, growth=4)


class _RDB(nn.Module):
  def __init__(self, nf, gc):
    super().__init__()
    for i in range(5):
      setattr(self, f"conv{i + 1}", nn.Conv2d(nf + i * gc, nf if i == 4 else gc, 3, 1, 1))

  def forward(self, x):
    feats = [x]
    for i in range(4):
      feats.append(F.leaky_relu(getattr(self, f"conv{i + 1}")(torch.cat(feats, 1)), 0.2))
    return x + 0.2 * self.conv5(torch.cat(feats, 1))


class _RRDB(nn.Module):
  def __init__(self, nf, gc):
    super().__init__()
    self.rdb1, self.rdb2, self.rdb3 = _RDB(nf, gc), _RDB(nf, gc), _RDB(nf, gc)

  def forward(self, x):
    return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class TorchRRDBNet(nn.Module):
  """BasicSR's RRDBNet (basicsr/archs/rrdbnet_arch.py), same parameter names."""

  def __init__(self, scale=4, num_block=2, num_feat=8, num_grow_ch=4, num_in_ch=3, num_out_ch=3):
    super().__init__()
    self.scale = scale
    num_in_ch *= {4: 1, 2: 4, 1: 16}[scale]
    self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
    self.body = nn.Sequential(*[_RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
    self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

  def forward(self, x):
    if self.scale < 4:
      x = F.pixel_unshuffle(x, 4 // self.scale)  # channel order (c, dy, dx), as BasicSR's
    feat = self.conv_first(x)
    feat = feat + self.conv_body(self.body(feat))
    feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
    feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
    return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


def _setup(scale=4, seed=0):
  torch.manual_seed(seed)
  net = TorchRRDBNet(scale=scale).eval()
  model = RRDBNet(scale=scale, **CFG)
  x = np.random.default_rng(seed).random((1, 8, 8, 3), dtype=np.float32)
  template = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.asarray(x))
  return net, model, x, template


def _check_same_output(net, model, x, params):
  with torch.no_grad():
    want = net(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  got = np.asarray(model.apply(params, jnp.asarray(x)))
  assert got.shape == want.shape
  diff = float(np.abs(got - want).max())
  assert diff < 1e-5, diff
  return diff


def _old_esrgan_name(key, num_blocks=CFG["num_blocks"]):
  """BasicSR key -> the first ESRGAN release's Sequential name."""
  mod, rest = key.split(".", 1)
  if mod == "body":
    i, rdb, conv, p = rest.split(".")
    return f"model.1.sub.{i}.{rdb.upper()}.{conv}.0.{p}"
  idx = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_blocks}", "conv_up1": "model.3",
         "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}[mod]
  return f"{idx}.{rest}"


def _esrgan_name(key):
  """BasicSR key -> xinntao/ESRGAN RRDBNet_arch.py's name."""
  for new, old in (("body.", "RRDB_trunk."), (".rdb", ".RDB"), ("conv_body", "trunk_conv"),
                   ("conv_up", "upconv"), ("conv_hr", "HRconv")):
    key = key.replace(new, old)
  return key


@pytest.mark.parametrize("zipped", [True, False])
def test_basicsr_pth_matches_torch(tmp_path, zipped):
  net, model, x, template = _setup()
  path = tmp_path / "net_g.pth"
  # BasicSR wraps in 'params_ema' (zip files); legacy files (old ESRGAN) are flat.
  state = {"params_ema": net.state_dict()} if zipped else net.state_dict()
  torch.save(state, path, _use_new_zipfile_serialization=zipped)
  params = convert.load_rrdbnet_weights(str(path), template)
  print(f"max abs diff (zip={zipped}): {_check_same_output(net, model, x, params):.2e}")


def test_old_and_new_esrgan_naming(tmp_path):
  net, model, x, template = _setup(seed=1)
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  ref = convert.rrdbnet_from_torch(state, template)
  assert convert.detect_scheme(state) == "basicsr"
  old = {_old_esrgan_name(k): torch.from_numpy(v) for k, v in state.items()}
  assert "model.1.sub.0.RDB1.conv1.0.weight" in old and "model.1.sub.2.bias" in old
  path = tmp_path / "RRDB_ESRGAN_x4_old_arch.pth"
  torch.save(old, path, _use_new_zipfile_serialization=False)
  params = convert.load_rrdbnet_weights(str(path), template)
  _check_same_output(net, model, x, params)
  esrgan = {"module." + _esrgan_name(k): v for k, v in state.items()}
  assert convert.detect_scheme({k[7:]: v for k, v in esrgan.items()}) == "esrgan"
  jax.tree.map(np.testing.assert_array_equal, convert.rrdbnet_from_torch(esrgan, template), ref)


def test_scale2_pixel_unshuffle_order(tmp_path):
  net, model, x, template = _setup(scale=2, seed=2)
  path = tmp_path / "x2.pth"
  torch.save(net.state_dict(), path)
  _check_same_output(net, model, x, convert.load_rrdbnet_weights(str(path), template, scale=2))


def test_clear_errors(tmp_path):
  _, _, _, template = _setup()
  torch.manual_seed(0)
  state = {k: v.numpy() for k, v in TorchRRDBNet().state_dict().items()}
  bad = dict(state, **{"conv_hr.weight": np.zeros((8, 4, 3, 3), np.float32)})
  with pytest.raises(ValueError, match=r"shape mismatch.*conv_hr/kernel"):
    convert.rrdbnet_from_torch(bad, template)
  missing = {k: v for k, v in state.items() if k != "body.1.rdb2.conv3.bias"}
  with pytest.raises(ValueError, match=r"my\.pth \(basicsr naming\).*missing.*body_1/rdb2/conv3/bias"):
    convert.rrdbnet_from_torch(missing, template, source="my.pth")
  with pytest.raises(ValueError, match=r"unexpected.*body_2/rdb1"):  # a 3-block file into 2 blocks
    convert.rrdbnet_from_torch({k: v.numpy() for k, v in TorchRRDBNet(num_block=3).state_dict().items()},
                               template)
  with pytest.raises(ValueError, match=r"unexpected.*extra\.weight \(not an RRDBNet parameter\)"):
    convert.rrdbnet_from_torch(dict(state, **{"extra.weight": np.zeros(3)}), template)
  path = tmp_path / "vgg.pth"
  torch.save({"features.0.weight": torch.zeros(2, 3, 3, 3), "classifier.bias": torch.zeros(2)}, path)
  with pytest.raises(ValueError, match=r"Not an RRDBNet state dict.*features\.0\.weight"):
    convert.load_rrdbnet_weights(str(path), template)


def test_esrgan_recipe_starts_from_a_pth_via_init_from(tmp_path):
  from arsr_jax import config_lib
  from arsr_jax.jobs import sr as sr_job
  from arsr_jax.steps import sr as sr_steps
  net, model, x, template = _setup()
  path = tmp_path / "RRDB_ESRGAN_tiny.pth"
  torch.save(net.state_dict(), path)
  config = config_lib.recipe("esrgan", "smoke")
  config.model.num_blocks, config.model.features, config.model.growth = CFG["num_blocks"], CFG["features"], CFG["growth"]
  b, b_frozen = sr_job.build(config)
  init = sr_steps.make_init_fn(b, (1, 8, 8, 3), (1, 32, 32, 3))
  state = sr_job.init_from(jax.jit(init)(jax.random.key(0)), str(path),
                           jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  _check_same_output(net, model, x, {"params": state.params["generator"]})
