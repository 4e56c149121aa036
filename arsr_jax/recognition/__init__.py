"""Frozen action recognisers used to measure and guide action-oriented video SR.

``RECOGNIZERS`` maps a config name to a Flax module class; ``INPUT_KINDS`` the input kinds it
takes, ``input_kind(config.recognizer)`` the one a config's recognizer consumes (the kind the data
pipeline samples, data/recognition_data.py, and the steps feed; all apply as
``module.apply(variables, *inputs, train=...)`` and return float32 logits):
  'rgb', 'flow':  TSN (``recognizer.modality``), snippets (N, S, H, W, C) of RGB frames or stacked
                  flow -> (N, K);
  'two_stream':   ST-ResNet, RGB (N, S, H, W, 3) and stacked flow (N, S, H, W, 2L)
                  -> {'spatial': (N, K), 'temporal': (N, K)};
  'clip':         I3D and 3D ResNets, RGB clips (N, T, H, W, 3) -> (N, K).
RGB is in [0, 1] ([-1, 1] for I3D, see its ``preprocess``) and flow in pixels as (u, v); the
networks normalise their inputs themselves.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import ml_collections

from arsr_jax import models
from arsr_jax.recognition.i3d import I3D
from arsr_jax.recognition.resnet3d import ResNet3D, WideResNet3D
from arsr_jax.recognition.st_resnet import STResNet
from arsr_jax.recognition.tsn import TSN

RECOGNIZERS: dict[str, type[nn.Module]] = {
    "tsn": TSN,
    "st_resnet": STResNet,
    "i3d": I3D,
    "resnet3d": ResNet3D,
    "wide_resnet3d": WideResNet3D,  # ResNet3D with widen_factor=2 (Hara's WideResNet-50, k=2)
}

KINDS = ("rgb", "flow", "two_stream", "clip")

INPUT_KINDS: dict[str, tuple[str, ...]] = {  # the first is the default
    "tsn": ("rgb", "flow"),
    "st_resnet": ("two_stream",),
    "i3d": ("clip",),
    "resnet3d": ("clip",),
    "wide_resnet3d": ("clip",),
}


def input_kind(recognizer: ml_collections.ConfigDict) -> str:
  """What a recognizer config consumes (one of KINDS): TSN's ``modality`` 'flow' -> 'flow', else its default."""
  kinds = INPUT_KINDS.get(recognizer.name)
  if kinds is None:
    raise ValueError(f"Unknown recognizer {recognizer.name!r}; use one of {sorted(RECOGNIZERS)}")
  return "flow" if "flow" in kinds and recognizer.get("modality", "rgb") == "flow" else kinds[0]


def build_recognizer(name: str, **kwargs: Any) -> nn.Module:
  """RECOGNIZERS[name](**kwargs), with clear errors for bad names or options."""
  return models.build(RECOGNIZERS, "recognizer", name, **kwargs)
