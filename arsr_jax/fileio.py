"""Paths and atomic writes for workdirs and outputs, local or remote.

Every workdir and output path goes through ``etils.epath`` (what Orbax and TFDS
use), so ``gs://bucket/run`` or any fsspec URL works wherever a local path does.
Writes go to a temporary sibling first and are renamed into place, so a reader
never sees a half-written file and an interrupted run leaves the old one intact.

JSON has no infinity or NaN: ``write_json`` writes +-inf (e.g. the PSNR of
identical frames) as the strings ``"inf"`` / ``"-inf"`` and NaN as ``null``
(``float("inf")`` reads the string back).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import uuid
from typing import Any

from etils import epath

PathLike = str | os.PathLike | epath.Path


def path(p: PathLike) -> epath.Path:
  """``p`` as an epath.Path; local paths are made absolute, URLs (gs://...) kept as they are."""
  if isinstance(p, epath.Path):
    return p
  s = os.fspath(p)
  return epath.Path(s if "://" in s else os.path.abspath(s))


def is_local(p: PathLike) -> bool:
  return "://" not in os.fspath(p) or os.fspath(p).startswith("file://")


def write_bytes(p: PathLike, data: bytes) -> epath.Path:
  """Atomically writes ``data`` to ``p`` (parents created); a failed write (e.g. a full disk)
  removes its temporary file and leaves ``p`` as it was."""
  p = path(p)
  p.parent.mkdir(parents=True, exist_ok=True)
  tmp = p.parent / f".{p.name}.{uuid.uuid4().hex[:8]}.tmp"
  try:
    tmp.write_bytes(data)
    tmp.replace(p)
  except BaseException:
    try:
      tmp.unlink(missing_ok=True)
    except OSError:
      pass
    raise
  return p


def write_text(p: PathLike, text: str) -> epath.Path:
  return write_bytes(p, text.encode("utf-8"))


def write_json(p: PathLike, obj: Any) -> epath.Path:
  """Atomically writes ``obj`` as strict JSON (+-inf as "inf" / "-inf", NaN as null)."""
  return write_text(p, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def json_safe(obj: Any) -> Any:
  """``obj`` with non-finite floats replaced: +-inf -> "inf" / "-inf", NaN -> None."""
  if isinstance(obj, dict):
    return {k: json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  if isinstance(obj, numbers.Real) and not isinstance(obj, (bool, numbers.Integral)) and not math.isfinite(obj):
    return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
  return obj


def read_json(p: PathLike) -> Any:
  """The JSON in ``p``; a clear error names the file when it is missing or malformed."""
  p = path(p)
  if not p.exists():
    raise FileNotFoundError(f"{p} does not exist")
  try:
    return json.loads(p.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{p} is not valid JSON: {e}") from e
