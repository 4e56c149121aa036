"""VSR-DUF-52 baseline: configs/duf16.py with 52 layers (21 + 3 dense blocks, growth 16)."""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return common.duf_recipe(config_lib.parse_variant(arg, ("smoke",), "duf52") | {"layers=52"})
