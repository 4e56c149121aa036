"""SoSR on an ESRGAN backbone (the poster's final SoSR and the released code):
L1(W * SR, W * HR) x1e-2 with W = |HR flow| + VGG19 conv5_4 feature loss x1 + RaGAN x5e-3.
Initialize from a PSNR-trained RRDBNet with --config.train.init_from=WORKDIR.
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = config_lib.esrgan_recipe(config_lib.parse_variant(arg, ("smoke", "psnr"), "sosr_esrgan"))
  c.loss.flow_weighted = True
  return c
