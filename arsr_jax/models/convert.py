"""Official ESRGAN / BasicSR RRDBNet weights (PyTorch state dicts) -> our Flax ``RRDBNet``.

Input: {name: np.ndarray} in PyTorch layouts: conv kernels OIHW (out, in, kh, kw),
biases (out,). Output: a Flax param tree shaped like ``template_params``, conv
kernels HWIO (kh, kw, in, out), biases (out,), dtype of the template.

Three naming schemes are recognised (a DataParallel ``module.`` prefix is stripped;
BasicSR's ``params``/``params_ema`` wrappers are removed by ``weights.load_torch_state_dict``):

* ``basicsr`` (BasicSR ``rrdbnet_arch.py``, Real-ESRGAN, ``ESRGAN_SRx4_DF2KOST_official``):
  conv_first, body.N.rdbM.convK, conv_body, conv_up1, conv_up2, conv_hr, conv_last.
* ``esrgan`` (xinntao/ESRGAN ``RRDBNet_arch.py``, the current ``RRDB_ESRGAN_x4.pth``):
  conv_first, RRDB_trunk.N.RDBM.convK, trunk_conv, upconv1, upconv2, HRconv, conv_last.
* ``esrgan_old`` (the first release's ``architecture.RRDB_Net`` Sequential):
  model.0 (conv_first), model.1.sub.N.RDBM.convK.0 (N < num_blocks), model.1.sub.<num_blocks>
  (conv_body), model.3 / model.6 (conv_up1 / conv_up2; 2, 4, 5, 7 are upsample/LeakyReLU),
  model.8 (conv_hr), model.10 (conv_last).

Flax names: conv_first, body_N/rdbM/convK, conv_body, conv_up1, conv_up2, conv_hr,
conv_last, each with ``kernel`` and ``bias``; RRDBNet stacks the blocks as body/rdbM/convK
with a leading block axis (``legacy_layout.RRDBNET`` maps the two), and the result follows the
template's layout (checks and messages use the per-block names).

Scales: the released weights are x4, which need no change. For BasicSR's x2 / x1
models the input is pixel-unshuffled by 2 / 4 before conv_first; PyTorch orders the
unshuffled channels (c, dy, dx) and ``layers.space_to_depth`` orders them (dy, dx, c),
so pass ``scale`` (as ``RRDBNet.scale``) and conv_first's input channels are permuted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from arsr_jax import weights
from arsr_jax.models import legacy_layout

_UNSHUFFLE = {4: 1, 2: 2, 1: 4}

_ESRGAN_RENAMES = (("RRDB_trunk.", "body."), (".RDB", ".rdb"), ("trunk_conv.", "conv_body."),
                   ("upconv", "conv_up"), ("HRconv.", "conv_hr."))
_OLD_TOP = {"0": "conv_first", "3": "conv_up1", "6": "conv_up2", "8": "conv_hr", "10": "conv_last"}
_OLD_RDB = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_TRUNK = re.compile(r"model\.1\.sub\.\d+\.(weight|bias)$")
_OLD_TOP_RE = re.compile(r"model\.(\d+)\.(weight|bias)$")
_BASICSR_RDB = re.compile(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)$")
_BASICSR_TOP = re.compile(r"(conv_first|conv_body|conv_up1|conv_up2|conv_hr|conv_last)\.(weight|bias)$")


def detect_scheme(state: Mapping[str, Any]) -> str:
  """'basicsr', 'esrgan' or 'esrgan_old' from the state dict's (unprefixed) keys; ValueError if none."""
  keys = set(state)
  if "model.0.weight" in keys and any(k.startswith("model.1.sub.") for k in keys):
    return "esrgan_old"
  if any(k.startswith("RRDB_trunk.") for k in keys) or "trunk_conv.weight" in keys:
    return "esrgan"
  if "conv_first.weight" in keys and any(k.startswith("body.") for k in keys):
    return "basicsr"
  sample = sorted(keys)[:6]
  raise ValueError("Not an RRDBNet state dict: expected BasicSR (conv_first, body.N.rdbM.convK, ...), "
                   "ESRGAN (RRDB_trunk.N.RDBM.convK, trunk_conv, ...) or old ESRGAN (model.0, "
                   f"model.1.sub.N.RDBM.convK.0, ...) keys; {len(keys)} keys, e.g. {sample}")


def _to_basicsr(key: str, scheme: str) -> str:
  """One key renamed to BasicSR's scheme (unknown keys come back unchanged)."""
  if scheme == "esrgan":
    for old, new in _ESRGAN_RENAMES:
      key = key.replace(old, new)
  elif scheme == "esrgan_old":
    if m := _OLD_RDB.match(key):
      return f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
    if m := _OLD_TRUNK.match(key):
      return f"conv_body.{m[1]}"
    if (m := _OLD_TOP_RE.match(key)) and m[1] in _OLD_TOP:
      return f"{_OLD_TOP[m[1]]}.{m[2]}"
  return key


def _to_flax(key: str) -> str | None:
  """BasicSR key -> '/'-joined Flax path, or None when it is not an RRDBNet parameter."""
  leaf = {"weight": "kernel", "bias": "bias"}
  if m := _BASICSR_RDB.match(key):
    return f"body_{m[1]}/rdb{m[2]}/conv{m[3]}/{leaf[m[4]]}"
  if m := _BASICSR_TOP.match(key):
    return f"{m[1]}/{leaf[m[2]]}"
  return None


def rrdbnet_from_torch(state: Mapping[str, np.ndarray], template_params: Mapping[str, Any], *,
                       scale: int = 4, source: str = "state dict") -> dict[str, Any]:
  """Converts an RRDBNet state dict (OIHW kernels) into a param tree like ``template_params`` (HWIO).

  ``template_params``: our RRDBNet's params (arrays or ShapeDtypeStructs; stacked or per-block
  RRDBs), with or without the outer {'params': ...}; the result has the same nesting and
  layout, as NumPy arrays.
  ``scale``: the model's ``RRDBNet.scale`` (see the module docstring). Raises
  ValueError naming ``source`` and the keys on an unknown scheme or any missing,
  unexpected or mis-shaped entry.
  """
  if scale not in _UNSHUFFLE:
    raise ValueError(f"RRDBNet supports scales 1, 2 and 4, got {scale}")
  wrapped = set(template_params) == {"params"}
  template = template_params["params"] if wrapped else template_params
  state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
  scheme = detect_scheme(state)
  values: dict[str, np.ndarray] = {}
  for key, value in state.items():
    name = _to_flax(_to_basicsr(key, scheme))
    value = np.asarray(value)
    if name is None:
      values[f"{key} (not an RRDBNet parameter)"] = value
      continue
    values[name] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
  s = _UNSHUFFLE[scale]
  if s > 1 and "conv_first/kernel" in values and values["conv_first/kernel"].shape[2] % (s * s) == 0:
    kernel = values["conv_first/kernel"]
    c = kernel.shape[2] // (s * s)
    # Our input channel (dy*s + dx)*c + ch is PyTorch's ch*s*s + dy*s + dx.
    perm = np.arange(c * s * s).reshape(c, s * s).T.reshape(-1)
    values["conv_first/kernel"] = kernel[:, :, perm, :]
  per_block = legacy_layout.to_per_block(dict(template), legacy_layout.RRDBNET)
  params = weights.assign(per_block, values, f"{source} ({scheme} naming)")
  if not legacy_layout.is_per_block(template, legacy_layout.RRDBNET):
    params = legacy_layout.to_stacked(params, legacy_layout.RRDBNET)
  return {"params": params} if wrapped else params


def load_rrdbnet_weights(path: str, template_params: Mapping[str, Any], *, scale: int = 4) -> dict[str, Any]:
  """Reads an ESRGAN/BasicSR RRDBNet ``.pth`` (zip or legacy format) without torch and converts it.

  See ``rrdbnet_from_torch`` for layouts, the accepted schemes and the errors.
  """
  state = weights.load_torch_state_dict(path)
  if not state:
    raise ValueError(f"{path}: no tensors found at the top level (or under params/params_ema/"
                     "state_dict/model) of this PyTorch file")
  return rrdbnet_from_torch(state, template_params, scale=scale, source=path)
