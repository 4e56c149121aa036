"""VSR-DUF-16 baseline (Jo et al., CVPR 2018): 7 LR frames -> the centre HR frame through 5x5
dynamic upsampling filters + residual; Huber loss (delta 0.01), Adam 1e-3 decayed x0.1 every 10 epochs.
Use 'layers=28' or 'layers=52' for the deeper variants (configs/duf52.py is the 52-layer recipe).
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "layers=28", "layers=52"), "duf16")
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
    config_lib.apply_smoke(c, steps=200)
    c.optimizer.boundaries = (150,)
  return c
