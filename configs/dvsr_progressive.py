"""Progressive DVSR (TinyVIRAT, ICPR 2020): grow one x2 stage at a time.

Stage 1 trains the x2 model (targets: HR bicubic-downsampled to 2x and, with temporal
growth, every other frame); stage k > 1 adds one RRDB and one up-stage to the trained
stage-(k-1) model and fades them in (alpha 0 -> 1 over train.fade_steps = 200: TinyVIRAT
Sec. IV-B, alpha "set to 0 initially and increased by 5e-3 after each iteration"):

  python -m arsr_jax.main --config configs/dvsr_progressive.py:stage1 --workdir W1
  python -m arsr_jax.main --config configs/dvsr_progressive.py:stage2 --workdir W2 \\
      --config.train.init_from=W1
  python -m arsr_jax.main --config configs/dvsr_progressive.py:stage3 --workdir W3 \\
      --config.train.init_from=W2   # 8x only: W1, W2 trained with ':stage1,x8' / ':stage2,x8'
L1 only, Adam 2e-4 (0.5, 0.9) at a constant rate (Sec. V-B; released 'ExponentialLR' gamma 1.0),
16-frame clips, 112-px HR patches (Sec. V-A; released 'crop_size': 112). Scale 4 (stages 1-2) unless
'x8' or 'stage3' (8x: three x2 stages, 14 -> 112 px).
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return common.progressive_dvsr_recipe(
      config_lib.parse_variant(arg, ("smoke", "stage1", "stage2", "stage3", "x8"), "dvsr_progressive"))
