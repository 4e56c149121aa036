"""Pure loss functions and the SR training objectives built from them.

Frames are (..., H, W, C) float in [0, 1]; flow is (..., H, W, 2) in HR pixels.
Pixel losses return a scalar averaged over all elements.

An objective is ``objective(sr, batch, frozen) -> (loss, aux)``: ``sr`` has the
shape of ``batch['hr']`` (frames, siamese pairs (B, 2, H, W, C) or clips),
``frozen`` holds fixed networks' variables (VGG features, a frozen classifier),
``aux`` named scalars for logging. ``build_objective(cfg)`` returns the
objective and its frozen variables. Each objective declares its ``loss.*``
keys and their defaults once (``OBJECTIVE_KEYS``); ``resolve`` refuses any
other key and fills the defaults. Objectives that need a frozen action
recognizer (recognition-guided SR, recognition consistency) are handed it as a
``Recognizer`` by the caller, which restores it; this module never loads checkpoints.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from arsr_jax import perceptual
from arsr_jax.flow.warp import warp
from arsr_jax.metrics import image as image_metrics


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


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy for class indices (B,), sigmoid BCE for multi-hot labels (B, C)."""
  logits = logits.astype(jnp.float32)
  if labels.ndim == logits.ndim:
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


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


def spmc_motion_terms(lr: jax.Array, flow: jax.Array) -> dict[str, jax.Array]:
  """SPMC's motion-estimation terms (Tao et al. ICCV 2017, Sec. 3.1): L_ME = warp + lambda_1 smoothness.

  lr (B, K, h, w, C) windows (reference: the centre frame 0); flow (B, K, h, w, 2) the flows F_i from
  frame i to the reference, LR pixels. 'warp': sum over i of mean |I_i - W(I_0, F_i)|, W sampling I_0
  at p + F_i(p) (I_0 moved onto frame i's grid); 'smoothness': sum over i of the mean |grad F_i|
  (horizontal + vertical differences); both averaged over the batch.
  """
  k = lr.shape[1]
  warped = warp(jnp.broadcast_to(lr[:, k // 2:k // 2 + 1], lr.shape), flow)
  grad = jnp.mean(jnp.abs(jnp.diff(flow, axis=-2))) + jnp.mean(jnp.abs(jnp.diff(flow, axis=-3)))
  return {"warp": k * jnp.mean(jnp.abs(lr - warped)), "smoothness": k * grad}


# ---------------------------------------------------------------------------
# Objectives.

Objective = Callable[[jax.Array, Mapping[str, jax.Array], Any], tuple[jax.Array, dict[str, jax.Array]]]


def _configured_pixel_loss(name: str, cfg: ml_collections.ConfigDict):
  """pixel_loss(name) with its option from the loss config (Huber's delta)."""
  return pixel_loss(name, **({"delta": cfg.delta} if name == "huber" else {}))


def _pixel_objective(cfg: ml_collections.ConfigDict):
  fn = _configured_pixel_loss(cfg.name, cfg)

  def objective(sr, batch, frozen):
    del frozen
    loss = fn(sr, batch["hr"])
    return loss, {cfg.name: loss}
  return objective, {}


def _sosr_objective(cfg: ml_collections.ConfigDict):
  """(1 - a) * WMSE + a * perceptual (paper's VDSR-based SoSR, a = 5.29e-5)."""
  a = float(cfg.perceptual_weight)
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


def _spmc_objective(cfg: ml_collections.ConfigDict):
  """SPMC's losses (Tao et al. ICCV 2017, Sec. 3-4); needs model.name='spmc' (its training outputs).

    sr_weight * L_SR + flow_weight * (warp + smoothness_weight * smoothness)

  L_SR = sum_i kappa_i MSE(I_0^(i), I_0^H) over the K ConvLSTM steps' outputs (``step_weights``
  kappa, default 1/K each: the paper weights the steps but we could not read its values); warp and
  smoothness are ``spmc_motion_terms``. ``space='y'`` (default) compares BT.601 luma in [0, 1],
  as the paper trains on Y; 'rgb' all channels. The paper's phases: 1 motion only
  (sr_weight 0, flow_weight 1, smoothness_weight lambda_1 = 0.01), 2 fusion only (motion frozen),
  3 joint (flow_weight lambda_2).
  """
  sr_w, flow_w, smooth_w = float(cfg.sr_weight), float(cfg.flow_weight), float(cfg.smoothness_weight)
  space = cfg.space
  if space not in ("y", "rgb"):
    raise ValueError(f"loss.space must be 'y' or 'rgb', got {space!r}")
  step_weights = cfg.step_weights
  to_space = (lambda x: image_metrics.rgb_to_y(x)[..., None] / 255.0) if space == "y" else (lambda x: x)  # noqa: E731

  def objective(sr, batch, frozen):
    del frozen
    if "sr_steps" not in batch or "lr_flow" not in batch:
      raise ValueError("loss.name='spmc' needs the SPMC network's training outputs (model.name='spmc')")
    steps, lr, hr = batch["sr_steps"], batch["lr"], batch["hr"]
    k = steps.shape[-4]
    kappa = jnp.full((k,), 1.0 / k) if step_weights is None else jnp.asarray(step_weights, jnp.float32)
    if kappa.shape != (k,):
      raise ValueError(f"loss.step_weights needs {k} weights (one per input frame), got {step_weights}")
    per_step = jnp.mean(jnp.square(to_space(steps) - to_space(hr)[..., None, :, :, :]), axis=(-3, -2, -1))
    aux = {"sr": jnp.mean(per_step @ kappa), "mse": mse(sr, hr)}
    aux.update(spmc_motion_terms(to_space(lr), batch["lr_flow"]))
    loss = sr_w * aux["sr"] + flow_w * (aux["warp"] + smooth_w * aux["smoothness"])
    return loss, aux
  return objective, {}


def _perceptual(cfg: ml_collections.ConfigDict):
  return perceptual.build(cfg, dtype=cfg.get("compute_dtype", "float32"))


def _l1_perceptual_objective(cfg: ml_collections.ConfigDict):
  """ESRGAN's generator content: pixel_weight * L1 (optionally flow-weighted) + perceptual_weight * VGG."""
  perceptual, frozen = _perceptual(cfg) if cfg.perceptual_weight else (None, {})
  weighted = bool(cfg.flow_weighted)

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


@dataclasses.dataclass(frozen=True)
class Recognizer:
  """A frozen action recognizer on clips, and its variables: ``apply(variables, clip) ->
  (logits (B, K), {endpoint: (B, ...) activations})`` for clips (B, T, H, W, 3) in [0, 1] (the
  function maps them to the network's input range); the endpoints may be {} (a clip classifier)."""
  apply: Callable[[Any, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]
  variables: Any


def _attention_objective(cfg: ml_collections.ConfigDict, classifier: Recognizer):
  """Recognition-guided SR (TinyVIRAT, Demir et al. ICPR 2020; UgurDemir/Tiny-VIRAT).

  A progressive DVSR with a foreground attention branch (``model.attention=True``;
  the network returns {'sr', 'attention'}) trained with

    l1_weight * L1(SR, HR)                                plain reconstruction (default 0)
    + attention_l1_weight * mean(sg(A) * |SR - HR|)       reconstruction weighted by the map
    + attention_action_weight * CE(C(sg(SR) * A), y)      weak supervision of the map through C
    + sparsity_weight * mean(A)                           L1 sparsity of the map
    + action_weight * CE(C(SR), y)                        joint SR + action fine-tuning

  where C is the frozen ``classifier``, sg stops gradients, A (B, T, H, W, 1) is in
  [0, 1] and y the clip's label (class index: softmax CE; multi-hot: sigmoid BCE).
  Defaults are the paper's phase 2: eq. 1 weights the reconstruction by F_att alone
  ("For the first phase training F_att is set to 1", Sec. III-B.4), eq. 2 adds CE through
  A and lambda * ||F_att||_1; the released conf/228l.py has exactly the keys
  l1_wloc 1.0 (detach_loc), loc 1.0 (CrossEntropyLoss) and loc_reg 5e-4 and no 'l1'
  key, so its trainer's plain L1 weight is 0. ``l1_weight=1`` (per-pixel weight 1 + A)
  is configs/dvsr_progressive_attention.py's 'l1_plus' variant.
  Batches need labels (``data.with_labels=True``) and full-size clips (patch_size 0)
  so the classifier sees what it was trained on.
  """
  w = {k: float(cfg[k]) for k in ("l1_weight", "attention_l1_weight", "attention_action_weight",
                                   "sparsity_weight", "action_weight")}

  def classify(frozen, clip):
    if clip.ndim != 5:
      raise ValueError(f"The attention objective needs clips (B, T, H, W, 3) (data.sampler='clip'), got {clip.shape}")
    return classifier.apply(frozen["classifier"], clip)[0]

  def objective(sr, batch, frozen):
    hr, label = batch["hr"], batch["label"]
    aux = {"l1": l1(sr, hr)}
    loss = w["l1_weight"] * aux["l1"]
    if "attention" in batch:
      att = batch["attention"].astype(jnp.float32)
      aux["attention_l1"] = jnp.mean(jax.lax.stop_gradient(att) * jnp.abs(sr - hr))
      masked = jax.lax.stop_gradient(sr) * att
      aux["attention_action"] = classification_loss(classify(frozen, masked), label)
      aux["attention_mean"] = jnp.mean(att)
      loss = (loss + w["attention_l1_weight"] * aux["attention_l1"]
              + w["attention_action_weight"] * aux["attention_action"] + w["sparsity_weight"] * aux["attention_mean"])
    if w["action_weight"]:
      aux["action"] = classification_loss(classify(frozen, sr), label)
      loss = loss + w["action_weight"] * aux["action"]
    return loss, aux

  return objective, {"classifier": classifier.variables}


def softened_kl(ref_logits: jax.Array, logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """Mean over the batch of T^2 KL(softmax(ref / T) || softmax(logits / T)); (B, K) -> scalar.

  T^2 keeps gradient sizes comparable across temperatures (Hinton et al., 2015)."""
  t = float(temperature)
  ref = jax.nn.log_softmax(ref_logits.astype(jnp.float32) / t, axis=-1)
  out = jax.nn.log_softmax(logits.astype(jnp.float32) / t, axis=-1)
  return t * t * jnp.mean(jnp.sum(jnp.exp(ref) * (ref - out), axis=-1))


def normalized_feature_distance(feat: jax.Array, ref: jax.Array, eps: float = 1e-6) -> jax.Array:
  """mean((feat - ref)^2) / mean(ref^2): a scale-free distance, so layers of different
  magnitude weigh alike; the normaliser is a constant (no gradient)."""
  feat, ref = feat.astype(jnp.float32), ref.astype(jnp.float32)
  return jnp.mean(jnp.square(feat - ref)) / (jax.lax.stop_gradient(jnp.mean(jnp.square(ref))) + eps)


def _consistency_objective(cfg: ml_collections.ConfigDict, recognizer: Recognizer):
  """Recognition consistency through a frozen black-box recognizer (no labels).

    pixel term (``cfg.pixel``: 'mse', or 'wmse' = SoSR's flow-weighted MSE)
    + kl_weight * T^2 KL(softmax(R(HR) / T) || softmax(R(SR) / T))
    + feature_weight * mean over ``feature_layers`` of normalized_feature_distance(R_l(SR), R_l(HR))

  R is the frozen recognizer (its variables are in ``frozen``, never trained); R(HR) is a
  constant, so gradients reach only the SR network through R(SR). sr and batch['hr'] are
  clips (B, T, H, W, 3) in [0, 1] (data.sampler='clip').
  """
  pix_name = cfg.pixel
  t, kw, fw = float(cfg.temperature), float(cfg.kl_weight), float(cfg.feature_weight)
  layers = tuple(cfg.feature_layers)

  def objective(sr, batch, frozen):
    hr = batch["hr"]
    if sr.ndim != 5:
      raise ValueError(f"The consistency objective needs clips (B, T, H, W, 3) (data.sampler='clip'), got {sr.shape}")
    if pix_name == "wmse":
      pix = weighted_mse(sr, hr, flow_magnitude(batch["flow"]))
    else:
      pix = mse(sr, hr)
    ref_logits, ref_feats = jax.lax.stop_gradient(recognizer.apply(frozen["recognizer"], hr))
    logits, feats = recognizer.apply(frozen["recognizer"], sr)
    aux = {pix_name: pix, "kl": softened_kl(ref_logits, logits, t)}
    loss = pix + kw * aux["kl"]
    if layers:
      aux["feature"] = sum(normalized_feature_distance(feats[k], ref_feats[k]) for k in layers) / len(layers)
      loss = loss + fw * aux["feature"]
    return loss, aux

  return objective, {"recognizer": recognizer.variables}


OBJECTIVES: dict[str, Callable[..., tuple[Objective, Any]]] = {
    "mse": _pixel_objective,
    "l1": _pixel_objective,
    "charbonnier": _pixel_objective,
    "huber": _pixel_objective,
    "sosr": _sosr_objective,
    "tosr": _tosr_objective,
    "spmc": _spmc_objective,  # needs model.name='spmc'
    "pixel_perceptual": _l1_perceptual_objective,
    "attention": _attention_objective,  # recognition-guided (TinyVIRAT); a Recognizer from loss.classifier
    "consistency": _consistency_objective,  # frozen-recognizer consistency; a Recognizer from loss.recognizer
}


REQUIRED = "<required>"  # a key the objective has no default for
_GAN = {"gan_type": "ragan", "gan_weight": 0.0}  # the adversarial term, with a discriminator (steps/sr.py)
_PERCEPTUAL = dict(perceptual.KEYS)
# loss.name -> its loss.* keys and their defaults, declared once (``resolve``).
OBJECTIVE_KEYS: dict[str, dict[str, Any]] = {
    "mse": {}, "l1": {}, "charbonnier": {}, "huber": {"delta": 0.01},
    "sosr": {"perceptual_weight": 0.0, **_PERCEPTUAL},
    "tosr": {"pixel": REQUIRED, "delta": 0.01, "a": REQUIRED, "b": REQUIRED, "c": REQUIRED},
    "spmc": {"sr_weight": 1.0, "flow_weight": 0.01, "smoothness_weight": 0.01, "space": "y", "step_weights": None},
    "pixel_perceptual": {"pixel_weight": REQUIRED, "perceptual_weight": REQUIRED, "flow_weighted": False,
                         **_PERCEPTUAL},
    "attention": {"classifier": None, "l1_weight": 0.0, "attention_l1_weight": 1.0, "attention_action_weight": 1.0,
                  "sparsity_weight": 5e-4, "action_weight": 0.0},
    "consistency": {"pixel": "mse", "temperature": 1.0, "kl_weight": REQUIRED, "feature_weight": REQUIRED,
                    "feature_layers": (), "recognizer": "kinetics400", "recognizer_dtype": "float32"},
}


def resolve(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config.loss`` with every key of its objective (defaults filled in); a key the objective does
  not declare, or a required one missing, is a ValueError naming it and the objective's keys."""
  if cfg.get("name") not in OBJECTIVES:
    raise ValueError(f"Unknown loss {cfg.get('name')!r}; known losses: {sorted(OBJECTIVES)}")
  keys = {**OBJECTIVE_KEYS[cfg.name], **_GAN}
  unknown = sorted(set(cfg) - set(keys) - {"name"})
  missing = sorted(k for k, v in keys.items() if v is REQUIRED and k not in cfg)
  if unknown or missing:
    close = difflib.get_close_matches(unknown[0], keys, n=1) if unknown else []
    problem = (f"unknown key(s) {', '.join(f'loss.{k}' for k in unknown)}" if unknown else
               f"missing key(s) {', '.join(f'loss.{k}' for k in missing)}")
    problem += f" (did you mean loss.{close[0]}?)" if close else ""
    raise ValueError(f"loss.name={cfg.name!r}: {problem}; its keys: {', '.join(sorted(keys))}")
  return ml_collections.ConfigDict({**keys, **cfg.to_dict()})


def needs_classifier(cfg: ml_collections.ConfigDict) -> bool:
  """Whether ``config.loss`` names an objective guided by the recognition workdir ``loss.classifier``."""
  return cfg.name in CLASSIFIER_OBJECTIVES


def needs_recognizer(cfg: ml_collections.ConfigDict) -> bool:
  """Whether ``config.loss`` names an objective guided by the frozen I3D of ``loss.recognizer``."""
  return cfg.name in RECOGNIZER_OBJECTIVES


CLASSIFIER_OBJECTIVES = ("attention",)
RECOGNIZER_OBJECTIVES = ("consistency",)


def build_objective(cfg: ml_collections.ConfigDict, compute_dtype: Any = "float32",
                    recognizer: Recognizer | None = None) -> tuple[Objective, Any]:
  """(objective, frozen variables) for ``config.loss``; fixed networks (VGG) compute in ``compute_dtype``.

  ``recognizer``: the frozen action recognizer of the recognition-guided objective (``needs_classifier``)
  or of the consistency objective (``needs_recognizer``).
  """
  cfg = resolve(cfg)
  cfg.compute_dtype = str(jnp.dtype(compute_dtype))
  if cfg.name in CLASSIFIER_OBJECTIVES + RECOGNIZER_OBJECTIVES:
    if recognizer is None:
      raise ValueError(f"loss.name={cfg.name!r} needs a frozen action recognizer "
                       f"({'loss.classifier' if cfg.name in CLASSIFIER_OBJECTIVES else 'loss.recognizer'})")
    return OBJECTIVES[cfg.name](cfg, recognizer)
  return OBJECTIVES[cfg.name](cfg)
