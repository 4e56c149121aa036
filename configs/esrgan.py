"""ESRGAN (Wang et al., ECCVW 2018), BasicSR's train_ESRGAN_x4 recipe: RRDBNet-23 generator,
VGG-style 128-px discriminator, L1 x1e-2 + VGG19 conv5_4 (pre-activation, L1) x1 + RaGAN x5e-3,
Adam 1e-4 for both, halved at 50k/100k/200k/300k. Start from the PSNR-oriented RRDBNet
('psnr' variant: L1 only, lr 2e-4) with --config.train.init_from=WORKDIR.
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "psnr"), "esrgan")
  c = config_lib.get_base_config()
  c.model.name = "rrdbnet"
  c.model.num_blocks = 23
  c.model.features = 64
  c.model.growth = 32
  c.data.patch_size = 128
  c.train.batch_size = 16
  c.train.num_steps = 400_000
  c.optimizer.learning_rate = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.boundaries = (50_000, 100_000, 200_000, 300_000)
  c.optimizer.decay_factor = 0.5
  c.optimizer_d = c.optimizer.copy_and_resolve_references()
  c.train.ema_decay = 0.999  # BasicSR evaluates the EMA generator
  if "psnr" in variant:
    c.loss.name = "l1"
    c.optimizer.learning_rate = 2e-4
  else:
    c.discriminator.name = "vgg_style"
    c.discriminator.input_size = 128
    c.loss.name = "pixel_perceptual"
    c.loss.pixel_weight = 1e-2
    c.loss.perceptual_weight = 1.0
    c.loss.perceptual_arch = "vgg19"
    c.loss.perceptual_layer = "conv5_4"
    c.loss.perceptual_pre_activation = True
    c.loss.perceptual_criterion = "l1"
    c.loss.perceptual_weights = "auto"  # pass a torchvision vgg19 .pth for real features
    c.loss.gan_type = "ragan"
    c.loss.gan_weight = 5e-3
  if "smoke" in variant:
    config_lib.apply_smoke(c)
    c.model.num_blocks, c.model.features, c.model.growth = 1, 16, 8
    if "psnr" not in variant:  # the VGG-style discriminator needs 128-px inputs
      c.discriminator = ml_collections.ConfigDict({"name": "srgan", "features": 8, "dense_features": 32})
      c.loss.perceptual_weights = "random"
      c.loss.perceptual_layer = "conv2_2"
    c.optimizer.boundaries = (1000,)
  return c
