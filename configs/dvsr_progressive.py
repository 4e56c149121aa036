"""Progressive DVSR (TinyVIRAT, ICPR 2020): grow one x2 stage at a time.

Stage 1 trains the x2 model (targets: HR bicubic-downsampled to 2x and, with temporal
growth, every other frame); stage k > 1 adds one RRDB and one up-stage to the trained
stage-(k-1) model and fades them in (alpha 0 -> 1 over train.fade_steps = 200: TinyVIRAT
Sec. IV-B, alpha "set to 0 initially and increased by 5e-3 after each iteration"):

  python -m arsr_jax.main --config configs/dvsr_progressive.py:stage1 --workdir W1
  python -m arsr_jax.main --config configs/dvsr_progressive.py:stage2 --workdir W2 \\
      --config.train.init_from=W1
L1 only, Adam 2e-4 (0.5, 0.9), 16-frame clips.
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return config_lib.progressive_dvsr_recipe(
      config_lib.parse_variant(arg, ("smoke", "stage1", "stage2", "stage3"), "dvsr_progressive"))
