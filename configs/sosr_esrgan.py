"""SoSR on an ESRGAN backbone (the poster's final SoSR and the released code):
L1(W * SR, W * HR) x1e-2 with W = |HR flow| + VGG19 conv5_4 feature loss x1 + RaGAN x5e-3.
Initialize from a PSNR-trained RRDBNet with --config.train.init_from=WORKDIR.

W is the raw HR flow magnitude in pixels, as in the released data preparation: the HR training
items are float32 5-channel arrays whose RGB channels alone are divided by 255
(SoSR/Training/data/util.py, read_img_HR: `img_grb = img[:, :, :3] / 255.`, `img_weight =
img[:, :, 3:5]` unscaled); SRRaGAN_model.py reads channel 3 (`flow_type=3 #3:flownet 4:tvl1`) as
the weight map and applies L1(fake_H * w, var_H * w); the magnitude is sqrt(u^2 + v^2) of the raw
float flow (ToSR/step1_training_dataset/step5_image2h5.m, readMatFlow of float .mat flow). The
script writing the 5-channel LMDB is not released; no normalisation appears anywhere released.
Deliberate difference: our flow is the dataset's (exact on synthetic_actions) or TV-L1, not FlowNet2.
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "psnr"), "sosr_esrgan")
  c = common.esrgan_recipe(variant)
  if "psnr" not in variant:  # the PSNR pre-training is ESRGAN's plain L1 (loss.name='l1' has no flow weights)
    c.loss.flow_weighted = True
  return c
