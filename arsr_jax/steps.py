"""Pure step functions: the train state, its initialization, train and eval steps.

No I/O and no device placement here: ``train.py`` jits these with shardings.
Batches are dicts of global arrays (see ``data/pipeline.py``): 'lr'
(B, h, w, C), 'hr' (B, H, W, C), 'flow' (B, H, W, 2), frames in [0, 1].
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from arsr_jax.data import degrade
from arsr_jax.evaluation import metrics as iq
from arsr_jax.losses import Objective


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint must hold to continue training exactly."""
  step: jax.Array  # int32 scalar: number of updates applied so far
  params: Any
  opt_state: Any
  model_state: Any  # non-trainable collections (e.g. batch_stats); {} if none


def make_init_fn(model: nn.Module, tx: optax.GradientTransformation, lr_shape: tuple[int, ...]
                 ) -> Callable[[jax.Array], TrainState]:
  """rng -> TrainState, to be jitted with ``out_shardings`` (parameters born sharded)."""
  def init(rng):
    variables = model.init({"params": rng, "dropout": rng}, jnp.zeros(lr_shape, jnp.float32), train=False)
    variables = flax.core.unfreeze(variables)
    params = variables.pop("params", {})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      model_state=variables)
  return init


def metrics_collection(names: list[str]) -> type[clu_metrics.Collection]:
  """A clu Collection averaging each named scalar over steps (and devices)."""
  return clu_metrics.Collection.create(**{n: clu_metrics.Average.from_output(n) for n in names})


TRAIN_METRICS = ("loss", "grad_norm", "nonfinite", "learning_rate")


def make_train_step(model: nn.Module, objective: Objective, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, aux_names: list[str]):
  """Builds ``train_step(state, batch, rng) -> (state, metrics)``.

  The loss is averaged over the global batch, so under data-parallel jit the
  gradients are the global-batch average. ``rng`` is the run's base key; the
  step's key is ``fold_in(rng, state.step)``.
  """
  collection = metrics_collection(list(TRAIN_METRICS) + aux_names)

  def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    rng = jax.random.fold_in(rng, state.step)
    mutable = list(state.model_state)

    def loss_fn(params):
      variables = {"params": params, **state.model_state}
      out = model.apply(variables, batch["lr"], train=True, rngs={"dropout": rng}, mutable=mutable or False)
      sr, new_model_state = out if mutable else (out, {})
      loss, aux = objective(sr, batch)
      return loss, (aux, new_model_state)

    (loss, (aux, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = _global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(_global_norm(params))
    nonfinite = jnp.logical_not(finite).astype(jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=flax.core.unfreeze(new_model_state) if mutable else state.model_state)
    metrics = collection.single_from_model_output(
        loss=loss, grad_norm=grad_norm, nonfinite=nonfinite, learning_rate=schedule(state.step), **aux)
    return new_state, metrics

  return train_step, collection


def _global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


EVAL_KEYS = ("psnr", "ssim", "psnr_moving", "ssim_moving")


def make_eval_step(model: nn.Module, scale: int, border: int, moving_threshold: float):
  """Builds ``eval_step(variables, batch) -> dict`` of per-frame metrics (B,).

  Keys: '{method}_{metric}' for method in (bicubic, model) and metric in
  EVAL_KEYS, plus 'valid' (padding frames are False). 'moving' metrics only
  use pixels whose HR flow magnitude exceeds ``moving_threshold`` pixels.
  """
  def eval_step(variables, batch):
    hr = batch["hr"]
    moving = iq.moving_mask(batch["flow"], moving_threshold)
    outputs = {"bicubic": jnp.clip(degrade.bicubic_upsample(batch["lr"], scale), 0, 1),
               "model": model.apply(variables, batch["lr"], train=False)}
    result = {"valid": batch["valid"]}
    for method, sr in outputs.items():
      result[f"{method}_psnr"] = iq.psnr_y(sr, hr, border=border)
      result[f"{method}_ssim"] = iq.ssim_y(sr, hr, border=border)
      result[f"{method}_psnr_moving"] = iq.psnr_y(sr, hr, border=border, mask=moving)
      result[f"{method}_ssim_moving"] = iq.ssim_y(sr, hr, border=border, mask=moving)
    return result

  return eval_step
