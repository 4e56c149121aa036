"""Pure loss functions and the SR training objectives built from them.

Frames are (N, H, W, C) float in [0, 1]; flow is (N, H, W, 2) in HR pixels.
Every loss returns a scalar averaged over all elements (and channels).
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(pred - target))


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.mean(jnp.abs(pred - target))


def flow_magnitude(flow: jax.Array) -> jax.Array:
  """(..., H, W, 2) flow in pixels -> (..., H, W) magnitude sqrt(u^2 + v^2)."""
  return jnp.sqrt(jnp.sum(jnp.square(flow.astype(jnp.float32)), axis=-1))


def weighted_mse(pred: jax.Array, target: jax.Array, weights: jax.Array) -> jax.Array:
  """SoSR's WMSE (paper eq. 1): mean over pixels of w(x) * ||pred(x) - target(x)||^2 / C.

  Args:
    pred, target: (N, H, W, C) frames.
    weights: (N, H, W) per-pixel weights, e.g. ``flow_magnitude(hr_flow)``;
      static pixels (weight 0) contribute nothing.
  """
  return jnp.mean(weights[..., None] * jnp.square(pred - target))


# ---------------------------------------------------------------------------
# Objectives: (sr, batch) -> (loss, aux metrics). ``batch`` holds at least
# 'hr' (N, H, W, C) and, for flow-weighted losses, 'flow' (N, H, W, 2).

Objective = Callable[[jax.Array, Mapping[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]


def _mse_objective(cfg: ml_collections.ConfigDict) -> Objective:
  del cfg

  def objective(sr, batch):
    loss = mse(sr, batch["hr"])
    return loss, {"mse": loss}
  return objective


def _l1_objective(cfg: ml_collections.ConfigDict) -> Objective:
  del cfg

  def objective(sr, batch):
    loss = l1(sr, batch["hr"])
    return loss, {"l1": loss}
  return objective


def _sosr_objective(cfg: ml_collections.ConfigDict) -> Objective:
  """(1 - a) * WMSE + a * perceptual (paper's VDSR-based SoSR, a = 5.29e-5)."""
  a = float(cfg.get("perceptual_weight", 0.0))
  if a != 0.0:
    raise NotImplementedError(
        "loss.perceptual_weight != 0 needs the VGG16 perceptual loss, which is not implemented "
        "yet (model-zoo issue); set --config.loss.perceptual_weight=0")

  def objective(sr, batch):
    wmse = weighted_mse(sr, batch["hr"], flow_magnitude(batch["flow"]))
    return (1.0 - a) * wmse, {"wmse": wmse, "mse": mse(sr, batch["hr"])}
  return objective


OBJECTIVES: dict[str, Callable[[ml_collections.ConfigDict], Objective]] = {
    "mse": _mse_objective,
    "l1": _l1_objective,
    "sosr": _sosr_objective,
}


def build_objective(cfg: ml_collections.ConfigDict) -> Objective:
  if cfg.name not in OBJECTIVES:
    raise ValueError(f"Unknown loss {cfg.name!r}; known losses: {sorted(OBJECTIVES)}")
  return OBJECTIVES[cfg.name](cfg)
