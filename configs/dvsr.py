"""End-to-end DVSR (TinyVIRAT, ICPR 2020): the final progressive DVSR network, trained at full scale
from the start (no stages, no fade-in). L1, Adam 2e-4 (0.5, 0.9) at a constant rate, 16-frame clips,
112-px HR patches.

Architecture: the same network as the last stage of configs/dvsr_progressive.py (ProgressiveDVSR at
stage log2(scale): conv_in, one 3D-RRDB (32 ch, growth 32) and one up-stage per x2, per-stage RGB
heads, global residual), so Table V's "DVSR" vs "Progressive DVSR" rows differ only in the training
strategy: Sec. V-D "We only change the generator training strategy while training", Sec. III-B.2
"The final network architecture after completing the transition is similar to the end-to-end DVSR".
Variant 'g6': the released code's separate end-to-end generator (deepnn/nets/models/g6.py: 4 RRDBs,
32 ch, growth 16, no temporal down-sampling; models/dvsr.py DVSR), a different network.
Schedule: Sec. V-B gives no decay and the released configs use 'ExponentialLR' with gamma 1.0.
Patch: Sec. V-A trains SR on clips "larger than 112x112"; released conf/228l.py 'crop_size': 112.
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "g6"), "dvsr")
  c = common.progressive_dvsr_recipe({"smoke"} & variant)
  c.train.fade_steps = None  # end to end: no progressive transition
  if "g6" in variant:
    c.model = ml_collections.ConfigDict({"name": "dvsr", "num_blocks": 4, "features": 32, "growth": 16})
    if "smoke" in variant:
      c.model.num_blocks, c.model.features, c.model.growth = 1, 8, 8
  else:
    c.model.stage = ml_collections.config_dict.placeholder(int)  # None: every x2 stage, the full network
  return c
