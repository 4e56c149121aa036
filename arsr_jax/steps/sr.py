"""SR train and eval steps (pure; the SR job jits them with shardings).

Batches are dicts of global arrays shaped by the sampler (data/pipeline.py):
'lr' (B, [S,] [K,] h, w, C), 'hr' (B, [S,] H, W, C), 'flow' (B, [S-1,] H, W, 2),
frames in [0, 1], flow in HR pixels. The SR network sees its own input rank
(one frame, or a K-frame window / a clip); extra leading axes are folded into
the batch, so the same network serves single frames, siamese pairs and clips.

Parameters and model state are nested under 'generator' (the SR network) and,
for adversarial recipes, 'discriminator'. Generator and discriminator are
updated in one step from one backward pass: the generator's adversarial loss
sees the discriminator through ``stop_gradient`` and the discriminator's loss
sees ``stop_gradient(sr)``, which is exactly BasicSR's alternating G-then-D
update on the same batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from arsr_jax import losses, models
from arsr_jax.media import degrade
from arsr_jax.metrics import image as image_metrics
from arsr_jax.steps import state as state_lib
from arsr_jax.steps.state import TrainState


def apply_sr(model: nn.Module, variables, lr: jax.Array, *, train: bool, mutable=False, **kwargs):
  """Runs the SR network on ``lr`` with any number of extra leading axes.

  Returns SR frames with lr's leading axes (and the updated collections if
  ``mutable``); networks with extra outputs (DVSR's foreground attention)
  return a dict {'sr', ...} of such arrays (see ``split_output``).
  """
  nd = models.input_ndim(model)
  lead = lr.shape[:lr.ndim - nd + 1]
  out = model.apply(variables, lr.reshape((-1,) + lr.shape[lr.ndim - nd + 1:]), train=train,
                    mutable=mutable, **kwargs)
  sr, new_state = out if mutable else (out, None)
  sr = jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), sr)
  return (sr, new_state) if mutable else sr


def split_output(out) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(SR frames, extra outputs such as {'attention': (..., H, W, 1)}) of a network's output."""
  if isinstance(out, dict):
    return out["sr"], {k: v for k, v in out.items() if k != "sr"}
  return out, {}


FRAME_KEYS = ("lr", "hr", "flow_frames")


def as_float(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """uint8 frames ('lr', 'hr', 'flow_frames') -> float32 in [0, 1] and float16 flow (pixels) ->
  float32, on the device; other keys (labels) and float32 inputs pass through unchanged."""
  return {k: state_lib.device_float(v, k in FRAME_KEYS) if k in FRAME_KEYS or k == "flow" else v
          for k, v in batch.items()}


def with_flow(batch: dict[str, jax.Array], flow_fn: Callable | None) -> dict[str, jax.Array]:
  """Replaces 'flow_frames' (..., H, W, 6), pairs of HR frames, by their flow (..., H, W, 2).

  ``flow_fn(frame0, frame1)`` maps (N, H, W, 3) pairs to (N, H, W, 2) flow in
  pixels (e.g. TV-L1); it is treated as a constant (no gradient).
  """
  if "flow_frames" not in batch:
    return batch
  if flow_fn is None:
    raise ValueError("The batch carries 'flow_frames' but no flow function was configured")
  pairs = batch["flow_frames"]
  lead, (h, w) = pairs.shape[:-3], pairs.shape[-3:-1]
  pairs = pairs.reshape((-1, h, w, 6))
  flow = jax.lax.stop_gradient(flow_fn(pairs[..., :3], pairs[..., 3:]))
  out = {k: v for k, v in batch.items() if k != "flow_frames"}
  out["flow"] = flow.reshape(lead + (h, w, 2))
  return out


def match_target(sr: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The batch's HR frames and flow at the SR output's size (intermediate progressive stages).

  A clip model may output fewer frames (T / f, centred on frames 0, f, 2f, ...)
  at a lower resolution (H / r) than the HR clip; the HR frames are then
  strided in time and bicubic-downsampled, the flow strided and resized with
  its vectors rescaled. Returns the batch unchanged when shapes already match.
  """
  hr = batch["hr"]
  if sr.shape == hr.shape:
    return batch
  if sr.ndim != 5 or hr.ndim != 5:
    raise ValueError(f"SR output {sr.shape} does not match HR {hr.shape}")
  tf, r = hr.shape[1] // sr.shape[1], hr.shape[2] // sr.shape[2]
  out = dict(batch, hr=degrade.bicubic_downsample(hr[:, ::tf], r))
  if "flow" in batch and batch["flow"].ndim == 5:
    flow = batch["flow"][:, ::tf]
    out["flow"] = degrade.resize_flow(flow, flow.shape[2] // r, flow.shape[3] // r) * tf
  return out


def lr_frames_for(lr: jax.Array, hr: jax.Array) -> jax.Array:
  """The LR frames that correspond to ``hr``'s frames: the centre of K-frame windows,
  and every f-th frame when a clip model outputs T / f frames."""
  if lr.ndim == hr.ndim + 1:  # K-frame windows
    lr = lr[..., lr.shape[-4] // 2, :, :, :]
  if lr.ndim == 5 and lr.shape[1] != hr.shape[1]:  # fewer output frames
    lr = lr[:, ::lr.shape[1] // hr.shape[1]]
  return lr


def no_call_kwargs(step: jax.Array) -> dict[str, Any]:
  del step
  return {}


@dataclasses.dataclass(frozen=True)
class SRSetup:
  """What an SR train step needs: the networks, the objective and how to update them.

  model: the SR network; objective: ``losses.Objective``; tx/schedule: the
  optimizer over {'generator'[, 'discriminator']} and its learning rate;
  discriminator (+ gan_weight, gan_type): adversarial recipes; call_kwargs(step):
  extra network arguments per step (progressive fade-in alpha); flow_fn: flow of
  batches that carry frame pairs (see ``with_flow``); ema_decay: EMA generator.
  """
  model: nn.Module
  objective: losses.Objective
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  discriminator: nn.Module | None = None
  gan_weight: float = 0.0
  gan_type: str = "ragan"
  call_kwargs: Callable[[jax.Array], dict[str, Any]] = no_call_kwargs
  flow_fn: Callable | None = None
  ema_decay: float | None = None


def make_init_fn(setup: SRSetup, lr_shape: tuple[int, ...], hr_shape: tuple[int, ...] | None = None
                 ) -> Callable[[jax.Array], TrainState]:
  """rng -> TrainState of the generator (input ``lr_shape``) and discriminator (input ``hr_shape``)."""
  nets = {"generator": (setup.model, (lr_shape,))}
  if setup.discriminator is not None:
    nets["discriminator"] = (setup.discriminator, (hr_shape,))
  return state_lib.make_init_fn(nets, setup.tx, ema_of="generator" if setup.ema_decay else None)


def make_train_step(setup: SRSetup):
  """``train_step(state, batch, frozen, rng) -> (state, metrics)``.

  ``frozen`` holds fixed networks' variables the objective needs (e.g. VGG
  features), replicated and never updated. The loss is averaged over the
  global batch, so under data-parallel jit the gradients are the global
  average. ``rng`` is the run's base key; the step's is ``fold_in(rng, step)``.
  Metrics: loss, grad_norm, nonfinite, learning_rate, the objective's terms
  and, adversarial recipes, gan_g / gan_d (float32 scalars).
  """
  gan = setup.discriminator is not None
  model = setup.model

  def train_step(state: TrainState, batch: dict[str, jax.Array], frozen: Any, rng: jax.Array):
    rng = jax.random.fold_in(rng, state.step)
    batch = with_flow(as_float(batch), setup.flow_fn)
    g_mutable = list(state.model_state["generator"])

    def loss_fn(params):
      g_vars = {"params": params["generator"], **state.model_state["generator"]}
      out = apply_sr(model, g_vars, batch["lr"], train=True, rngs={"dropout": rng},
                     mutable=g_mutable or False, **setup.call_kwargs(state.step))
      out, g_state = out if g_mutable else (out, state.model_state["generator"])
      sr, extras = split_output(out)
      target = match_target(sr, batch)
      loss, aux = setup.objective(sr, {**target, **extras}, frozen)
      new_model_state = {"generator": g_state}
      if gan:
        loss, aux, new_model_state["discriminator"] = _gan_terms(
            setup.discriminator, params["discriminator"], state.model_state["discriminator"], sr, target["hr"],
            loss, aux, setup.gan_weight, losses.gan_losses(setup.gan_type))
      return loss, (aux, new_model_state)

    (loss, (aux, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state, metrics = state_lib.apply_gradients(state, grads, loss, setup.tx, new_model_state, setup.ema_decay)
    return new_state, state_lib.scalar_metrics(**metrics, learning_rate=setup.schedule(state.step), **aux)

  return train_step


def _gan_terms(disc, d_params, d_state, sr, hr, g_loss, aux, gan_weight, gan_fns):
  """Adds the GAN losses (e.g. relativistic average); returns (loss, aux, new discriminator state)."""
  g_fn, d_fn = gan_fns
  fold = lambda x: x.reshape((-1,) + x.shape[-3:])  # noqa: E731  frames only
  sr, hr = fold(sr), fold(hr)
  d_mutable = list(d_state) or False

  def run(params, x, state):
    out = disc.apply({"params": params, **state}, x, train=True, mutable=d_mutable)
    return out if d_mutable else (out, state)

  # Discriminator's view: SR frames fixed (BatchNorm statistics follow the D pass).
  real_d, new_state = run(d_params, hr, d_state)
  fake_d, new_state = run(d_params, jax.lax.stop_gradient(sr), new_state)
  gan_d = d_fn(real_d, fake_d)
  # Generator's view: discriminator fixed. D(hr) with the fixed parameters and the incoming state
  # is real_d's value (BatchNorm in training mode uses batch statistics), so it is not recomputed:
  # one discriminator pass less to run and to compile.
  fake_g, _ = run(jax.lax.stop_gradient(d_params), sr, d_state)
  gan_g = g_fn(jax.lax.stop_gradient(real_d), fake_g)
  d_state = new_state
  aux = {**aux, "gan_g": gan_g, "gan_d": gan_d}
  return g_loss + gan_weight * gan_g + gan_d, aux, flax.core.unfreeze(d_state)


EVAL_KEYS = ("psnr", "ssim", "psnr_moving", "ssim_moving")


def make_eval_step(model: nn.Module, border: int, moving_threshold: float,
                   call_kwargs: dict[str, Any] | None = None, flow_fn: Callable | None = None):
  """Builds ``eval_step(variables, batch) -> dict`` of per-frame metrics (B, S).

  Keys: '{method}_{metric}' for method in (bicubic, model) and metric in
  EVAL_KEYS, one value per HR frame (S frames per item: 1, or the frames of a
  clip). 'moving' metrics only use pixels whose HR flow magnitude exceeds
  ``moving_threshold`` pixels. Bicubic upsamples the item's own LR frame (the
  centre of a K-frame window) to the model's output size.
  """
  def eval_step(variables, batch):
    batch = as_float(batch)
    sr, _ = split_output(apply_sr(model, variables, batch["lr"], train=False, **(call_kwargs or {})))
    batch = match_target(sr, with_flow(batch, flow_fn))
    hr = batch["hr"]
    lr_frames = lr_frames_for(batch["lr"], hr)
    outputs = {"bicubic": jnp.clip(degrade.bicubic_upsample(lr_frames, hr.shape[-2] // lr_frames.shape[-2]), 0, 1),
               "model": sr}
    fold = lambda x: x.reshape((-1,) + x.shape[-3:])  # noqa: E731  (B*S, H, W, C)
    moving = image_metrics.moving_mask(fold(batch["flow"]), moving_threshold)
    per_item = lambda x: x.reshape((hr.shape[0], -1))  # noqa: E731  (B, S)
    result = {}
    for method, out in outputs.items():
      sr_f, hr_f = fold(out), fold(hr)
      result[f"{method}_psnr"] = per_item(image_metrics.psnr_y(sr_f, hr_f, border=border))
      result[f"{method}_ssim"] = per_item(image_metrics.ssim_y(sr_f, hr_f, border=border))
      result[f"{method}_psnr_moving"] = per_item(image_metrics.psnr_y(sr_f, hr_f, border=border, mask=moving))
      result[f"{method}_ssim_moving"] = per_item(image_metrics.ssim_y(sr_f, hr_f, border=border, mask=moving))
    return result

  return eval_step
