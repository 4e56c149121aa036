"""The papers' evaluation: SR methods compared by the accuracy of frozen recognizers.

  python -m arsr_jax.main --config configs/protocol.py --workdir DIR \\
      --config.protocol.spatial=W_TSN_RGB --config.protocol.temporal=W_TSN_FLOW \\
      --config.protocol.methods='bicubic,hr,vdsr=W_VDSR,sosr=W_SOSR,tosr=W_TOSR,sosr+tosr=W_SOSR:W_TOSR'

Recognizers are workdirs of configs/recognizer.py runs (or protocol.two_stream for ST-ResNet,
protocol.clip for a clip model or 'i3d_kinetics400'); SR methods are workdirs of any SR recipe.
TSN's test protocol (Wang et al., ECCV 2016, Sec. 4; tsn-pytorch test_models.py): 25 segments per
video, flow stacks of 5 TV-L1 fields of the SR frames, 10 views per segment (4 corner and centre
crops of the recognizer's crop size, and their mirrors; a mirrored flow negates u), scores averaged
over views and segments; fusion TSN 1 : 1.5, or ST-ResNet's own 1 : 1 (protocol.fusion_weights=()
picks each recognizer's rule). protocol.views=1 (the centre crop only) is 10x cheaper; results.json
and the printed table say which was used.
Variant 'smoke' evaluates synthetic_actions/small with 3 segments of 3 flows and one view: the
synthetic classes tell leftward from rightward motion, which mirrored views would swap.
Deliberate difference: ST-ResNet's released test (feichtenhofer/st-resnet STResNet_test.m,
denseEval) scores the whole frame and its mirror fully convolutionally; here it gets the same
crops as TSN.
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke",), "protocol")
  c = config_lib.get_base_config()
  c.task = "protocol"
  c.eval.batch_size = 8
  c.eval.num_segments = 25  # ICCV'19 Sec. 4.4: "we sample 25 frames from each video clip" (TSN)
  c.protocol.views = 10  # TSN's 10 test crops (tsn-pytorch test_models.py --test_crops 10)
  c.data.flow_stack = 5
  # TV-L1 of the SR frames: empty = the parameters the temporal stream's training flow used
  # (OpenCV's defaults when it trained on stored flow); set keys to override.
  c.protocol.tvl1 = ml_collections.ConfigDict()
  if "smoke" in variant:
    c.data.name = "synthetic_actions/small"
    c.eval.num_segments = 3
    c.protocol.profiles = 2
    c.protocol.views = 1  # mirrored views would swap the synthetic left/right motion classes
  return c
