"""SRGAN (Ledig et al., CVPR 2017): SRResNet generator, VGG19 conv5_4 content loss, standard GAN.

Start from a PSNR-trained SRResNet with --config.train.init_from=WORKDIR_OF_SRRESNET_MSE
(e.g. this file's 'mse' variant), as the paper does.
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "mse"), "srgan")
  c = config_lib.get_base_config()
  c.model.name = "srresnet"
  c.model.num_blocks = 16
  c.model.features = 64
  c.data.patch_size = 96
  c.train.batch_size = 16
  c.train.num_steps = 200_000
  c.optimizer.learning_rate = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.boundaries = (100_000,)
  c.optimizer_d = c.optimizer.copy_and_resolve_references()
  if "mse" in variant:  # the SRResNet-MSE pre-training
    c.loss.name = "mse"
  else:
    c.discriminator.name = "srgan"
    c.loss.name = "pixel_perceptual"
    c.loss.pixel_weight = 0.0
    c.loss.perceptual_weight = 0.006  # SRGAN's VGG54 scaled by 1/12.75^2 ~ 0.006
    c.loss.perceptual_arch = "vgg19"
    c.loss.perceptual_layer = "conv5_4"
    c.loss.perceptual_criterion = "mse"
    c.loss.perceptual_weights = "auto"  # torchvision's ImageNet VGG19, fetched on first use (perceptual.py)
    c.loss.gan_type = "vanilla"
    c.loss.gan_weight = 1e-3
  if "smoke" in variant:
    common.apply_smoke(c)
    c.model.num_blocks, c.model.features = 2, 16
    c.discriminator.features = 8
    c.discriminator.dense_features = 32
    c.loss.perceptual_weights = "random"
    c.loss.perceptual_layer = "conv2_2"
  return c
