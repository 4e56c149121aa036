"""``config.task='recognition'``: an action recognizer trained on HR clips, as a ``train.Job``.

The trained recognizer is the frozen black box of the evaluation protocol
(evaluation/protocol.py), which restores it from this run's workdir. It is
evaluated on the HR test videos with TSN's test sampling (eval.num_segments
segments): the protocol's 'hr' ceiling for this one network.
"""

from __future__ import annotations

import jax
import ml_collections

from arsr_jax import config_lib, optim, precision, recognition
from arsr_jax.data import recognition_data
from arsr_jax.evaluation.recognition_eval import RecognitionEvaluator
from arsr_jax.steps import recognition as rec_steps
from arsr_jax.train import Job


def resolve(config: ml_collections.ConfigDict) -> str:
  """Checks the recognizer config against the data and fills in what the data decides
  (``recognizer.num_classes``, the flow stack length); returns the input kind."""
  config_lib.validate(config)
  if not config.recognizer.get("name"):
    raise ValueError(f"task='recognition' needs recognizer.name; one of {sorted(recognition.RECOGNIZERS)}")
  kind = recognition_data.input_kind(config.recognizer)
  n = recognition_data.num_classes(config)
  have = config.recognizer.get("num_classes")
  if have not in (None, n):
    raise ValueError(f"recognizer.num_classes={have} but {config.data.name} has {n} classes")
  with config.unlocked():
    config.recognizer.num_classes = n
    if kind in ("flow", "two_stream"):  # the network's input channels follow the data's flow stacks
      length = config.recognizer.get("new_length")
      if length not in (None, config.data.new_length):
        raise ValueError(f"recognizer.new_length={length} differs from data.new_length={config.data.new_length}")
      config.recognizer.new_length = config.data.new_length
  return kind


def recognition_job(config: ml_collections.ConfigDict) -> Job:
  """The Job of a recognizer; sets ``config.recognizer.num_classes`` from the data."""
  kind = resolve(config)
  dtype = precision.compute_dtype(config.compute_dtype)
  model = recognition.build_recognizer(config.recognizer.name,
                                       **precision.net_kwargs(config.recognizer, recognition.RECOGNIZERS, dtype))
  schedule = optim.build_schedule(config.optimizer, config.train.num_steps)
  tx = optim.per_network({"recognizer": optim.build_optimizer(config.optimizer, config.train.num_steps)})
  source = recognition_data.recognition_source(config, config.data.train_split, kind)
  example = recognition_data.sampler(config, kind, train=True).sample(source[0], None)

  def describe(state):
    n_params = sum(x.size for x in jax.tree.leaves(state.params["recognizer"]))
    return (f"{config.recognizer.name} ({kind} input, {config.recognizer.num_classes} classes): "
            f"{n_params} parameters")

  return Job(init_fn=rec_steps.make_init_fn(model, tx, kind, example),
             train_step=rec_steps.make_train_step(model, tx, schedule, kind), frozen={},
             iterator=lambda batch: recognition_data.train_iterator(config, kind, batch, config.seed),
             evaluator=RecognitionEvaluator(config, model, kind),
             eval_variables=lambda state: {"params": state.params["recognizer"],
                                           **state.model_state["recognizer"]},
             describe=describe)
