"""Pure step functions for training action recognizers on HR clips.

Batches come from ``data/recognition_data.py``: 'rgb' (B, S, H, W, 3) and/or
'flow' (B, S, H, W, 2L) segments, or 'clip' (B, T, H, W, 3), frames in [0, 1]
and flow in pixels, plus 'label' (B,) int32 or (B, C) multi-hot float32.
The recognizer's parameters live under ``params['recognizer']`` of the same
``TrainState`` the SR recipes use, so checkpointing and the loop are shared.
Networks with two heads (ST-ResNet) return {'spatial', 'temporal'} logits;
both are trained, and accuracy is measured on their TSN fusion.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from arsr_jax import steps
from arsr_jax.recognition import tsn

INPUT_KEYS = {"rgb": ("rgb",), "flow": ("flow",), "two_stream": ("rgb", "flow"), "clip": ("clip",)}


def model_inputs(model: nn.Module, kind: str, batch: dict[str, jax.Array]) -> tuple[jax.Array, ...]:
  """The positional inputs of ``model`` for an input ``kind``; I3D gets RGB in [-1, 1]."""
  inputs = tuple(batch[k] for k in INPUT_KEYS[kind])
  if type(model).__name__ == "I3D":
    inputs = tuple(2.0 * x - 1.0 for x in inputs)
  return inputs


def apply(model: nn.Module, variables, kind: str, batch, *, train: bool, **kwargs) -> Any:
  """Logits dict ({'logits'} or {'spatial', 'temporal'}) (and new state if ``mutable``)."""
  out = model.apply(variables, *model_inputs(model, kind, batch), train=train, **kwargs)
  if kwargs.get("mutable"):
    logits, new_state = out
    return as_dict(logits), new_state
  return as_dict(out)


def as_dict(logits) -> dict[str, jax.Array]:
  return dict(logits) if isinstance(logits, dict) else {"logits": logits}


def scores(logits: dict[str, jax.Array], fusion_weights: Sequence[float] = (1.0, 1.5)) -> jax.Array:
  """One (B, C) score per item: the logits, or the TSN fusion of spatial and temporal."""
  if "logits" in logits:
    return logits["logits"]
  return tsn.fuse([logits["spatial"], logits["temporal"]], fusion_weights)


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy for class indices (B,), sigmoid BCE for multi-hot labels (B, C)."""
  logits = logits.astype(jnp.float32)
  if labels.ndim == logits.ndim:
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(score: jax.Array, labels: jax.Array) -> jax.Array:
  """Top-1 accuracy; for multi-hot labels, the top-1 class is one of the true ones."""
  pred = jnp.argmax(score, -1)
  if labels.ndim == score.ndim:
    return jnp.take_along_axis(labels, pred[:, None], axis=1)[:, 0].astype(jnp.float32).mean()
  return (pred == labels).astype(jnp.float32).mean()


def make_init_fn(model: nn.Module, tx: optax.GradientTransformation, kind: str,
                 example: dict[str, Any]) -> Callable[[jax.Array], steps.TrainState]:
  """rng -> TrainState with params {'recognizer': ...}; ``example`` gives one input's shapes."""
  shapes = {k: (1, *example[k].shape) for k in INPUT_KEYS[kind]}

  def init(rng):
    with jax.threefry_partitionable(False):
      dummy = {k: jnp.zeros(s, jnp.float32) for k, s in shapes.items()}
      variables = flax.core.unfreeze(model.init({"params": rng, "dropout": rng},
                                                *model_inputs(model, kind, dummy), train=False))
      params = {"recognizer": variables.pop("params")}
      return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                              model_state={"recognizer": variables})
  return init


TRAIN_METRICS = ("loss", "accuracy", "grad_norm", "nonfinite", "learning_rate")


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule, kind: str):
  """``train_step(state, batch, frozen, rng) -> (state, metrics)`` (``frozen`` unused, for the loop)."""
  collection = steps.metrics_collection(list(TRAIN_METRICS))

  def train_step(state: steps.TrainState, batch, frozen, rng):
    del frozen
    rng = jax.random.fold_in(rng, state.step)
    mutable = list(state.model_state["recognizer"]) or False

    def loss_fn(params):
      variables = {"params": params["recognizer"], **state.model_state["recognizer"]}
      out = apply(model, variables, kind, batch, train=True, rngs={"dropout": rng}, mutable=mutable)
      logits, new_state = out if mutable else (out, state.model_state["recognizer"])
      loss = sum(classification_loss(v, batch["label"]) for v in logits.values())
      return loss, (logits, new_state)

    (loss, (logits, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = steps.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(steps.global_norm(params))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state={"recognizer": flax.core.unfreeze(new_state)})
    metrics = collection.single_from_model_output(
        loss=loss, accuracy=accuracy(scores(logits), batch["label"]), grad_norm=grad_norm,
        nonfinite=jnp.logical_not(finite).astype(jnp.float32), learning_rate=schedule(state.step))
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, kind: str):
  """``eval_step(variables, batch) -> logits dict``: frozen (running BatchNorm statistics)."""
  def eval_step(variables, batch):
    return {k: v.astype(jnp.float32) for k, v in apply(model, variables, kind, batch, train=False).items()}
  return eval_step
