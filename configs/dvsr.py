"""DVSR (TinyVIRAT, ICPR 2020): 3D residual-in-residual dense blocks on 16-frame clips,
trilinear x2 upsampling + 3D convs, projection head, global residual; L1, Adam 2e-4 (0.5, 0.9)."""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke",), "dvsr")
  c = config_lib.get_base_config()
  c.model.name = "dvsr"
  c.model.num_blocks = 4
  c.model.features = 32
  c.model.growth = 16
  c.data.sampler = "clip"
  c.data.clip_length = 16
  c.data.patch_size = 64  # TinyVIRAT's 16x16 -> 64x64 at 4x; 112x112 targets need bigger frames
  c.loss.name = "l1"
  c.train.batch_size = 8
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1, c.optimizer.b2 = 0.5, 0.9
  if "smoke" in variant:
    config_lib.apply_smoke(c, steps=150)
    c.data.clip_length = 4
    c.model.num_blocks, c.model.features, c.model.growth = 1, 8, 8
    c.train.batch_size = 8
  return c
