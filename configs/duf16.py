"""VSR-DUF-16 baseline (Jo et al., CVPR 2018): 7 LR frames -> the centre HR frame through 5x5
dynamic upsampling filters + residual; Huber loss (delta 0.01), Adam 1e-3 decayed x0.1 every 10 epochs.
Use 'layers=28' or 'layers=52' for the deeper variants (configs/duf52.py is the 52-layer recipe).
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return common.duf_recipe(config_lib.parse_variant(arg, ("smoke", "layers=28", "layers=52"), "duf16"))
