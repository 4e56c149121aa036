"""SR models: a plain dict from config name to Flax module class.

Every model maps LR frames (N, h, w, C) in [0, 1] to SR frames
(N, h*scale, w*scale, C) with ``module.apply(variables, lr, train=...)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from arsr_jax.models.bicubic import Bicubic
from arsr_jax.models.vdsr import VDSR

MODELS: dict[str, type[nn.Module]] = {
    "bicubic": Bicubic,
    "vdsr": VDSR,
}


def build_model(name: str, scale: int, **kwargs: Any) -> nn.Module:
  """Instantiates MODELS[name](scale=scale, **kwargs) with a clear error for bad names/kwargs."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; known models: {sorted(MODELS)}")
  cls = MODELS[name]
  fields = set(cls.__dataclass_fields__) - {"parent", "name"}
  unknown = set(kwargs) - fields
  if unknown:
    raise ValueError(f"Model {name!r} has no option(s) {sorted(unknown)}; it takes {sorted(fields - {'scale'})}")
  return cls(scale=scale, **kwargs)
