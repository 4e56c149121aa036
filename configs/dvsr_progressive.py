"""Progressive DVSR (TinyVIRAT, ICPR 2020): grow one x2 stage at a time.

Stage 1 trains the x2 model (targets: HR bicubic-downsampled to 2x and, with temporal
growth, every other frame); stage k > 1 adds one RRDB and one up-stage to the trained
stage-(k-1) model and fades them in (alpha 0 -> 1 over train.fade_steps):

  python -m arsr_jax.main --config configs/dvsr_progressive.py:stage1 --workdir W1
  python -m arsr_jax.main --config configs/dvsr_progressive.py:stage2 --workdir W2 \\
      --config.train.init_from=W1
L1 only, Adam 2e-4 (0.5, 0.9), 16-frame clips.
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "stage1", "stage2", "stage3"), "dvsr_progressive")
  stages = [int(v[-1]) for v in variant if v.startswith("stage")]
  c = config_lib.get_base_config()
  c.model.name = "progressive_dvsr"
  c.model.stage = stages[0] if stages else 2
  c.model.features = 32
  c.model.growth = 32
  c.model.temporal_growth = True
  c.data.sampler = "clip"
  c.data.clip_length = 16
  c.data.patch_size = 64
  c.loss.name = "l1"
  c.train.batch_size = 8
  c.train.fade_steps = 5_000 if c.model.stage > 1 else None  # ~2 epochs of the paper's data
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1, c.optimizer.b2 = 0.5, 0.9
  if "smoke" in variant:
    config_lib.apply_smoke(c, steps=150)
    c.data.clip_length = 4
    c.model.features, c.model.growth = 8, 8
    c.train.batch_size = 8
    c.train.fade_steps = 50 if c.model.stage > 1 else None
  return c
