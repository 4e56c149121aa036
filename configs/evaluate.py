"""The papers' evaluation: SR methods compared by the accuracy of frozen recognizers.

  python -m arsr_jax.main --config configs/evaluate.py --workdir DIR \\
      --config.evaluate.spatial=W_TSN_RGB --config.evaluate.temporal=W_TSN_FLOW \\
      --config.evaluate.methods='bicubic,hr,vdsr=W_VDSR,sosr=W_SOSR,tosr=W_TOSR,sosr+tosr=W_SOSR:W_TOSR'

Recognizers are workdirs of configs/recognizer.py runs (or evaluate.two_stream for ST-ResNet,
evaluate.clip for a clip model or 'i3d_kinetics400'); SR methods are workdirs of any SR recipe.
TSN's test protocol: 25 segments per video, flow stacks of 5 TV-L1 fields of the SR frames,
fusion 1 : 1.5. Variant 'smoke' evaluates synthetic_actions/small with 3 segments of 3 flows.
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke",), "evaluate")
  c = config_lib.get_base_config()
  c.task = "evaluate"
  c.eval.batch_size = 8
  c.eval.num_segments = 25
  c.data.new_length = 5
  # TV-L1 of the SR frames: empty = the parameters the temporal stream's training flow used
  # (OpenCV's defaults when it trained on stored flow); set keys to override.
  c.evaluate.tvl1 = ml_collections.ConfigDict()
  if "smoke" in variant:
    c.data.name = "synthetic_actions/small"
    c.eval.num_segments = 3
    c.evaluate.profiles = 2
  return c
