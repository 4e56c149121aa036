"""Numerical precision of the networks: the compute dtype and the network kwargs that carry it.

Parameters always stay float32; ``compute_dtype`` is what activations and
convolutions run in ('auto': bfloat16 on GPU/TPU, float32 on CPU).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str, platform: str | None = None) -> jnp.dtype:
  """'auto' = bfloat16 on GPU/TPU, float32 on CPU; else 'float32' or 'bfloat16'. ``platform``: the
  one 'auto' decides for (default: ``jax.default_backend()``; e.g. 'gpu' for a deviceless compile)."""
  if name == "auto":
    name = "float32" if (platform or jax.default_backend()) == "cpu" else "bfloat16"
  if name not in DTYPES:
    raise ValueError(f"Unknown compute_dtype {name!r}; use auto, float32 or bfloat16")
  return jnp.dtype(name)


def net_kwargs(section: ml_collections.ConfigDict, family: Mapping[str, type], dtype) -> dict[str, Any]:
  """A network config section (``name`` + fields) as constructor kwargs, adding ``dtype`` when the
  network named in ``family`` (a plain name -> Flax module class dict) has such a field."""
  kwargs = {k: v for k, v in section.to_dict().items() if k != "name"}
  cls = family.get(section.name)
  if cls is not None and "dtype" in getattr(cls, "__dataclass_fields__", {}) and "dtype" not in kwargs:
    kwargs["dtype"] = dtype
  return kwargs
