"""Action recognisers: ResNet/TSN/ST-ResNet/3D ResNets, segment sampling, flow stacking, fusion."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsr_jax.recognition import INPUT_KINDS, RECOGNIZERS, build_recognizer
from arsr_jax.recognition.resnet import ResNet, cross_modality_init
from arsr_jax.recognition.resnet3d import ResNet3D, WideResNet3D
from arsr_jax.recognition.st_resnet import STResNet
from arsr_jax.recognition.tsn import TSN, consensus, fuse, segment_indices, stack_flow

KEY = jax.random.PRNGKey(0)


def _count(module, x) -> int:
  shapes = jax.eval_shape(lambda: module.init(KEY, x))
  return sum(leaf.size for leaf in jax.tree.leaves(shapes["params"]))


def _uniform(shape, seed=0, low=0.0, high=1.0):
  return jax.random.uniform(jax.random.PRNGKey(seed), shape, minval=low, maxval=high)


# ---------------------------------------------------------------------------
# Parameter counts.

@pytest.mark.parametrize("depth, expected", [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032),
                                             (101, 44_549_160), (152, 60_192_808)])
def test_resnet_parameter_counts_equal_torchvision(depth, expected):
  assert _count(ResNet(depth=depth, num_classes=1000), jnp.zeros((1, 224, 224, 3))) == expected


def test_resnet3d_parameter_counts_known():
  clip = jnp.zeros((1, 16, 112, 112, 3))
  assert _count(ResNet3D(depth=50, num_classes=400), clip) == 47_018_576  # measured with the torch mirror
  assert _count(WideResNet3D(num_classes=400), clip) == 158_248_272


def _torch_mirror(nd: int, depth: int, width: int = 64, k: int = 1, num_classes: int = 400, t_size: int = 7):
  """Hara's ``models/resnet.py`` (nd=3; nd=2 is torchvision's ResNet) and, for k > 1, his 2017
  ``WideResNet`` (WideBottleneck with expansion 2 on planes * k)."""
  torch = pytest.importorskip("torch")
  tnn = torch.nn
  conv_cls, bn_cls = (tnn.Conv2d, tnn.BatchNorm2d) if nd == 2 else (tnn.Conv3d, tnn.BatchNorm3d)
  pool = tnn.MaxPool2d(3, 2, 1) if nd == 2 else tnn.MaxPool3d(3, 2, 1)

  class Block(tnn.Module):
    def __init__(self, kind, expansion, cin, planes, stride, downsample):
      super().__init__()
      self.kind, self.downsample = kind, downsample
      if kind == "basic":
        self.conv1, self.bn1 = conv_cls(cin, planes, 3, stride, 1, bias=False), bn_cls(planes)
        self.conv2, self.bn2 = conv_cls(planes, planes, 3, 1, 1, bias=False), bn_cls(planes)
      else:
        self.conv1, self.bn1 = conv_cls(cin, planes, 1, bias=False), bn_cls(planes)
        self.conv2, self.bn2 = conv_cls(planes, planes, 3, stride, 1, bias=False), bn_cls(planes)
        self.conv3 = conv_cls(planes, planes * expansion, 1, bias=False)
        self.bn3 = bn_cls(planes * expansion)

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      if self.kind != "basic":
        y = self.bn3(self.conv3(torch.relu(y)))
      return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

  kind, counts = {10: ("basic", (1, 1, 1, 1)), 18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                  50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}[depth]
  expansion = 1 if kind == "basic" else (4 if k == 1 else 2)

  class Net(tnn.Module):
    def __init__(self):
      super().__init__()
      kernel, stride, pad = ((7, 7), 2, 3) if nd == 2 else ((t_size, 7, 7), (1, 2, 2), (t_size // 2, 3, 3))
      self.conv1, self.bn1 = conv_cls(3, width, kernel, stride, pad, bias=False), bn_cls(width)
      cin = width
      for i, n in enumerate(counts):
        planes, blocks = width * 2 ** i * k, []
        for j in range(n):
          stride = 2 if i > 0 and j == 0 else 1
          ds = None
          if stride != 1 or cin != planes * expansion:
            out = planes * expansion
            ds = tnn.Sequential(conv_cls(cin, out, 1, stride, bias=False), bn_cls(out))
          blocks.append(Block(kind, expansion, cin, planes, stride, ds))
          cin = planes * expansion
        setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
      self.fc = tnn.Linear(cin, num_classes)

    def forward(self, x):
      x = pool(torch.relu(self.bn1(self.conv1(x))))
      for i in range(4):
        x = getattr(self, f"layer{i + 1}")(x)
      return self.fc(x.mean(dim=tuple(range(2, x.dim()))))

  return torch, Net


@pytest.mark.parametrize("depth", [10, 18, 34, 50, 101])
def test_resnet3d_parameter_counts_equal_torch_mirror(depth):
  torch, net = _torch_mirror(3, depth)
  with torch.device("meta"):
    expected = sum(p.numel() for p in net().parameters())
  assert _count(ResNet3D(depth=depth), jnp.zeros((1, 16, 112, 112, 3))) == expected


def test_wide_resnet3d_parameter_count_equals_hara_wide_resnet50():
  torch, net = _torch_mirror(3, 50, k=2)
  with torch.device("meta"):
    expected = sum(p.numel() for p in net().parameters())
  assert _count(build_recognizer("wide_resnet3d"), jnp.zeros((1, 16, 112, 112, 3))) == expected


def _to_flax(state_dict) -> dict:
  """A torch ResNet state_dict -> {'params', 'batch_stats'} with this package's names."""
  out = {"params": {}, "batch_stats": {}}
  for key, value in state_dict.items():
    parts, v = key.split("."), value.detach().numpy()
    if parts[-1] == "num_batches_tracked":
      continue
    if parts[0].startswith("layer"):
      sub = {"0": "downsample_conv", "1": "downsample_bn"}[parts[3]] if parts[2] == "downsample" else parts[2]
      path = [f"{parts[0]}_{parts[1]}", sub]
    else:
      path = [parts[0]]
    leaf = parts[-1]
    if leaf == "weight" and v.ndim > 1:
      leaf, v = "kernel", (v.T if v.ndim == 2 else np.moveaxis(v, (0, 1), (-1, -2)))
    elif leaf == "weight":
      leaf = "scale"
    col = "batch_stats" if leaf.startswith("running_") else "params"
    leaf = {"running_mean": "mean", "running_var": "var"}.get(leaf, leaf)
    node = out[col]
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = jnp.asarray(v)
  return out


@pytest.mark.parametrize("nd", [2, 3])
def test_bottleneck_resnets_match_torch_mirror(nd):
  torch, net = _torch_mirror(nd, 50, width=4, num_classes=5, t_size=3)
  torch.manual_seed(0)
  model = net().eval()
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
        m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0), m.bias.uniform_(-0.2, 0.2)
  shape = (2, 32, 32, 3) if nd == 2 else (2, 4, 32, 32, 3)
  x = np.asarray(_uniform(shape))
  if nd == 2:
    flax_model = ResNet(depth=50, num_classes=5, width=4)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  else:
    flax_model = ResNet3D(depth=50, num_classes=5, width=4, conv1_t_size=3)
    mean, std = np.array([0.4345, 0.4051, 0.3775]), np.array([0.2768, 0.2713, 0.2737])
  with torch.no_grad():
    expected = model(torch.from_numpy(np.moveaxis((x - mean) / std, -1, 1)).float()).numpy()
  variables = _to_flax(model.state_dict())
  template = jax.eval_shape(lambda: flax_model.init(KEY, jnp.asarray(x)))
  assert jax.tree.structure(template) == jax.tree.structure(variables)
  got = flax_model.apply(variables, jnp.asarray(x), train=False)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Every registered recogniser at tiny size.

def test_registry_and_build_errors():
  assert set(RECOGNIZERS) == set(INPUT_KINDS) == {"tsn", "st_resnet", "i3d", "resnet3d", "wide_resnet3d"}
  assert RECOGNIZERS["st_resnet"] is STResNet and RECOGNIZERS["tsn"] is TSN
  assert build_recognizer("wide_resnet3d").widen_factor == 2.0
  assert build_recognizer("resnet3d").widen_factor == 1.0
  with pytest.raises(ValueError, match="known:.*tsn"):
    build_recognizer("c3d")
  with pytest.raises(ValueError, match="no option.*'colour'"):
    build_recognizer("tsn", colour="rgb")


@pytest.mark.parametrize("name", ["resnet3d", "wide_resnet3d"])
def test_resnet3d_forward(name):
  model = build_recognizer(name, depth=18, num_classes=7, width=4)
  x = _uniform((2, 8, 32, 32, 3))
  variables = model.init(KEY, x)
  logits = model.apply(variables, x)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))


def test_i3d_shapes():  # shapes only: I3D needs >= 9 frames of 193+ px, too slow to run here
  model = build_recognizer("i3d", num_classes=7)
  x = jnp.zeros((1, 9, 224, 224, 3))
  variables = jax.eval_shape(lambda: model.init(KEY, x))
  assert jax.eval_shape(lambda v: model.apply(v, x), variables).shape == (1, 7)


def test_tsn_rgb_forward_and_batch_stats():
  model = build_recognizer("tsn", modality="rgb", num_classes=6, depth=18, width=4)
  x = _uniform((2, 3, 32, 32, 3))
  variables = model.init(KEY, x)
  logits, state = model.apply(variables, x, train=False, mutable=["batch_stats"])
  assert logits.shape == (2, 6) and logits.dtype == jnp.float32
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), state["batch_stats"],
                                   variables["batch_stats"]))
  # Per-segment logits averaged: scoring each segment alone and averaging gives the same.
  per_segment = [model.apply(variables, x[:, i:i + 1]) for i in range(3)]
  np.testing.assert_allclose(np.asarray(logits), np.mean(per_segment, axis=0), rtol=1e-5, atol=1e-5)
  _, state = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": KEY})
  changed = jax.tree.map(lambda a, b: not bool(jnp.array_equal(a, b)), state["batch_stats"],
                         variables["batch_stats"])
  assert all(jax.tree.leaves(changed))


def test_tsn_flow_forward_and_checks():
  model = TSN(modality="flow", num_classes=4, depth=18, width=4, flow_stack=5)
  assert model.in_channels == 10
  flow = _uniform((1, 2, 5, 32, 32, 2), low=-30.0, high=30.0)  # (N, S, L, H, W, 2)
  x = stack_flow(flow)
  variables = model.init(KEY, x)
  assert variables["params"]["backbone"]["conv1"]["kernel"].shape == (7, 7, 10, 4)
  assert model.apply(variables, x).shape == (1, 4)
  with pytest.raises(ValueError, match="10"):
    model.apply(variables, x[..., :6])
  with pytest.raises(ValueError, match="modality"):
    TSN(modality="depth").init(KEY, x)


def test_st_resnet_connections():
  model = build_recognizer("st_resnet", num_classes=5, depth=18, width=4, flow_stack=2)
  rgb, flow = _uniform((2, 32, 32, 3), seed=1), _uniform((2, 32, 32, 4), seed=2, low=-5.0, high=5.0)
  variables = model.init(KEY, rgb, flow)
  out = model.apply(variables, rgb, flow)
  assert set(out) == {"spatial", "temporal"} and out["spatial"].shape == out["temporal"].shape == (2, 5)
  out_rgb = model.apply(variables, _uniform((2, 32, 32, 3), seed=3), flow)
  out_flow = model.apply(variables, rgb, -flow)
  np.testing.assert_array_equal(out_rgb["temporal"], out["temporal"])  # motion ignores appearance
  assert not np.allclose(out_rgb["spatial"], out["spatial"])
  assert not np.allclose(out_flow["spatial"], out["spatial"])  # appearance hears motion
  # With a silent motion stream (zero stem output, so zero block inputs at init statistics) the
  # appearance stream is a plain ResNet: flow reaches it only through the connections.
  motion = dict(variables["params"]["motion"])
  motion["bn1"] = jax.tree.map(jnp.zeros_like, motion["bn1"])
  params = {**variables["params"], "motion": motion}
  silent = model.apply({**variables, "params": params}, rgb, flow)
  appearance = {col: variables[col]["appearance"] for col in ("params", "batch_stats")}
  plain = ResNet(depth=18, num_classes=5, width=4).apply(appearance, rgb)
  np.testing.assert_allclose(np.asarray(silent["spatial"]), np.asarray(plain), rtol=1e-5, atol=1e-6)
  # Segments: (N, S, ...) inputs give the consensus of per-segment logits.
  seg = model.apply(variables, jnp.stack([rgb, rgb], 1), jnp.stack([flow, -flow], 1))
  np.testing.assert_allclose(np.asarray(seg["temporal"]), (out["temporal"] + out_flow["temporal"]) / 2,
                             rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Pure helpers.

def test_consensus_and_fuse_by_hand():
  logits = np.array([[[1.0, 2.0], [3.0, 6.0]], [[0.0, -2.0], [4.0, 2.0]]])  # (N=2, S=2, C=2)
  np.testing.assert_allclose(consensus(logits), [[2.0, 4.0], [2.0, 0.0]])
  np.testing.assert_allclose(consensus(jnp.asarray(logits)), [[2.0, 4.0], [2.0, 0.0]])
  rgb, flow = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
  np.testing.assert_allclose(fuse([rgb, flow]), [[1.0 / 2.5, 1.5 / 2.5]])
  np.testing.assert_allclose(fuse([rgb, flow], weights=(3.0, 1.0)), [[0.75, 0.25]])
  assert isinstance(fuse([jnp.asarray(rgb), flow]), jax.Array)
  with pytest.raises(ValueError, match="one weight per stream"):
    fuse([rgb], weights=(1.0, 1.5))


def test_stack_flow_interleaves_u_v():
  flow = np.zeros((3, 2, 2, 2))  # (L, H, W, 2)
  for i in range(3):
    flow[i, ..., 0], flow[i, ..., 1] = 10 * (i + 1), -10 * (i + 1)
  stacked = stack_flow(flow)
  assert stacked.shape == (2, 2, 6) and isinstance(stacked, np.ndarray)
  np.testing.assert_array_equal(stacked[0, 0], [10, -10, 20, -20, 30, -30])
  batched = stack_flow(jnp.asarray(np.broadcast_to(flow, (4, 5, 3, 2, 2, 2))))
  assert batched.shape == (4, 5, 2, 2, 6) and isinstance(batched, jax.Array)
  np.testing.assert_array_equal(batched[3, 4, 1, 1], stacked[1, 1])


def test_segment_indices_test_mode():
  idx = segment_indices(100, 25)  # tick = 4: the middle of each 4-frame segment
  np.testing.assert_array_equal(idx, 2 + 4 * np.arange(25))
  flow = segment_indices(100, 25, flow_stack=5)  # tick = 96 / 25 = 3.84; int(1.92 + 3.84 i)
  assert list(flow[:4]) == [1, 5, 9, 13] and flow[-1] == 94 and flow[-1] + 5 <= 100
  np.testing.assert_array_equal(flow, [int(1.92 + 3.84 * i) for i in range(25)])
  np.testing.assert_array_equal(segment_indices(3, 6), [0, 0, 1, 1, 2, 2])  # short video repeats
  with pytest.raises(ValueError, match="4 frames.*flow_stack=5"):
    segment_indices(4, 3, flow_stack=5)


def test_segment_indices_train_mode():
  rng = np.random.default_rng(0)
  for _ in range(20):
    idx = segment_indices(100, 3, flow_stack=5, train=True, rng=rng)  # 96 starts, segments of 32
    assert np.all(idx // 32 == np.arange(3)) and np.all(idx + 5 <= 100)
  draws = np.stack([segment_indices(10, 2, train=True, rng=rng) for _ in range(200)])
  assert set(draws[:, 0]) == set(range(5)) and set(draws[:, 1]) == set(range(5, 10))
  short = segment_indices(6, 8, flow_stack=2, train=True, rng=1)  # 5 starts < 8 segments, 6 <= 8
  np.testing.assert_array_equal(short, np.zeros(8))
  fallback = segment_indices(9, 8, flow_stack=3, train=True, rng=1)  # 7 starts < 8 segments, 9 > 8
  assert np.all(np.diff(fallback) >= 0) and fallback.max() <= 6
  same_seed = [segment_indices(50, 5, train=True, rng=7) for _ in range(2)]
  np.testing.assert_array_equal(*same_seed)


def test_cross_modality_init():
  rgb = TSN(modality="rgb", num_classes=3, depth=18, width=4)
  variables = rgb.init(KEY, jnp.zeros((1, 1, 32, 32, 3)))
  flow_params = cross_modality_init(variables["params"], 10)
  kernel = variables["params"]["backbone"]["conv1"]["kernel"]
  new = flow_params["backbone"]["conv1"]["kernel"]
  assert new.shape == (7, 7, 10, 4)
  np.testing.assert_allclose(new, np.repeat(np.mean(kernel, axis=2, keepdims=True), 10, axis=2), rtol=1e-6)
  np.testing.assert_array_equal(flow_params["backbone"]["layer1_0"]["conv1"]["kernel"],
                                variables["params"]["backbone"]["layer1_0"]["conv1"]["kernel"])
  flow = TSN(modality="flow", num_classes=3, depth=18, width=4, flow_stack=5)
  x = jnp.zeros((1, 1, 32, 32, 10))
  template = jax.eval_shape(lambda: flow.init(KEY, x))["params"]
  assert jax.tree.map(jnp.shape, flow_params) == jax.tree.map(jnp.shape, template)
  assert flow.apply({"params": flow_params, "batch_stats": variables["batch_stats"]}, x).shape == (1, 3)
  with pytest.raises(ValueError, match="no ResNet"):
    cross_modality_init({"dense": {"kernel": kernel}}, 10)
