"""ESRGAN (Wang et al., ECCVW 2018), BasicSR's train_ESRGAN_x4 recipe: RRDBNet-23 generator,
VGG-style 128-px discriminator, L1 x1e-2 + VGG19 conv5_4 (pre-activation, L1) x1 + RaGAN x5e-3,
Adam 1e-4 for both, halved at 50k/100k/200k/300k. Start from the PSNR-oriented RRDBNet
('psnr' variant: L1 only, lr 2e-4) with --config.train.init_from=WORKDIR.
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return common.esrgan_recipe(config_lib.parse_variant(arg, ("smoke", "psnr"), "esrgan"))
