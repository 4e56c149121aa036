"""Optax optimizers and learning-rate schedules from a config.

``config.optimizer`` keys: name (adam | adamw | sgd), learning_rate,
schedule (constant | cosine | step), warmup_steps, boundaries/decay_factor
(step schedule, boundaries in steps), b1, b2, weight_decay, momentum,
grad_clip_norm (0 disables), bias_lr_factor (learning rate of parameters named 'bias'
relative to the others: Caffe's lr_mult, e.g. SoSR's 1e-3 weights / 1e-4 biases = 0.1).
"""

from __future__ import annotations

import jax
import ml_collections
import optax


def build_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  lr = float(cfg.learning_rate)
  warmup = int(cfg.get("warmup_steps", 0))
  name = cfg.get("schedule", "constant")
  if name == "constant":
    main = optax.constant_schedule(lr)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1))
  elif name == "step":
    bounds = {int(b) - warmup: float(cfg.get("decay_factor", 0.1)) for b in cfg.boundaries}
    main = optax.piecewise_constant_schedule(lr, bounds)
  else:
    raise ValueError(f"Unknown optimizer.schedule {name!r}; use constant, cosine or step")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  schedule = build_schedule(cfg, total_steps)
  name = cfg.name
  if name == "adam":
    opt = optax.adam(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999))
  elif name == "adamw":
    opt = optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999),
                      weight_decay=cfg.get("weight_decay", 1e-4))
  elif name == "sgd":
    opt = optax.sgd(schedule, momentum=cfg.get("momentum", 0.9))
    if cfg.get("weight_decay", 0.0):  # L2 on the gradient, as Caffe/PyTorch SGD
      opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), opt)
  else:
    raise ValueError(f"Unknown optimizer.name {name!r}; use adam, adamw or sgd")
  bias_factor = cfg.get("bias_lr_factor")
  if bias_factor is not None and float(bias_factor) != 1.0:  # linear in the update: = lr x factor
    opt = optax.chain(opt, optax.masked(optax.scale(float(bias_factor)), _bias_mask))
  clip = float(cfg.get("grad_clip_norm", 0.0))
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt


def _bias_mask(params):
  """True for leaves whose last path key is 'bias'."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: bool(path) and getattr(path[-1], "key", None) == "bias", params)


def per_network(txs: dict[str, optax.GradientTransformation]) -> optax.GradientTransformation:
  """One optimizer per top-level entry of the params tree ({'generator': ..., 'discriminator': ...})."""
  return optax.multi_transform(txs, lambda params: {k: k for k in params})
