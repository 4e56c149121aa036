"""Pure step functions: the train state, its initialization, train and eval steps.

No I/O and no device placement here: ``train.py`` jits these with shardings.
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

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from arsr_jax import losses
from arsr_jax.data import degrade
from arsr_jax.evaluation import metrics as iq


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint must hold to continue training exactly."""
  step: jax.Array  # int32 scalar: number of updates applied so far
  params: Any  # {'generator': ..., ['discriminator': ...]}
  opt_state: Any
  model_state: Any  # non-trainable collections (batch_stats), nested like params
  ema_params: Any = None  # exponential moving average of the generator's params (or None)


def input_ndim(model: nn.Module) -> int:
  """Rank of one network input: 4 for frame models (N, h, w, C), 5 for video models."""
  return getattr(model, "INPUT_NDIM", 4)


def apply_sr(model: nn.Module, variables, lr: jax.Array, *, train: bool, mutable=False, **kwargs):
  """Runs the SR network on ``lr`` with any number of extra leading axes.

  Returns SR frames with lr's leading axes (and the updated collections if
  ``mutable``); networks with extra outputs (DVSR's foreground attention)
  return a dict {'sr', ...} of such arrays (see ``split_output``).
  """
  nd = input_ndim(model)
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


def make_init_fn(model: nn.Module, tx: optax.GradientTransformation, lr_shape: tuple[int, ...],
                 discriminator: nn.Module | None = None, hr_shape: tuple[int, ...] | None = None,
                 ema: bool = False) -> Callable[[jax.Array], TrainState]:
  """rng -> TrainState, to be jitted with ``out_shardings`` (parameters born sharded).

  Parameters are drawn with the non-partitionable threefry: they are
  replicated, so nothing is lost, and XLA compiles it an order of magnitude
  faster (minutes -> seconds for DUF-52 on a CPU).
  """
  def init(rng):
    with jax.threefry_partitionable(False):
      return _init(rng)

  def _init(rng):
    g_rng, d_rng = jax.random.split(rng)
    nets = {"generator": (model, g_rng, lr_shape)}
    if discriminator is not None:
      nets["discriminator"] = (discriminator, d_rng, hr_shape)
    params, model_state = {}, {}
    for name, (net, key, shape) in nets.items():
      variables = flax.core.unfreeze(net.init({"params": key, "dropout": key}, jnp.zeros(shape), train=False))
      params[name] = variables.pop("params", {})
      model_state[name] = variables
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      model_state=model_state, ema_params=params["generator"] if ema else None)
  return init


def metrics_collection(names: list[str]) -> type[clu_metrics.Collection]:
  """A clu Collection averaging each named scalar over steps (and devices)."""
  return clu_metrics.Collection.create(**{n: clu_metrics.Average.from_output(n) for n in names})


TRAIN_METRICS = ("loss", "grad_norm", "nonfinite", "learning_rate")


def make_train_step(model: nn.Module, objective: losses.Objective, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, aux_names: list[str],
                    discriminator: nn.Module | None = None, gan_weight: float = 0.0, gan_type: str = "ragan",
                    call_kwargs: Callable[[jax.Array], dict[str, Any]] = lambda step: {},
                    flow_fn: Callable | None = None, ema_decay: float | None = None):
  """Builds ``train_step(state, batch, frozen, rng) -> (state, metrics)``.

  ``frozen`` holds fixed networks' variables the objective needs (e.g. VGG
  features), replicated and never updated. The loss is averaged over the
  global batch, so under data-parallel jit the gradients are the global
  average. ``rng`` is the run's base key; the step's is ``fold_in(rng, step)``.
  ``call_kwargs(step)`` gives extra network arguments (progressive fade-in);
  ``flow_fn`` computes flow for batches that carry frame pairs (see with_flow);
  ``ema_decay`` updates ``state.ema_params`` (ESRGAN evaluates the EMA generator).
  """
  gan = discriminator is not None
  names = list(TRAIN_METRICS) + aux_names + (["gan_g", "gan_d"] if gan else [])
  collection = metrics_collection(names)

  def train_step(state: TrainState, batch: dict[str, jax.Array], frozen: Any, rng: jax.Array):
    rng = jax.random.fold_in(rng, state.step)
    batch = with_flow(batch, flow_fn)
    g_mutable = list(state.model_state["generator"])

    def loss_fn(params):
      g_vars = {"params": params["generator"], **state.model_state["generator"]}
      out = apply_sr(model, g_vars, batch["lr"], train=True, rngs={"dropout": rng},
                     mutable=g_mutable or False, **call_kwargs(state.step))
      out, g_state = out if g_mutable else (out, state.model_state["generator"])
      sr, extras = split_output(out)
      target = match_target(sr, batch)
      loss, aux = objective(sr, {**target, **extras}, frozen)
      new_model_state = {"generator": g_state}
      if gan:
        loss, aux, new_model_state["discriminator"] = _gan_terms(
            discriminator, params["discriminator"], state.model_state["discriminator"], sr, target["hr"],
            loss, aux, gan_weight, losses.gan_losses(gan_type))
      return loss, (aux, new_model_state)

    (loss, (aux, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(global_norm(params))
    ema = state.ema_params
    if ema_decay:
      ema = optax.incremental_update(params["generator"], ema, 1.0 - ema_decay)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=flax.core.unfreeze(new_model_state), ema_params=ema)
    metrics = collection.single_from_model_output(
        loss=loss, grad_norm=grad_norm, nonfinite=jnp.logical_not(finite).astype(jnp.float32),
        learning_rate=schedule(state.step), **aux)
    return new_state, metrics

  return train_step, collection


def _gan_terms(disc, d_params, d_state, sr, hr, g_loss, aux, gan_weight, gan_fns):
  """Adds the GAN losses (e.g. relativistic average); returns (loss, aux, new discriminator state)."""
  g_fn, d_fn = gan_fns
  fold = lambda x: x.reshape((-1,) + x.shape[-3:])  # noqa: E731  frames only
  sr, hr = fold(sr), fold(hr)
  d_mutable = list(d_state) or False

  def run(params, x, state):
    out = disc.apply({"params": params, **state}, x, train=True, mutable=d_mutable)
    return out if d_mutable else (out, state)

  # Generator's view: discriminator fixed.
  fixed = jax.lax.stop_gradient(d_params)
  real_g, _ = run(fixed, hr, d_state)
  fake_g, _ = run(fixed, sr, d_state)
  gan_g = g_fn(jax.lax.stop_gradient(real_g), fake_g)
  # Discriminator's view: SR frames fixed (BatchNorm statistics follow the D pass).
  real_d, d_state = run(d_params, hr, d_state)
  fake_d, d_state = run(d_params, jax.lax.stop_gradient(sr), d_state)
  gan_d = d_fn(real_d, fake_d)
  aux = {**aux, "gan_g": gan_g, "gan_d": gan_d}
  return g_loss + gan_weight * gan_g + gan_d, aux, flax.core.unfreeze(d_state)


def global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


EVAL_KEYS = ("psnr", "ssim", "psnr_moving", "ssim_moving")


def make_eval_step(model: nn.Module, border: int, moving_threshold: float,
                   call_kwargs: dict[str, Any] | None = None, flow_fn: Callable | None = None):
  """Builds ``eval_step(variables, batch) -> dict`` of per-frame metrics (B * S,).

  Keys: '{method}_{metric}' for method in (bicubic, model) and metric in
  EVAL_KEYS, one value per HR frame (S frames per item for clips), plus
  'valid' (False on padding). 'moving' metrics only use pixels whose HR flow
  magnitude exceeds ``moving_threshold`` pixels. Bicubic upsamples the item's
  own LR frame (the centre of a K-frame window) to the model's output size.
  """
  def eval_step(variables, batch):
    sr, _ = split_output(apply_sr(model, variables, batch["lr"], train=False, **(call_kwargs or {})))
    batch = match_target(sr, with_flow(batch, flow_fn))
    hr = batch["hr"]
    lr_frames = lr_frames_for(batch["lr"], hr)
    outputs = {"bicubic": jnp.clip(degrade.bicubic_upsample(lr_frames, hr.shape[-2] // lr_frames.shape[-2]), 0, 1),
               "model": sr}
    fold = lambda x: x.reshape((-1,) + x.shape[-3:])  # noqa: E731  (B*S, H, W, C)
    moving = iq.moving_mask(fold(batch["flow"]), moving_threshold)
    result = {"valid": jnp.repeat(batch["valid"], fold(hr).shape[0] // hr.shape[0])}
    for method, sr in outputs.items():
      sr_f, hr_f = fold(sr), fold(hr)
      result[f"{method}_psnr"] = iq.psnr_y(sr_f, hr_f, border=border)
      result[f"{method}_ssim"] = iq.ssim_y(sr_f, hr_f, border=border)
      result[f"{method}_psnr_moving"] = iq.psnr_y(sr_f, hr_f, border=border, mask=moving)
      result[f"{method}_ssim_moving"] = iq.ssim_y(sr_f, hr_f, border=border, mask=moving)
    return result

  return eval_step
