"""Pieces several recipes share: smoke sizing and the recipes configs/ derives variants from.

Not a recipe itself (config_lib.recipe_names skips it). Recipes load it with
``config_lib.configs_module("common")``, which works from the source tree and from a wheel (where
configs/ ships as arsr_jax.configs).
"""

import ml_collections

from arsr_jax import config_lib


def apply_smoke(c: ml_collections.ConfigDict, *, patch_size: int = 32, steps: int = 300) -> None:
  """Shrinks data and schedule for a CPU smoke run on synthetic_actions/small (64x64, 8 frames)."""
  c.data.name = "synthetic_actions/small"
  c.data.patch_size = patch_size
  c.optimizer.warmup_steps = min(20, steps // 10)
  c.train.batch_size = 16
  c.train.num_steps = steps
  c.train.log_every = 50
  c.train.checkpoint_every = 100
  c.eval.batch_size = 16
  c.eval.every_steps = 0  # smoke runs evaluate once, at the end


def esrgan_recipe(variant: set[str]) -> ml_collections.ConfigDict:
  """ESRGAN / its PSNR pre-training ('psnr'): configs/esrgan.py, the base of configs/sosr_esrgan.py."""
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
    c.loss.perceptual_weights = "auto"  # torchvision's ImageNet VGG19, fetched on first use (perceptual.py)
    c.loss.gan_type = "ragan"
    c.loss.gan_weight = 5e-3
  if "smoke" in variant:
    apply_smoke(c)
    c.model.num_blocks, c.model.features, c.model.growth = 1, 16, 8
    if "psnr" not in variant:  # the VGG-style discriminator needs 128-px inputs
      c.discriminator = ml_collections.ConfigDict({"name": "srgan", "features": 8, "dense_features": 32})
      c.loss.perceptual_weights = "random"
      c.loss.perceptual_layer = "conv2_2"
    c.optimizer.boundaries = (1000,)
  return c


def duf_recipe(variant: set[str]) -> ml_collections.ConfigDict:
  """VSR-DUF-16/28/52 ('layers=N'): configs/duf16.py and configs/duf52.py."""
  c = config_lib.get_base_config()
  c.model.name = "duf"
  c.model.num_layers = 52 if "layers=52" in variant else 28 if "layers=28" in variant else 16
  c.data.input_frames = 7
  c.data.patch_size = 128  # LR 32x32 as in the paper
  c.loss.name = "huber"
  c.loss.delta = 0.01
  c.train.batch_size = 16
  c.train.num_steps = 200_000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "step"
  c.optimizer.boundaries = (100_000, 150_000)
  c.optimizer.decay_factor = 0.1
  if "smoke" in variant:
    apply_smoke(c, steps=200)
    c.optimizer.boundaries = (150,)
  return c


def progressive_dvsr_recipe(variant: set[str]) -> ml_collections.ConfigDict:
  """Progressive DVSR stage 1-3 ('stageN', 'x8'): configs/dvsr_progressive.py and
  configs/dvsr_progressive_attention.py. Stage 3 exists only at 8x (log2(8) = 3 x2 stages), so
  'stage3' implies scale 8; 'x8' puts stages 1-2 on the 8x chain (TinyVIRAT Sec. III-B.2: 14x14 ->
  28 -> 56 -> 112; released conf/*p.py 'scale_factor': 8)."""
  stages = [int(v[-1]) for v in variant if v.startswith("stage")]
  c = config_lib.get_base_config()
  c.model.name = "progressive_dvsr"
  c.model.stage = stages[0] if stages else 2
  c.scale = 8 if ("x8" in variant or c.model.stage == 3) else 4
  c.model.features = 32
  c.model.growth = 32
  c.model.temporal_growth = True
  c.data.sampler = "clip"
  c.data.clip_length = 16
  # TinyVIRAT Sec. V-A: SR training clips "larger than 112x112"; released conf/228l.py 'crop_size': 112
  # (of 'scale_size': 128): 112-px HR patches, so 28 px LR at 4x and 14 px at 8x.
  c.data.patch_size = 112
  c.loss.name = "l1"
  c.train.batch_size = 8
  # TinyVIRAT Sec. IV-B: alpha "set to 0 initially and increased by 5e-3 after each iteration".
  c.train.fade_steps = 200 if c.model.stage > 1 else None
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1, c.optimizer.b2 = 0.5, 0.9
  # No decay: Sec. V-B gives Adam lr 2e-4 and no schedule; released conf/228l.py 'lr_schedule':
  # ExponentialLR with gamma 1.0 (a constant rate). Not the base config's cosine.
  c.optimizer.schedule = "constant"
  if "smoke" in variant:
    apply_smoke(c, steps=150)
    c.data.clip_length = 4
    c.model.features, c.model.growth = 8, 8
    c.train.batch_size = 8
    c.train.fade_steps = 50 if c.model.stage > 1 else None
  return c
