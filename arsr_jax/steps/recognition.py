"""Recognizer train and eval steps (pure; the recognition job jits them with shardings).

Batches come from ``data/recognition_data.py``: 'rgb' (B, S, H, W, 3) and/or
'flow' (B, S, H, W, 2L) segments, or 'clip' (B, T, H, W, 3), frames uint8 (or
float in [0, 1]) and flow in pixels, plus 'label' (B,) int32 or (B, C) multi-hot float32.
The recognizer's parameters live under ``params['recognizer']`` of the same
``TrainState`` the SR recipes use (steps/state.py), so the update, checkpoints
and the loop are shared.
Networks with two heads (ST-ResNet) return {'spatial', 'temporal'} logits;
both are trained, and accuracy is measured on their fusion (ST-ResNet's own 1 : 1,
see ``fusion_weights``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from arsr_jax import losses
from arsr_jax.recognition import tsn
from arsr_jax.steps import state as state_lib

INPUT_KEYS = {"rgb": ("rgb",), "flow": ("flow",), "two_stream": ("rgb", "flow"), "clip": ("clip",)}


def model_inputs(model: nn.Module, kind: str, batch: dict[str, jax.Array]) -> tuple[jax.Array, ...]:
  """The positional inputs of ``model`` for an input ``kind``.

  Frames arrive as uint8 (mapped to float32 [0, 1] here, on the device) or in [0, 1]; a network
  whose class declares ``INPUT_RANGE = (lo, hi)`` (I3D: (-1, 1)) gets RGB mapped to that range.
  Flow stays in pixels (float16 becomes float32).
  """
  inputs = tuple(state_lib.device_float(batch[k], k != "flow") for k in INPUT_KEYS[kind])
  lo, hi = getattr(type(model), "INPUT_RANGE", (0.0, 1.0))
  if (lo, hi) != (0.0, 1.0):
    inputs = tuple(lo + (hi - lo) * x if k != "flow" else x for k, x in zip(INPUT_KEYS[kind], inputs))
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


# Late fusion of the spatial and temporal scores, per recognizer (protocol.fusion_weights=() picks it):
TSN_FUSION = (1.0, 1.5)  # TSN: yjxiong/temporal-segment-networks eval_scores.py, --score_weights 1 1.5
# ST-ResNet: feichtenhofer/st-resnet cnn_train_dag.m averages the outputs of every prediction layer
# (``mean(mean(mean(frame_predictions),1),2)`` over the appearance and motion fc layers; stage 2
# keeps both, singleSoftMax = 0): equal weights.
ST_RESNET_FUSION = (1.0, 1.0)


def fusion_weights(two_stream_network: bool, configured: Sequence[float] = ()) -> tuple[float, float]:
  """(spatial, temporal) weights: ``configured`` if given, else ST-ResNet's 1 : 1 for a two-stream
  network (ST-ResNet) or TSN's 1 : 1.5 for two separate TSN streams."""
  if configured:
    return tuple(float(w) for w in configured)
  return ST_RESNET_FUSION if two_stream_network else TSN_FUSION


def scores(logits: dict[str, jax.Array], fusion_weights: Sequence[float] = TSN_FUSION) -> jax.Array:
  """One (B, C) score per item: the logits, or the TSN fusion of spatial and temporal."""
  if "logits" in logits:
    return logits["logits"]
  return tsn.fuse([logits["spatial"], logits["temporal"]], fusion_weights)


def accuracy(score: jax.Array, labels: jax.Array) -> jax.Array:
  """Top-1 accuracy; for multi-hot labels, the top-1 class is one of the true ones."""
  pred = jnp.argmax(score, -1)
  if labels.ndim == score.ndim:
    return jnp.take_along_axis(labels, pred[:, None], axis=1)[:, 0].astype(jnp.float32).mean()
  return (pred == labels).astype(jnp.float32).mean()


def make_init_fn(model: nn.Module, tx: optax.GradientTransformation, kind: str,
                 example: dict[str, Any]) -> Callable[[jax.Array], state_lib.TrainState]:
  """rng -> TrainState with params {'recognizer': ...}; ``example`` gives one input's shapes."""
  shapes = tuple((1, *example[k].shape) for k in INPUT_KEYS[kind])
  return state_lib.make_init_fn({"recognizer": (model, shapes)}, tx, split_rng=False)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule, kind: str,
                    prepare: Callable[[Any, dict], dict] | None = None):
  """``train_step(state, batch, frozen, rng) -> (state, metrics)``.

  ``prepare(frozen, batch) -> batch`` runs first, without gradients (e.g. a frozen SR network turning
  LR clips into the classifier's input, TinyVIRAT eq. 4); without it ``frozen`` is unused.

  Metrics: loss (summed over the heads), accuracy (of ST-ResNet's 1 : 1 fusion for
  two-head networks), grad_norm, nonfinite, learning_rate.
  """
  def train_step(state: state_lib.TrainState, batch, frozen, rng):
    if prepare is not None:
      batch = jax.lax.stop_gradient(prepare(frozen, batch))
    rng = jax.random.fold_in(rng, state.step)
    mutable = list(state.model_state["recognizer"]) or False

    def loss_fn(params):
      variables = {"params": params["recognizer"], **state.model_state["recognizer"]}
      out = apply(model, variables, kind, batch, train=True, rngs={"dropout": rng}, mutable=mutable)
      logits, new_state = out if mutable else (out, state.model_state["recognizer"])
      loss = sum(losses.classification_loss(v, batch["label"]) for v in logits.values())
      return loss, (logits, {"recognizer": new_state})

    (loss, (logits, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state, metrics = state_lib.apply_gradients(state, grads, loss, tx, new_state)
    return new_state, state_lib.scalar_metrics(**metrics, accuracy=accuracy(scores(logits, ST_RESNET_FUSION), batch["label"]),
                                               learning_rate=schedule(state.step))

  return train_step


def make_eval_step(model: nn.Module, kind: str, prepare: Callable[[dict], dict] | None = None):
  """``eval_step(variables, batch) -> logits dict``: frozen (running BatchNorm statistics);
  ``prepare(batch) -> batch`` first (e.g. the frozen SR of an SR-input recognizer)."""
  def eval_step(variables, batch):
    if prepare is not None:
      batch = prepare(batch)
    return {k: v.astype(jnp.float32) for k, v in apply(model, variables, kind, batch, train=False).items()}
  return eval_step
