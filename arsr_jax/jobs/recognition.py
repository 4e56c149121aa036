"""``config.task='recognition'``: an action recognizer trained on HR clips, as a ``train.Job``.

The trained recognizer is the frozen black box of the evaluation protocol
(evaluation/protocol.py), which restores it from this run's workdir. It is
evaluated on the HR test videos with TSN's test sampling (eval.num_segments
segments): the protocol's 'hr' ceiling for this one network.

With ``data.sr_input`` ('bicubic' or an SR workdir) the recognizer is trained and evaluated on that
frozen SR network's outputs instead (TinyVIRAT eq. 4: "classifier is trained by using final DVSR
network outputs"): LR clips -> SR (eval mode, inside the jitted step) -> data.resize -> classifier.
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections

from arsr_jax import config_lib, optim, precision, recognition, sharding
from arsr_jax.data import recognition_data
from arsr_jax.evaluation import frozen as frozen_lib
from arsr_jax.evaluation.recognition_eval import RecognitionEvaluator
from arsr_jax.steps import protocol as protocol_steps
from arsr_jax.steps import recognition as rec_steps
from arsr_jax.train import Job


def resolve(config: ml_collections.ConfigDict) -> str:
  """Checks the recognizer config against the data and fills in what the data decides
  (``recognizer.num_classes``, the flow stack length); returns the input kind."""
  if not config.recognizer.get("name"):
    raise ValueError(f"task='recognition' needs recognizer.name; one of {sorted(recognition.RECOGNIZERS)}")
  kind = recognition.input_kind(config.recognizer)
  n = recognition_data.num_classes(config.data)
  have = config.recognizer.get("num_classes")
  if have not in (None, n):
    raise ValueError(f"recognizer.num_classes={have} but {config.data.name} has {n} classes")
  with config.unlocked():
    config.recognizer.num_classes = n
    if kind in ("flow", "two_stream"):  # the network's input channels follow the data's flow stacks
      length = config.recognizer.get("flow_stack")
      if length not in (None, config.data.flow_stack):
        raise ValueError(f"recognizer.flow_stack={length} differs from data.flow_stack={config.data.flow_stack}")
      config.recognizer.flow_stack = config.data.flow_stack
  return kind


def recognition_job(config: ml_collections.ConfigDict) -> Job:
  """The Job of a recognizer; sets ``config.recognizer.num_classes`` from the data."""
  kind = resolve(config)
  dtype = precision.compute_dtype(config.compute_dtype)
  model = recognition.build_recognizer(config.recognizer.name,
                                       **precision.net_kwargs(config.recognizer, recognition.RECOGNIZERS, dtype))
  schedule = optim.build_schedule(config.optimizer, config.train.num_steps)
  tx = optim.per_network({"recognizer": optim.build_optimizer(config.optimizer, config.train.num_steps)})
  source = recognition_data.recognition_source(config.data, config.data.train_split, kind)
  example = recognition_data.sampler(config.data, kind, train=True).sample(source[0], None)
  sr, frozen = sr_input(config, kind, dtype)
  prepare = make_prepare(sr, config.scale, int(config.data.resize)) if sr is not None else None
  if prepare is not None:
    seen = jax.eval_shape(lambda b: prepare(frozen, b), {"clip": example["clip"][None]})["clip"]
    example = dict(example, clip=jax.ShapeDtypeStruct(seen.shape[1:], seen.dtype))  # what the classifier sees

  def describe(state):
    n_params = sum(x.size for x in jax.tree.leaves(state.params["recognizer"]))
    return (f"{config.recognizer.name} ({kind} input, {config.recognizer.num_classes} classes): "
            f"{n_params} parameters")

  return Job(init_fn=rec_steps.make_init_fn(model, tx, kind, example),
             train_step=rec_steps.make_train_step(model, tx, schedule, kind, prepare), frozen=frozen,
             iterator=lambda batch: recognition_data.train_iterator(config.data, kind, batch, config.seed),
             evaluator=RecognitionEvaluator(config, model, kind,
                                            prepare and (lambda batch: prepare(frozen, batch))),
             eval_variables=lambda state: {"params": state.params["recognizer"],
                                           **state.model_state["recognizer"]},
             describe=describe)


def make_prepare(sr, scale: int, size: int):
  """``prepare(frozen, batch) -> batch``: 'clip' LR (B, T, h, w, 3) -> ``sr``'s output (B, T, H, W, 3) in
  [0, 1] at 8-bit levels (as saved SR frames), resized to size x size when size > 0; a FrozenSR
  takes its variables from ``frozen['sr']`` (the training loop's replicated copy)."""
  def prepare(frozen, batch):
    net = dataclasses.replace(sr, variables=frozen["sr"]) if isinstance(sr, frozen_lib.FrozenSR) else sr
    return dict(batch, clip=protocol_steps.super_resolve_clips(net, batch["clip"], scale, size))
  return prepare


def sr_input(config: ml_collections.ConfigDict, kind: str, dtype) -> tuple[object, dict]:
  """(SR source, frozen variables) of ``data.sr_input``: (None, {}) for HR frames, ('bicubic', {}), or
  (the workdir's FrozenSR, {'sr': its variables}); refuses what would silently be wrong."""
  name = config.data.get("sr_input", "")
  if not name:
    return None, {}
  if kind != "clip":
    raise ValueError(f"data.sr_input={name!r} needs a clip recognizer (I3D, 3D ResNets); "
                     f"{config.recognizer.name} takes {kind!r} inputs")
  if name == protocol_steps.BICUBIC:
    return name, {}
  sr = frozen_lib.load_sr(name, sharding.replicated(sharding.make_mesh()), dtype)
  if sr.scale != config.scale:
    raise config_lib.Mismatch(f"data.sr_input={name} is a {sr.scale}x SR network but scale={config.scale}; "
                              f"set --config.scale={sr.scale}")
  if not (sr.is_clip_model or sr.input_frames == 1):
    raise ValueError(f"data.sr_input={name} consumes {sr.input_frames}-frame windows; use a clip or frame model")
  return sr, {"sr": sr.variables}
