"""Pure loss functions and the SR training objectives built from them.

Frames are (..., H, W, C) float in [0, 1]; flow is (..., H, W, 2) in HR pixels.
Pixel losses return a scalar averaged over all elements.

An objective is ``objective(sr, batch, frozen) -> (loss, aux)``: ``sr`` has the
shape of ``batch['hr']`` (frames, siamese pairs (B, 2, H, W, C) or clips),
``frozen`` holds fixed networks' variables (VGG features), ``aux`` named scalars
for logging. ``build_objective(cfg)`` returns the objective and its frozen
variables.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from arsr_jax.flow.warp import warp


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(pred - target))


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.mean(jnp.abs(pred - target))


def charbonnier(pred: jax.Array, target: jax.Array, eps: float = 1e-3) -> jax.Array:
  return jnp.mean(jnp.sqrt(jnp.square(pred - target) + eps * eps))


def huber(pred: jax.Array, target: jax.Array, delta: float = 0.01) -> jax.Array:
  """Mean Huber loss: 0.5 e^2 for |e| <= delta, delta (|e| - 0.5 delta) beyond (PyTorch's)."""
  return jnp.mean(optax.huber_loss(pred, target, delta=delta))


PIXEL_LOSSES: dict[str, Callable[..., jax.Array]] = {
    "mse": mse, "l1": l1, "charbonnier": charbonnier, "huber": huber}


def pixel_loss(name: str, **kwargs) -> Callable[[jax.Array, jax.Array], jax.Array]:
  if name not in PIXEL_LOSSES:
    raise ValueError(f"Unknown pixel loss {name!r}; known: {sorted(PIXEL_LOSSES)}")
  fn = PIXEL_LOSSES[name]
  return lambda p, t: fn(p, t, **kwargs)


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


def relativistic_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """RaGAN (ESRGAN) discriminator loss; the other side's mean is a constant, as in BasicSR."""
  real = optax.sigmoid_binary_cross_entropy(real_logits - jnp.mean(jax.lax.stop_gradient(fake_logits)), 1.0)
  fake = optax.sigmoid_binary_cross_entropy(fake_logits - jnp.mean(jax.lax.stop_gradient(real_logits)), 0.0)
  return 0.5 * (jnp.mean(real) + jnp.mean(fake))


def relativistic_generator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """RaGAN generator loss: real should look less real than fake, fake more real than real."""
  real = optax.sigmoid_binary_cross_entropy(real_logits - jnp.mean(fake_logits), 0.0)
  fake = optax.sigmoid_binary_cross_entropy(fake_logits - jnp.mean(real_logits), 1.0)
  return 0.5 * (jnp.mean(real) + jnp.mean(fake))


def vanilla_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Standard GAN (SRGAN) discriminator loss: real -> 1, fake -> 0."""
  return 0.5 * (jnp.mean(optax.sigmoid_binary_cross_entropy(real_logits, 1.0))
                + jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, 0.0)))


def vanilla_generator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Non-saturating generator loss: fake -> 1 (real logits unused)."""
  del real_logits
  return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, 1.0))


GAN_LOSSES = {  # name -> (generator loss, discriminator loss), each (real_logits, fake_logits) -> scalar
    "ragan": (relativistic_generator_loss, relativistic_discriminator_loss),
    "vanilla": (vanilla_generator_loss, vanilla_discriminator_loss),
}


def gan_losses(name: str):
  if name not in GAN_LOSSES:
    raise ValueError(f"Unknown loss.gan_type {name!r}; known: {sorted(GAN_LOSSES)}")
  return GAN_LOSSES[name]


def tosr_terms(sr: jax.Array, hr: jax.Array, flow: jax.Array, loss: Callable) -> dict[str, jax.Array]:
  """The three ToSR terms on siamese pairs.

  Args:
    sr, hr: (B, 2, H, W, C) frames t and t+1.
    flow: (B, H, W, 2) HR flow t -> t+1.
    loss: pixel loss l(pred, target).
  Returns:
    {'content': l(HR_t, SR_t) + l(HR_t+1, SR_t+1), 'consistency': l(SR_t,
    warp(SR_t+1, F)), 'warp_hr': l(HR_t, warp(SR_t+1, F))}; warped samples
    that fall outside the frame are excluded.
  """
  warped, valid = warp(sr[:, 1], flow, return_mask=True)
  m = valid[..., None].astype(sr.dtype)
  return {"content": loss(sr[:, 0], hr[:, 0]) + loss(sr[:, 1], hr[:, 1]),
          "consistency": loss(m * sr[:, 0], m * warped),
          "warp_hr": loss(m * hr[:, 0], m * warped)}


# ---------------------------------------------------------------------------
# Objectives.

Objective = Callable[[jax.Array, Mapping[str, jax.Array], Any], tuple[jax.Array, dict[str, jax.Array]]]


def _configured_pixel_loss(name: str, cfg: ml_collections.ConfigDict):
  """pixel_loss(name) with its option from the loss config (Huber's delta, default 0.01)."""
  return pixel_loss(name, **({"delta": cfg.get("delta", 0.01)} if name == "huber" else {}))


def _pixel_objective(cfg: ml_collections.ConfigDict):
  fn = _configured_pixel_loss(cfg.name, cfg)

  def objective(sr, batch, frozen):
    del frozen
    loss = fn(sr, batch["hr"])
    return loss, {cfg.name: loss}
  return objective, {}


def _sosr_objective(cfg: ml_collections.ConfigDict):
  """(1 - a) * WMSE + a * perceptual (paper's VDSR-based SoSR, a = 5.29e-5)."""
  a = float(cfg.get("perceptual_weight", 0.0))
  perceptual, frozen = _perceptual(cfg) if a else (None, {})

  def objective(sr, batch, frozen):
    wmse = weighted_mse(sr, batch["hr"], flow_magnitude(batch["flow"]))
    aux = {"wmse": wmse, "mse": mse(sr, batch["hr"])}
    loss = (1.0 - a) * wmse
    if perceptual is not None:
      aux["perceptual"] = perceptual(frozen, sr, batch["hr"])
      loss = loss + a * aux["perceptual"]
    return loss, aux
  return objective, frozen


def _tosr_objective(cfg: ml_collections.ConfigDict):
  """a * content + b * consistency + c * warp_hr on siamese pairs (data.sampler='pair')."""
  fn = _configured_pixel_loss(cfg.pixel, cfg)
  a, b, c = float(cfg.a), float(cfg.b), float(cfg.c)

  def objective(sr, batch, frozen):
    del frozen
    if sr.ndim != 5 or sr.shape[1] != 2:
      raise ValueError(f"ToSR needs siamese pairs (B, 2, H, W, C) (data.sampler='pair'); got {sr.shape}")
    terms = tosr_terms(sr, batch["hr"], batch["flow"], fn)
    loss = a * terms["content"] + b * terms["consistency"] + c * terms["warp_hr"]
    return loss, terms
  return objective, {}


def _perceptual(cfg: ml_collections.ConfigDict):
  from arsr_jax import perceptual  # noqa: PLC0415  (VGG features; weights are optional)
  return perceptual.build(cfg, dtype=cfg.get("compute_dtype", "float32"))


def _l1_perceptual_objective(cfg: ml_collections.ConfigDict):
  """ESRGAN's generator content: pixel_weight * L1 (optionally flow-weighted) + perceptual_weight * VGG."""
  perceptual, frozen = _perceptual(cfg) if cfg.perceptual_weight else (None, {})
  weighted = bool(cfg.get("flow_weighted", False))

  def objective(sr, batch, frozen):
    hr = batch["hr"]
    if weighted:  # SoSR-ESRGAN (released code): L1(W * SR, W * HR), W = |HR flow|
      w = flow_magnitude(batch["flow"])[..., None]
      pix = l1(w * sr, w * hr)
    else:
      pix = l1(sr, hr)
    aux = {"pixel": pix}
    loss = cfg.pixel_weight * pix
    if perceptual is not None:
      aux["perceptual"] = perceptual(frozen, sr, hr)
      loss = loss + cfg.perceptual_weight * aux["perceptual"]
    return loss, aux
  return objective, frozen


def _attention_objective(cfg: ml_collections.ConfigDict):
  from arsr_jax.recognition import guidance  # noqa: PLC0415  (restores a frozen classifier)
  return guidance.attention_objective(cfg)


OBJECTIVES: dict[str, Callable[[ml_collections.ConfigDict], tuple[Objective, Any]]] = {
    "mse": _pixel_objective,
    "l1": _pixel_objective,
    "charbonnier": _pixel_objective,
    "huber": _pixel_objective,
    "sosr": _sosr_objective,
    "tosr": _tosr_objective,
    "pixel_perceptual": _l1_perceptual_objective,
    "attention": _attention_objective,  # recognition-guided (TinyVIRAT): recognition/guidance.py
}


def build_objective(cfg: ml_collections.ConfigDict, compute_dtype: Any = "float32") -> tuple[Objective, Any]:
  """(objective, frozen variables) for ``config.loss``; fixed networks (VGG) compute in ``compute_dtype``."""
  if cfg.name not in OBJECTIVES:
    raise ValueError(f"Unknown loss {cfg.name!r}; known losses: {sorted(OBJECTIVES)}")
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.compute_dtype = str(jnp.dtype(compute_dtype))
  return OBJECTIVES[cfg.name](cfg)
