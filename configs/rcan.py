"""RCAN baseline (Zhang et al., ECCV 2018): 10 groups x 20 RCAB, L1, Adam 1e-4 halved every 200k."""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke",), "rcan")
  c = config_lib.get_base_config()
  c.model.name = "rcan"
  c.model.num_groups = 10
  c.model.num_blocks = 20
  c.model.features = 64
  c.loss.name = "l1"
  c.data.patch_size = 128
  c.train.batch_size = 16
  c.train.num_steps = 300_000
  c.optimizer.learning_rate = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.boundaries = (200_000,)
  c.optimizer.decay_factor = 0.5
  if "smoke" in variant:
    common.apply_smoke(c)
    c.model.num_groups, c.model.num_blocks, c.model.features, c.model.reduction = 2, 2, 16, 4
    c.optimizer.boundaries = (200,)
  return c
