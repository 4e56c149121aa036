"""The SR model zoo: parameter counts against the published code, shapes, DUF's dynamic
filters, progressive DVSR's fade-in and growth, and a jitted forward+backward per net.

Full-size models are only built abstractly (``jax.eval_shape``); real passes use tiny
configurations on 8x8 inputs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from arsr_jax.models import duf, dvsr, layers, legacy_layout, rcan, rrdbnet, spmc, srresnet, vdsr


def _fast_compile_options():
  """XLA:CPU options that cut compile time ~4x; tiny inputs run in milliseconds anyway.

  Falls back to the defaults where this XLA does not know an option.
  """
  options = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
  try:
    jax.jit(lambda x: x + 1, compiler_options=options)(0.0)
  except Exception:  # noqa: BLE001  (an unknown option is an XlaRuntimeError)
    return {}
  return options


_jit = functools.partial(jax.jit, compiler_options=_fast_compile_options())


def _abstract_variables(model, shape, **kwargs):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), **kwargs))


def _num_params(variables):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))


def _conv(k, cin, cout, bias=True):  # parameters of a conv with k kernel taps
  return k * cin * cout + (cout if bias else 0)


def _duf_reference_count(num_layers, r=4):
  """Trainable variables of yhjo09/VSR-DUF nets.py FR_{16,28,52}L (= BasicSR's DUF)."""
  blocks, growth = {16: (3, 32), 28: (9, 16), 52: (21, 16)}[num_layers]
  total, f = _conv(9, 3, 64), 64  # conv1 (1x3x3)
  for _ in range(blocks + 3):  # BN(F), 1x1x1 F->F, BN(F), 3x3x3 F->G
    total += 2 * f + _conv(1, f, f) + 2 * f + _conv(27, f, growth)
    f += growth
  total += 2 * f + _conv(9, f, 256)  # fbn1, conv2
  total += _conv(1, 256, 256) + _conv(1, 256, 3 * r * r)  # rconv1, rconv2
  total += _conv(1, 256, 512) + _conv(1, 512, 25 * r * r)  # fconv1, fconv2
  return total


def _rrdb_count(k, f, g):
  rdb = sum(_conv(k, f + i * g, g) for i in range(4)) + _conv(k, f + 4 * g, f)
  return 3 * rdb


# (model, input shape, expected parameter count); each comment says where the number comes from.
FULL_SIZE = {
    # BasicSR RRDBNet(3, 3, 64, 23, 32): 16,697,987.
    "rrdbnet": (rrdbnet.RRDBNet(), (1, 8, 8, 3), 16_697_987),
    # BasicSR VGGStyleDiscriminator(3, 64, 128).
    "vgg_discriminator": (rrdbnet.VGGStyleDiscriminator(), (1, 128, 128, 3), 14_499_401),
    # BasicSR RCAN(3, 3, 64, num_group=10, num_block=20, squeeze 16, upscale 4) (paper: ~15.6 M).
    "rcan": (rcan.RCAN(), (1, 8, 8, 3), 15_592_355),
    # SRGAN Fig. 4: 9x9 conv + PReLU, 16 x (2 conv w/o bias + 2 BN + PReLU), conv + BN,
    # 2 x (conv 64->256 + PReLU), 9x9 conv.
    "srresnet": (srresnet.SRResNet(), (1, 8, 8, 3),
                 _conv(81, 3, 64) + 1 + 16 * (2 * _conv(9, 64, 64, False) + 4 * 64 + 1)
                 + _conv(9, 64, 64, False) + 2 * 64 + 2 * (_conv(9, 64, 256) + 1) + _conv(81, 64, 3)),
    # SRGAN discriminator at 96 px: dense 6*6*512 -> 1024 -> 1.
    "srgan_discriminator": (srresnet.SRGANDiscriminator(), (1, 96, 96, 3), 23_563_649),
    "duf16": (duf.DUF(num_layers=16), (1, 7, 8, 8, 3), _duf_reference_count(16)),
    "duf28": (duf.DUF(num_layers=28), (1, 7, 8, 8, 3), _duf_reference_count(28)),
    "duf52": (duf.DUF(num_layers=52), (1, 7, 8, 8, 3), _duf_reference_count(52)),
    # Tiny-VIRAT g6.py (ngf 32, nbf 16, 4 blocks, 2 upconvs): conv_in, 4 RRDB, convbout, 2 upconvs,
    # conv1, conv2.
    "dvsr": (dvsr.DVSR(), (1, 4, 8, 8, 3),
             _conv(27, 3, 32) + 4 * _rrdb_count(27, 32, 16) + 4 * _conv(27, 32, 32) + _conv(27, 32, 3)),
    # Tiny-VIRAT pg2.py at 4x (ngf = nbf = 32): convin, 2 RRDB, ups [s2 conv + UpBlock, UpBlock], 2 RGB heads.
    "progressive_dvsr": (dvsr.ProgressiveDVSR(), (1, 16, 8, 8, 3),
                         _conv(27, 3, 32) + 2 * _rrdb_count(27, 32, 32) + 7 * _conv(27, 32, 32)
                         + 2 * (_conv(27, 32, 32) + _conv(1, 32, 3))),
}


def test_reference_counts_are_the_published_ones():
  # DUF: BasicSR duf_arch.py / the official graph; DVSR-pg2 at 4x from pg2.py's layer list.
  assert [_duf_reference_count(n) for n in (16, 28, 52)] == [1_900_640, 2_118_432, 5_821_952]
  assert FULL_SIZE["srresnet"][2] == 1_547_350
  assert FULL_SIZE["progressive_dvsr"][2] == 2_741_222


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_parameter_counts(name):
  model, shape, expected = FULL_SIZE[name]
  assert _num_params(_abstract_variables(model, shape)) == expected


def _uniform(shape, seed):
  """Test frames in [0, 1] from NumPy (jax.random would compile for every new shape)."""
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def _init(model, x, seed=0, **kwargs):
  """Deterministic variables with ``model.init``'s structure, without running its initialisers.

  The real initialisers are traced by ``jax.eval_shape`` (so they are checked), but not
  compiled: with jax_threefry_partitionable (the default) every distinct parameter
  shape costs seconds of XLA compilation on a small CPU. Kernels ~ N(0, 1/fan_in),
  BatchNorm scales and variances 1, PReLU slopes 0.25, the rest 0.
  """
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x, **kwargs))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return (rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(leaf.dtype)
    value = {"scale": 1.0, "var": 1.0, "negative_slope": 0.25}.get(name, 0.0)
    return np.full(leaf.shape, value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


# Tiny configurations: (model, input shape, expected output shape)
TINY = {
    "rrdbnet": (rrdbnet.RRDBNet(num_blocks=1, features=8, growth=4), (2, 8, 8, 3), (2, 32, 32, 3)),
    "vgg_discriminator": (rrdbnet.VGGStyleDiscriminator(features=2), (2, 128, 128, 3), (2, 1)),
    "srresnet": (srresnet.SRResNet(num_blocks=1, features=8), (2, 8, 8, 3), (2, 32, 32, 3)),
    "srgan_discriminator": (srresnet.SRGANDiscriminator(features=4, dense_features=8), (2, 32, 32, 3), (2, 1)),
    "rcan": (rcan.RCAN(num_groups=1, num_blocks=2, features=16, reduction=4), (2, 8, 8, 3), (2, 32, 32, 3)),
    "dvsr": (dvsr.DVSR(num_blocks=1, features=8, growth=4), (2, 4, 8, 8, 3), (2, 4, 32, 32, 3)),
}
# DUF and ProgressiveDVSR train in their own tests below.

# More scales and stages, checked abstractly: (model, input shape, expected output shape)
SHAPES = {
    **TINY,
    "duf16": (duf.DUF(num_layers=16), (2, 7, 8, 8, 3), (2, 32, 32, 3)),
    "spmc": (spmc.SPMC(features=8), (2, 3, 8, 8, 3), (2, 32, 32, 3)),  # trains in tests/test_spmc.py
    "spmc_rgb_x2": (spmc.SPMC(scale=2, features=8, luma=False), (2, 5, 6, 7, 3), (2, 12, 14, 3)),
    "progressive_dvsr": (dvsr.ProgressiveDVSR(features=8, growth=8), (2, 4, 8, 8, 3), (2, 4, 32, 32, 3)),
    "rrdbnet_x2": (rrdbnet.RRDBNet(scale=2, num_blocks=1, features=8, growth=4), (2, 8, 8, 3), (2, 16, 16, 3)),
    "rrdbnet_x1": (rrdbnet.RRDBNet(scale=1, num_blocks=1, features=8, growth=4), (2, 8, 8, 3), (2, 8, 8, 3)),
    "vgg_discriminator_256": (rrdbnet.VGGStyleDiscriminator(features=2, input_size=256), (2, 256, 256, 3), (2, 1)),
    "srresnet_x3": (srresnet.SRResNet(scale=3, num_blocks=1, features=8), (2, 8, 8, 3), (2, 24, 24, 3)),
    "rcan_x2": (rcan.RCAN(scale=2, num_groups=1, num_blocks=1, features=16, reduction=4), (2, 8, 8, 3),
                (2, 16, 16, 3)),
    "dvsr_x8": (dvsr.DVSR(scale=8, num_blocks=1, features=8, growth=4), (2, 3, 4, 4, 3), (2, 3, 32, 32, 3)),
    "progressive_dvsr_x4_stage1": (dvsr.ProgressiveDVSR(stage=1), (2, 16, 28, 28, 3), (2, 8, 56, 56, 3)),
    "progressive_dvsr_x8_stage1": (dvsr.ProgressiveDVSR(scale=8, stage=1), (2, 16, 14, 14, 3), (2, 4, 28, 28, 3)),
    "progressive_dvsr_x8": (dvsr.ProgressiveDVSR(scale=8), (2, 16, 14, 14, 3), (2, 16, 112, 112, 3)),
    "progressive_dvsr_no_temporal_growth": (dvsr.ProgressiveDVSR(stage=1, temporal_growth=False),
                                            (2, 5, 8, 8, 3), (2, 5, 16, 16, 3)),
}
BF16 = [*TINY, "duf16", "spmc", "progressive_dvsr"]  # one of each architecture with bfloat16 compute


@pytest.mark.parametrize("name,dtype", [(n, jnp.float32) for n in sorted(SHAPES)]
                         + [(n, jnp.bfloat16) for n in sorted(BF16)])
def test_output_shapes_and_dtypes(name, dtype):
  """Abstract passes: output shape, float32 output and parameters, also with bf16 compute."""
  model, shape, out_shape = SHAPES[name]
  model = model.clone(dtype=dtype)
  variables = _abstract_variables(model, shape)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape, dtype)), variables)
  assert out.shape == out_shape and out.dtype == jnp.float32


def _train_step(model, variables, x, extra_mutable=(), **kwargs):
  """Training-mode forward and backward of mean((out - 0.5)^2): (loss, out, new_state, grads).

  Traceable (call it inside a jitted function); ``new_state`` holds the updated
  ``batch_stats`` and any ``extra_mutable`` collections.
  """
  state = {k: v for k, v in variables.items() if k != "params"}

  def loss(params):
    out, new_state = model.apply({"params": params, **state}, x, train=True,
                                 mutable=list(state) + list(extra_mutable), **kwargs)
    return jnp.mean(jnp.square(out - 0.5)), (out, new_state)

  (value, (out, new_state)), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
  return value, out, new_state, grads


def _check_train_step(variables, value, out, new_state, grads):
  """Finite loss, output and gradients, some gradient signal, updated BatchNorm statistics."""
  variables, value, out, new_state, grads = jax.device_get((variables, value, out, new_state, grads))
  assert out.dtype == np.float32 and np.isfinite(value) and np.isfinite(out).all()
  grad_leaves = jax.tree.leaves(grads)
  assert len(grad_leaves) == len(jax.tree.leaves(variables["params"]))
  assert all(np.isfinite(g).all() for g in grad_leaves)
  assert sum(np.abs(g).sum() for g in grad_leaves) > 0
  if "batch_stats" in variables:  # train=True updated every running statistic
    changed = jax.tree.map(lambda a, b: bool((a != b).any()), variables["batch_stats"], new_state["batch_stats"])
    assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize("name", sorted(TINY))
def test_jitted_forward_and_backward(name):
  model, shape, out_shape = TINY[name]
  x = _uniform(shape, seed=1)
  variables = _init(model, x)
  assert set(variables) <= {"params", "batch_stats"}  # nothing else (e.g. sown intermediates) in the state
  result = _jit(functools.partial(_train_step, model))(variables, x)
  assert result[1].shape == out_shape
  _check_train_step(variables, *result)


def test_depth_to_space_layout_and_inverse():
  x = jnp.arange(24, dtype=jnp.float32) + jnp.zeros((2, 3, 4, 1))
  y = layers.depth_to_space(x, 2)  # 24 = 2*2*6 channels -> 6 channels at 2x
  assert y.shape == (2, 6, 8, 6)
  for dy in range(2):
    for dx in range(2):  # channel (dy*2 + dx)*C + c lands at (2y + dy, 2x + dx)
      np.testing.assert_array_equal(y[0, dy, dx], np.arange(6) + (dy * 2 + dx) * 6)
  np.testing.assert_array_equal(layers.space_to_depth(y, 2), x)
  np.testing.assert_array_equal(layers.upsample_nearest(x[..., :1], 2)[0, :2, :2, 0], np.zeros((2, 2)))


def test_dynamic_filter_matches_a_direct_5x5_weighted_sum():
  rng = np.random.default_rng(0)
  frame = rng.uniform(size=(2, 6, 7, 3)).astype(np.float32)
  filters = rng.uniform(size=(2, 6, 7, 25, 4)).astype(np.float32)
  padded = np.pad(frame, ((0, 0), (2, 2), (2, 2), (0, 0)))
  expected = np.zeros((2, 6, 7, 4, 3), np.float32)
  for tap in range(25):  # tap 5*i + j reads offset (i - 2, j - 2)
    i, j = divmod(tap, 5)
    expected += filters[..., tap, :, None] * padded[:, i:i + 6, j:j + 7, None, :]
  np.testing.assert_allclose(duf.dynamic_filter(jnp.asarray(frame), jnp.asarray(filters)), expected,
                             rtol=1e-5, atol=1e-5)
  # The centre tap alone copies the LR pixel to every sub-position: nearest upsampling.
  centre = np.zeros((2, 6, 7, 25, 4), np.float32)
  centre[..., 12, :] = 1
  out = duf.dynamic_filter(jnp.asarray(frame), jnp.asarray(centre)).reshape(2, 6, 7, 12)
  np.testing.assert_allclose(layers.depth_to_space(out, 2), layers.upsample_nearest(frame, 2), atol=1e-6)


def test_duf_trains_and_its_filters_are_a_softmax_over_taps():
  model = duf.DUF(num_layers=16, scale=2)
  clip = _uniform((2, 7, 8, 8, 3), seed=3)
  variables = _init(model, clip)
  assert set(variables) == {"params", "batch_stats"}  # init does not keep the sown filters
  result = _jit(functools.partial(_train_step, model, extra_mutable=["intermediates"]))(variables, clip)
  _check_train_step(variables, *result)
  out, new_state = result[1], result[2]
  (filters,) = new_state["intermediates"]["filters"]
  assert filters.shape == (2, 8, 8, 25, 4) and out.shape == (2, 16, 16, 3)
  assert (filters >= 0).all()
  np.testing.assert_allclose(filters.sum(axis=-2), 1.0, atol=1e-5)
  with pytest.raises(ValueError, match="7"):
    _abstract_variables(model, (1, 5, 8, 8, 3))
  with pytest.raises(ValueError, match="num_layers"):
    _abstract_variables(duf.DUF(num_layers=20), clip.shape)


@pytest.mark.parametrize("temporal_growth", [True, False])
def test_progressive_fade_in_at_alpha_zero_is_the_previous_stage_upsampled(temporal_growth):
  clip = _uniform((1, 4, 6, 6, 3), seed=4)
  kw = dict(scale=4, features=8, growth=8, temporal_growth=temporal_growth)
  small, big = dvsr.ProgressiveDVSR(stage=1, **kw), dvsr.ProgressiveDVSR(stage=2, **kw)
  small_vars = _init(small, clip, seed=1)  # stands in for a trained stage-1 model
  big_vars = dvsr.grow_params(small_vars, _init(big, clip, seed=2))
  full = temporal_growth  # the remaining checks run once: tracing these nets is the slow part

  @_jit
  def run(small_vars, big_vars, clip):
    faded = lambda a: big.apply(big_vars, clip, alpha=a)  # noqa: E731
    prev, out0 = small.apply(small_vars, clip), faded(0.0)
    up = layers.resize_linear(prev, out0.shape[1:4])
    if not full:
      return prev, out0, up
    # alpha = 1 is the grown model without fade; alpha is traced (a training-step argument).
    return prev, out0, up, faded(1.0), big.apply(big_vars, clip), _train_step(big, big_vars, clip, alpha=0.5)

  prev, out0, up, *rest = run(small_vars, big_vars, clip)
  assert prev.shape == ((1, 2, 12, 12, 3) if temporal_growth else (1, 4, 12, 12, 3))
  assert out0.shape == (1, 4, 24, 24, 3)
  np.testing.assert_array_equal(out0, up)
  if full:
    out1, out, step = rest
    np.testing.assert_array_equal(out1, out)
    assert not np.allclose(out0, out)
    _check_train_step(big_vars, *step)


def test_progressive_params_nest_across_stages_and_grow_checks_shapes():
  clip = (1, 8, 4, 4, 3)
  flat = [{(path, leaf.shape) for path, leaf in traverse_util.flatten_dict(
      _abstract_variables(dvsr.ProgressiveDVSR(scale=8, stage=k), clip)["params"]).items()} for k in (1, 2, 3)]
  assert flat[0] < flat[1] < flat[2]
  with pytest.raises(ValueError, match="stage"):
    _abstract_variables(dvsr.ProgressiveDVSR(scale=4, stage=3), (1, 2, 4, 4, 3))
  with pytest.raises(ValueError, match="divisible"):
    _abstract_variables(dvsr.ProgressiveDVSR(scale=8), (1, 6, 4, 4, 3))
  small = {"params": {"conv_in": {"kernel": jnp.zeros((3, 3, 3, 3, 4))}}}
  big = {"params": {"conv_in": {"kernel": jnp.ones((3, 3, 3, 3, 8))}}}
  with pytest.raises(ValueError, match="shape"):
    dvsr.grow_params(small, big)
  with pytest.raises(ValueError, match="lacks"):
    dvsr.grow_params(big, {"params": {}})


def test_discriminator_input_size_is_checked():
  with pytest.raises(ValueError, match="128x128"):
    _abstract_variables(rrdbnet.VGGStyleDiscriminator(features=2), (1, 96, 96, 3))


# Scanned nets (stacked block parameters): (model, input shape, stacked entry, the unrolled nets' per-block names)
SCANNED = {
    "vdsr": (vdsr.VDSR(num_layers=5, features=8), (2, 8, 8, 3), "body", {"conv1", "conv2", "conv3"}),
    "rrdbnet": (rrdbnet.RRDBNet(num_blocks=3, features=8, growth=4), (2, 8, 8, 3), "body",
                {"body_0", "body_1", "body_2"}),
    "rcan": (rcan.RCAN(num_groups=2, num_blocks=3, features=16, reduction=4), (2, 8, 8, 3), "groups",
             {"group_0", "group_1"}),
}


@pytest.mark.parametrize("name", sorted(SCANNED))
def test_scanned_blocks_map_to_per_block_trees_and_loop_alike(name):
  """Stacked <-> per-block trees (older checkpoints) convert both ways; loops of 1 or 2 blocks an
  iteration give the unrolled scan's output."""
  model, shape, entry, per_block_names = SCANNED[name]
  layouts = legacy_layout.layouts(model)
  x = jnp.asarray(_uniform(shape, seed=5))  # VDSR resizes NumPy input with NumPy
  stacked = _init(model, x)["params"]
  assert entry in stacked and not legacy_layout.is_per_block(stacked, layouts)
  legacy = legacy_layout.to_per_block(stacked, layouts)
  assert per_block_names <= set(legacy) and entry not in legacy and legacy_layout.is_per_block(legacy, layouts)
  if name == "rcan":
    assert set(legacy["group_0"]) == {"rcab_0", "rcab_1", "rcab_2", "conv"}
  assert sum(x.size for x in jax.tree.leaves(legacy)) == sum(x.size for x in jax.tree.leaves(stacked))
  jax.tree.map(np.testing.assert_array_equal, legacy_layout.to_stacked(legacy, layouts), stacked)
  raw = {"params": {"generator": legacy}, "opt": [{"mu": {"generator": legacy}}, 0]}  # a raw restored state
  state = legacy_layout.upgrade_state(raw, layouts)
  assert jax.tree.structure(state) == jax.tree.structure(
      {"params": {"generator": stacked}, "opt": [{"mu": {"generator": stacked}}, 0]})

  @_jit
  def outputs(stacked, x):
    looped = model.clone(scan_unroll=1, remat=True)  # a real loop (as on GPU/TPU; CPUs unroll by default)
    grad = jax.grad(lambda p: jnp.sum(looped.apply({"params": p}, x)))(stacked)
    two = model.clone(scan_unroll=2)  # two blocks an iteration (accelerators' inference), odd lengths too
    return (model.apply({"params": stacked}, x), looped.apply({"params": stacked}, x),
            two.apply({"params": stacked}, x)), grad

  (out, *others), grad = outputs(stacked, x)
  assert jax.tree.structure(grad) == jax.tree.structure(stacked)

  for other in others:
    np.testing.assert_allclose(other, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SCANNED))
def test_accelerators_loop_one_block_when_training_and_two_at_inference(name, monkeypatch):
  """``layers.repeat``'s default: unrolled on a CPU; on a GPU/TPU a loop of ACCELERATOR_UNROLL[train]
  blocks an iteration (read from the scan in the traced program)."""
  model, shape, *_ = SCANNED[name]
  x = jnp.zeros(shape)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))

  def unrolls(train):
    jaxpr = jax.make_jaxpr(lambda p: model.apply(p, x, train=train))(params)
    return {e.params["unroll"] for e in _equations(jaxpr.jaxpr) if e.primitive.name == "scan"}

  lengths = {"vdsr": 3, "rrdbnet": 3, "rcan": 2}  # the outer scan's blocks: fully unrolled on a CPU
  assert lengths[name] in unrolls(True) and lengths[name] in unrolls(False)
  monkeypatch.setattr(layers.jax, "default_backend", lambda: "gpu")
  assert layers.ACCELERATOR_UNROLL == {True: 1, False: 2}
  assert unrolls(True) == {1}
  assert 2 in unrolls(False)  # RCAN's inner RCAB scan keeps one block an iteration


def _equations(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():  # scan / pjit / remat bodies (closed jaxprs or jaxprs)
      inner = getattr(value, "jaxpr", value)
      if hasattr(inner, "eqns"):
        yield from _equations(inner)
