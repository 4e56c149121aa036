"""Foreground attention branch of (progressive) DVSR: shapes per stage and fade, parameter
nesting, BatchNorm state, and an SR output unchanged by the branch.

Structure is checked abstractly (``jax.eval_shape``); values with one tiny jitted model.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from arsr_jax.models import dvsr

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
_TINY = dict(features=8, growth=8)


def _abstract(model, shape, **kwargs):
  """(variables, output) shapes of init + apply on zeros of ``shape``."""
  clip = jnp.zeros(shape)

  def f():
    variables = model.init(jax.random.key(0), clip)
    return variables, model.apply(variables, clip, **kwargs)

  return jax.eval_shape(f)


def _flat(tree):
  return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(tree).items()}


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [None, 0.5])
def test_attention_matches_the_sr_output_at_every_stage(alpha):
  shape = (2, 8, 5, 6, 3)
  params_per_stage = []
  for k in (1, 2, 3):
    model = dvsr.ProgressiveDVSR(scale=8, stage=k, attention=True, **_TINY)
    variables, out = _abstract(model, shape, alpha=alpha)
    assert set(out) == {"sr", "attention"}
    t = 8 // 2 ** (3 - k)
    assert out["sr"].shape == (2, t, 5 << k, 6 << k, 3)
    assert out["attention"].shape == (2, t, 5 << k, 6 << k, 1)
    assert out["attention"].dtype == jnp.float32
    assert set(variables) == {"params", "batch_stats"}
    params_per_stage.append(set(_flat(variables["params"]).items()))
  assert params_per_stage[0] < params_per_stage[1] < params_per_stage[2]
  # Without temporal growth every stage keeps T frames; DVSR has the branch too.
  _, out = _abstract(dvsr.ProgressiveDVSR(stage=1, temporal_growth=False, attention=True, **_TINY), shape)
  assert out["attention"].shape == (2, 8, 10, 12, 1)
  _, out = _abstract(dvsr.DVSR(scale=8, num_blocks=1, features=8, growth=4, attention=True), (1, 3, 4, 5, 3))
  assert out["sr"].shape == (1, 3, 32, 40, 3) and out["attention"].shape == (1, 3, 32, 40, 1)


@pytest.mark.slow
def test_attention_off_is_unchanged_and_on_adds_only_the_branch():
  shape = (1, 4, 4, 4, 3)
  for make in (lambda **kw: dvsr.ProgressiveDVSR(**_TINY, **kw),
               lambda **kw: dvsr.DVSR(num_blocks=1, features=8, growth=4, **kw)):
    off_vars, off_out = _abstract(make(), shape)
    on_vars, _ = _abstract(make(attention=True), shape)
    assert set(off_vars) == {"params"} and not isinstance(off_out, dict)
    off, on = _flat(off_vars["params"]), _flat(on_vars["params"])
    assert off.items() < on.items()
    assert {path[0] for path in on.keys() - off.keys()} == {"attention"}
    assert {path[0] for path in _flat(on_vars["batch_stats"])} == {"attention"}


@pytest.mark.slow
def test_attention_values_grow_params_and_batch_stats():
  clip = jax.random.uniform(jax.random.key(3), (2, 4, 6, 6, 3))
  small = dvsr.ProgressiveDVSR(stage=1, attention=True, **_TINY)
  big = dvsr.ProgressiveDVSR(stage=2, attention=True, **_TINY)
  plain = dvsr.ProgressiveDVSR(stage=2, **_TINY)
  small_vars = small.init(jax.random.key(1), clip)
  big_vars = dvsr.grow_params(small_vars, big.init(jax.random.key(2), clip))
  np.testing.assert_array_equal(big_vars["params"]["attention"]["conv0"]["kernel"],
                                small_vars["params"]["attention"]["conv0"]["kernel"])

  @_jit
  def run(big_vars, clip):
    out = big.apply(big_vars, clip, alpha=0.5)
    ref = plain.apply({"params": {k: v for k, v in big_vars["params"].items() if k != "attention"}},
                      clip, alpha=0.5)
    train_out, new_state = big.apply(big_vars, clip, alpha=0.5, train=True, mutable=["batch_stats"])
    return out, ref, train_out, new_state

  out, ref, train_out, new_state = run(big_vars, clip)
  np.testing.assert_array_equal(out["sr"], ref)  # the branch does not touch the SR path
  for attn in (out["attention"], train_out["attention"]):
    assert attn.shape == (2, 4, 24, 24, 1)
    assert np.all((attn >= 0) & (attn <= 1)) and np.std(attn) > 0
  np.testing.assert_array_equal(train_out["sr"], out["sr"])  # train only changes the BatchNorms
  old = big_vars["batch_stats"]["attention"]["bn0"]["mean"]
  new = new_state["batch_stats"]["attention"]["bn0"]["mean"]
  assert old.shape == new.shape and not np.allclose(old, new)  # train mode updates running stats
