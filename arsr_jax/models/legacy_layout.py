"""The per-block parameter names of the unrolled networks <-> the stacked trees of scanned blocks.

VDSR, RRDBNet and RCAN run their chains of identical blocks as one ``nn.scan``
(``layers.repeat``): the block parameters are stacked on a leading axis under one
name (VDSR ``body`` (L-2, ...), RRDBNet ``body`` (23, ...), RCAN ``groups`` (10, ...)
with ``groups/rcabs`` (10, 20, ...)). Before that, the nets were unrolled with one
entry per block (``conv1`` .. ``conv18``, ``body_0`` .. ``body_22``,
``group_G/rcab_B``), and PyTorch ports name the blocks so. This module is the one
place that knows those names: the ``.pth`` importer (models/convert.py) assigns
per-block names then stacks them, and ``python -m arsr_jax.upgrade WORKDIR``
converts a workdir written by the unrolled nets. The networks and the training
loop know only the stacked form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from arsr_jax.models import rcan, rrdbnet, vdsr

UPGRADE_COMMAND = "python -m arsr_jax.upgrade"


class Layout(NamedTuple):
  """A stacked parameter entry ``name`` <-> per-block entries ``per_block.format(start + i)``.

  ``length``: the number of blocks (None: as many consecutive entries as there are);
  ``inner``: layouts inside each block (RCAN's RCABs inside its residual groups).
  """
  name: str
  per_block: str
  start: int = 0
  length: int | None = None
  inner: tuple["Layout", ...] = ()


RRDBNET = (Layout("body", "body_{}"),)
RCAN = (Layout("groups", "group_{}", inner=(Layout("rcabs", "rcab_{}"),)),)


def layouts(model: Any) -> tuple[Layout, ...]:
  """The stacked entries of ``model`` (a network instance) and their per-block names; () if none."""
  if isinstance(model, vdsr.VDSR):
    return (Layout("body", "conv{}", start=1, length=model.num_layers - 2),) if model.num_layers > 2 else ()
  if isinstance(model, rrdbnet.RRDBNet):
    return RRDBNET
  if isinstance(model, rcan.RCAN):
    return RCAN
  return ()


def to_stacked(params: dict[str, Any], layouts: Sequence[Layout]) -> dict[str, Any]:
  """Per-block parameter tree -> stacked (NumPy arrays); entries already stacked are kept."""
  out = dict(params)
  for lay in layouts:
    i, blocks = lay.start, []
    while lay.per_block.format(i) in out and (lay.length is None or len(blocks) < lay.length):
      blocks.append(to_stacked(out.pop(lay.per_block.format(i)), lay.inner))
      i += 1
    if blocks:
      out[lay.name] = jax.tree.map(lambda *a: np.stack([np.asarray(b) for b in a]), *blocks)
  return out


def to_per_block(params: dict[str, Any], layouts: Sequence[Layout]) -> dict[str, Any]:
  """Stacked parameter tree -> per-block names (arrays, or ``jax.ShapeDtypeStruct`` templates)."""
  out = dict(params)
  for lay in layouts:
    if lay.name not in out:
      continue
    stacked = out.pop(lay.name)
    for i in range(jax.tree.leaves(stacked)[0].shape[0]):
      out[lay.per_block.format(lay.start + i)] = to_per_block(jax.tree.map(lambda a: _index(a, i), stacked),
                                                              lay.inner)
  return out


def is_per_block(params: Any, layouts: Sequence[Layout]) -> bool:
  """Whether ``params`` (a network's 'params' dict) holds per-block entries of ``layouts``."""
  return isinstance(params, dict) and any(lay.per_block.format(lay.start) in params for lay in layouts)


def upgrade_state(raw: Any, layouts: Sequence[Layout]) -> Any:
  """A raw restored SR train state (nested dicts, lists) with per-block generator entries -> stacked:
  every dict under a ``generator`` or ``ema_params`` key (parameters, EMA, optimizer moments)."""
  def walk(tree, key=None):
    if isinstance(tree, dict):
      if key in ("generator", "ema_params") and is_per_block(tree, layouts):
        return to_stacked(tree, layouts)
      return {k: walk(v, k) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
      return type(tree)(walk(v) for v in tree)
    return tree
  return walk(raw)


def refuse_per_block(params: Any, model: Any, source: str) -> None:
  """Raises ValueError (one line naming the upgrade command) when ``params`` of ``model`` have per-block names."""
  if is_per_block(params, layouts(model)):
    raise ValueError(f"{source} holds {type(model).__name__} parameters with per-block names (written before "
                     f"the blocks were scanned); convert it once with `{UPGRADE_COMMAND} {source}`")


def _index(a, i: int):
  if isinstance(a, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(a.shape[1:], a.dtype)
  return a[i]
