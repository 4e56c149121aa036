"""Weight files never run code: payloads in every pickle of a PyTorch or NumPy file are refused.

The PyTorch files are written by hand (no torch needed): the legacy format is five pickles
(magic number, protocol version, system info, the state dict with storages as persistent
ids, the storage-key list) followed by the raw storages; the zip format is
`archive/data.pkl` plus `archive/data/<key>`. Each payload would create a marker file.
"""

import collections
import io
import os
import pickle
import shlex
import struct
import zipfile

import numpy as np
import pytest

from arsr_jax import perceptual, weights
from arsr_jax.models import convert

MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_SLOTS = ("magic", "protocol", "sys_info", "state", "keys")


class _Payload:
  """Unpickling this runs `touch marker` (what a hostile weight file would do)."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return os.system, (f"touch {shlex.quote(self.marker)}",)


class _Global:
  """A module attribute written as a pickle GLOBAL without importing its module."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):
    raise NotImplementedError


class _Storage:
  def __init__(self, key, array):
    self.key, self.array = key, np.ascontiguousarray(array, np.float32).ravel()


class _Call:
  """Pickles as the call module.name(*args)."""

  def __init__(self, module, name, *args):
    self.function, self.args = _Global(module, name), args

  def __reduce__(self):
    return self.function, self.args


def _Tensor(storage, offset, size, stride):
  """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), as torch pickles a tensor."""
  return _Call("torch._utils", "_rebuild_tensor_v2", storage, offset, tuple(size), tuple(stride),
               False, collections.OrderedDict())


class _TorchPickler(pickle._Pickler):  # the Python pickler: its dispatch table can be extended
  dispatch = dict(pickle._Pickler.dispatch)
  dispatch[_Global] = lambda self, g: self.write(pickle.GLOBAL + f"{g.module}\n{g.name}\n".encode())

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      return ("storage", _Global("torch", "FloatStorage"), obj.key, "cpu", obj.array.size)
    return None


def _state(payload=None):
  """A small state dict (two tensors sharing one storage, one strided) and its storages."""
  weight, bias = np.arange(12, dtype=np.float32).reshape(3, 4), np.float32([7, 8, 9])
  shared = _Storage("0", np.concatenate([weight.ravel(), bias]))
  storages = [shared, _Storage("1", weight.T)]
  state = collections.OrderedDict(
      [("conv.weight", _Tensor(shared, 0, (3, 4), (4, 1))), ("conv.bias", _Tensor(shared, 12, (3,), (1,))),
       ("fc.weight", _Tensor(storages[1], 0, (3, 4), (1, 3)))])
  if payload is not None:
    state["evil"] = payload
  return state, storages, {"conv.weight": weight, "conv.bias": bias, "fc.weight": weight}


def _pickle_state(state, out):
  _TorchPickler(out, protocol=2).dump(state)


def write_legacy(path, payload_slot=None, payload=None):
  """A legacy (torch < 1.6) .pth; `payload` replaces the pickle `payload_slot` (or joins the state)."""
  state, storages, expected = _state(payload if payload_slot == "state" else None)
  parts = {"magic": MAGIC, "protocol": 1001,
           "sys_info": {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}},
           "keys": [s.key for s in storages]}
  if payload_slot in parts:
    parts[payload_slot] = payload
  with open(path, "wb") as f:
    for slot in ("magic", "protocol", "sys_info"):
      pickle.dump(parts[slot], f, protocol=2)
    _pickle_state(state, f)
    pickle.dump(parts["keys"], f, protocol=2)
    for storage in storages:
      f.write(struct.pack("<q", storage.array.size) + storage.array.tobytes())
  return expected


def write_zip(path, payload=None, with_data_pkl=True):
  """A zip-format (torch >= 1.6) .pth; `payload` joins the state dict in data.pkl."""
  state, storages, expected = _state(payload)
  buffer = io.BytesIO()
  _pickle_state(state, buffer)
  with zipfile.ZipFile(path, "w") as zf:
    if with_data_pkl:
      zf.writestr("archive/data.pkl", buffer.getvalue())
    zf.writestr("archive/version", "3\n")
    for storage in storages:
      zf.writestr(f"archive/data/{storage.key}", storage.array.tobytes())
  return expected


@pytest.fixture
def marker(tmp_path):
  path = tmp_path / "PAYLOAD_RAN"
  yield path
  assert not path.exists(), "a payload in a weight file ran"


def test_handmade_legacy_and_zip_files_load(tmp_path):
  for name, write in (("legacy.pth", write_legacy), ("zip.pth", write_zip)):
    expected = write(tmp_path / name)
    state = weights.load_torch_state_dict(str(tmp_path / name))
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
      np.testing.assert_array_equal(state[key], value)


@pytest.mark.parametrize("slot", LEGACY_SLOTS)
def test_payload_in_any_legacy_pickle_is_refused(tmp_path, marker, slot):
  path = tmp_path / f"legacy_{slot}.pth"
  write_legacy(path, slot, _Payload(marker))
  with pytest.raises(weights.UnsafePickleError, match="system") as error:
    weights.load_torch_state_dict(str(path))
  assert str(path) in str(error.value)


def test_payload_in_zip_data_pkl_is_refused(tmp_path, marker):
  path = tmp_path / "evil_zip.pth"
  write_zip(path, _Payload(marker))
  with pytest.raises(weights.UnsafePickleError, match="system") as error:
    weights.load_torch_state_dict(str(path))
  assert str(path) in str(error.value)


def test_zip_without_data_pkl_names_the_file(tmp_path):
  path = tmp_path / "no_pickle.pth"
  write_zip(path, with_data_pkl=False)
  with pytest.raises(ValueError, match="data.pkl") as error:
    weights.load_torch_state_dict(str(path))
  assert str(path) in str(error.value)


@pytest.mark.parametrize("gadget", ["os.system", "numpy.runstring"])
def test_payload_in_numpy_checkpoint_is_refused(tmp_path, marker, gadget):
  path = tmp_path / "evil.ckpt"
  if gadget == "os.system":
    payload = _Payload(marker)
  else:  # a code-running function inside NumPy itself: only array reconstruction is admitted
    payload = _Call("numpy.testing._private.utils", "runstring", f"open({str(marker)!r}, 'w').close()", {})
  buffer = io.BytesIO()
  _TorchPickler(buffer, protocol=4).dump({"params": {"w": np.ones(3, np.float32), "x": payload}})
  path.write_bytes(buffer.getvalue())
  with pytest.raises(weights.UnsafePickleError, match="system|runstring") as error:
    weights.load_numpy_pickle(str(path))
  assert str(path) in str(error.value)


def test_entry_points_refuse_payloads(tmp_path, marker):
  """`train.init_from` (RRDBNet conversion) and `loss.perceptual_weights` read through the same loader."""
  path = tmp_path / "RRDB_ESRGAN_x4.pth"
  write_legacy(path, "sys_info", _Payload(marker))
  with pytest.raises(weights.UnsafePickleError, match=str(path)):
    convert.load_rrdbnet_weights(str(path), {})
  with pytest.raises(weights.UnsafePickleError, match=str(path)):
    perceptual.load_params(perceptual.VGGFeatures(arch="vgg16"), str(path))


def test_malformed_files_fail_naming_the_file(tmp_path):
  cases = {}
  write_legacy(tmp_path / "bad_magic.pth", "magic", 12345)
  cases["bad_magic.pth"] = "magic number"
  write_legacy(tmp_path / "bad_keys.pth", "keys", "0")
  cases["bad_keys.pth"] = "storage keys"
  # A tensor whose size/stride would read past its storage (memory outside the file).
  state, storages, _ = _state()
  state["conv.weight"] = _Tensor(storages[0], 10, (3, 4), (4, 1))
  with zipfile.ZipFile(tmp_path / "out_of_bounds.pth", "w") as zf:
    buffer = io.BytesIO()
    _pickle_state(state, buffer)
    zf.writestr("archive/data.pkl", buffer.getvalue())
    for storage in storages:
      zf.writestr(f"archive/data/{storage.key}", storage.array.tobytes())
  cases["out_of_bounds.pth"] = "outside its storage"
  (tmp_path / "truncated.pth").write_bytes((tmp_path / "bad_keys.pth").read_bytes()[:40])
  cases["truncated.pth"] = "not a readable PyTorch"
  for name, message in cases.items():
    with pytest.raises(ValueError, match=message) as error:
      weights.load_torch_state_dict(str(tmp_path / name))
    assert str(tmp_path / name) in str(error.value), name
