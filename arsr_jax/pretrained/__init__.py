"""Pretrained SR models shipped in the package: ``load(name) -> (model, variables)`` ready for apply.

  from arsr_jax import pretrained
  from arsr_jax.steps.sr import apply_sr
  model, variables = pretrained.load("corpus_x4")        # or pretrained.default(4)
  sr = apply_sr(model, variables, lr, train=False)       # lr (..., h, w, 3) in [0, 1] -> (..., 4h, 4w, 3)

Each model is ``<name>.msgpack`` (``flax.serialization`` msgpack of the variables: arrays only,
no pickle, no code) and a card ``<name>.json``: the recipe and network, the data, steps, the
study's numbers and the exact commands that reproduce it (``arsr_jax/studies/export_pretrained.py``
writes both from a finished ``python -m arsr_jax.studies.corpus_study`` run).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import serialization

from arsr_jax import models

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = {4: "corpus_x4", 8: "corpus_x8"}  # scale -> the model `enhance` uses without --model


def names() -> list[str]:
  """The shipped model names (a card and its weights both present)."""
  return sorted(f[:-5] for f in os.listdir(DIRECTORY)
                if f.endswith(".json") and os.path.exists(os.path.join(DIRECTORY, f[:-5] + ".msgpack")))


def default(scale: int = 4) -> str:
  if scale not in DEFAULTS:
    raise ValueError(f"no pretrained model for x{scale}; shipped scales: {sorted(DEFAULTS)}")
  return DEFAULTS[scale]


def card(name: str) -> dict[str, Any]:
  """The JSON card of a shipped model; raises FileNotFoundError naming the shipped ones."""
  path = os.path.join(DIRECTORY, f"{name}.json")
  if name not in names():
    raise FileNotFoundError(f"no pretrained model {name!r}; shipped: {names() or 'none'}")
  with open(path) as f:
    return json.load(f)


def build(c: dict[str, Any]):
  """The SR network (float32) that a card describes."""
  return models.build_model(c["model"]["name"], int(c["scale"]), **c["model"].get("kwargs", {}))


def load(name: str):
  """(model, variables) of a shipped model; variables {'params', ...} as float32 arrays."""
  c = card(name)
  model = build(c)
  lr = (1, 8, 8, 3)
  template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(lr, jnp.float32), train=False))
  with open(os.path.join(DIRECTORY, f"{name}.msgpack"), "rb") as f:
    state = serialization.msgpack_restore(f.read())
  variables = serialization.from_state_dict(template, state)
  for want, got in zip(jax.tree.leaves(template), jax.tree.leaves(variables)):
    if tuple(want.shape) != tuple(jnp.shape(got)):
      raise ValueError(f"pretrained {name}: stored arrays do not fit {c['model']}")
  return model, jax.tree.map(jnp.asarray, variables)
