"""VDSR baseline (Kim et al., CVPR 2016): 20 conv layers, MSE, global residual."""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke",), "vdsr")
  c = config_lib.get_base_config()
  c.model.name = "vdsr"
  c.model.num_layers = 20
  c.model.features = 64
  c.loss.name = "mse"
  c.data.patch_size = 128
  c.train.batch_size = 64
  c.optimizer.learning_rate = 1e-4
  if "smoke" in variant:
    common.apply_smoke(c)
    c.model.num_layers = 8
    c.model.features = 32
    c.optimizer.learning_rate = 1e-3
  return c
