"""Action recognizers trained on HR clips: the frozen black boxes of the evaluation protocol.

  python -m arsr_jax.main --config configs/recognizer.py:tsn_rgb --workdir W_RGB
  python -m arsr_jax.main --config configs/recognizer.py:tsn_flow --workdir W_FLOW

Variants (one model, plus 'smoke': 400 steps on synthetic_actions/small, minutes on a CPU; tsn_flow
ends well above chance there, tsn_rgb near it -- see the README):
  tsn_rgb / tsn_flow: TSN spatial / temporal stream, ResNet-50, 3 segments, stacks of 5 TV-L1
      flows; TSN's training (Wang et al., ECCV 2016, Sec. 3.3 and 4.1): SGD momentum 0.9,
      batch 256, RGB lr 1e-3 /10 every 2,000 iterations, stop at 4,500; flow lr 5e-3 /10 at
      12,000 and 18,000, stop at 20,000; dropout 0.8 (RGB) / 0.7 (flow) before the classifier
      (Sec. 3.2; tsn-pytorch's --dropout), weight decay 5e-4 (TSN's solver); TSN's augmentation
      (Sec. 3.3, tsn-pytorch GroupMultiScaleCrop + GroupRandomHorizontalFlip): corner cropping
      and scale jittering (crop sides 1, .875, .75, .66 of the shorter side -- flow: 1, .875,
      .75 -- aspect jitter, 13 fixed positions) resized to 224 px, and random horizontal flips
      (flow: u negated);
  st_resnet: ST-ResNet, two ResNet-50 streams, 10 stacked flows, motion -> appearance links
      (whole frames, no augmentation: the released training's crops and flips, STResNet_stage1.m
      'f25noCtr', are not reproduced);
  resnet3d / wide_resnet3d: 3D ResNet-50 / WideResNet-3D-50 (Hara et al.) on 16-frame clips;
  i3d: I3D on 16-frame clips resized to 224 px (DeepMind's Kinetics-400 weights are
      protocol.clip='i3d_kinetics400' instead);
  the clip classifiers train as TinyVIRAT's (Demir et al., ICPR 2020, Sec. IV-B): Adam, lr 2e-4,
      betas (0.5, 0.9), constant (the paper names no decay).
The data is the embedded synthetic_actions/default unless data.name names another prepared TFDS
dataset; the class count comes from the data. The temporal streams learn from TV-L1 flow of the
HR frames (data.flow_source='tvl1', computed once per split and cached), as they see at test time,
with TV-L1 at OpenCV DualTVL1's defaults (TSN's denseflow calls OpenCV's TV-L1 with its defaults).
Deliberate differences from TSN: frames are cropped at the dataset's size (TSN first rescales
them to a 256 px shorter side), so 224 px crops need frames of at least 224 px (a smaller dataset
sets data.crop_size, e.g. the study's 112 of 128 px); ResNet-50 (the paper's models are BN-Inception) trained from
scratch: no ImageNet ResNet-50 loader exists here, so neither ImageNet pre-training nor TSN's
cross-modality initialisation of the flow stream (recognition/resnet.py cross_modality_init, ready
for such a loader) nor partial BN (which only makes sense with pre-training) is used.
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py

MODELS = ("tsn_rgb", "tsn_flow", "st_resnet", "resnet3d", "wide_resnet3d", "i3d")


def get_config(arg: str = "tsn_rgb") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, MODELS + ("smoke",), "recognizer")
  names = [v for v in variant if v in MODELS] or ["tsn_rgb"]
  if len(names) != 1:
    raise ValueError(f"recognizer: pick one model of {MODELS}, got {names}")
  name = names[0]
  c = config_lib.get_base_config()
  c.task = "recognition"
  c.data.flow_source = "tvl1"
  c.data.tvl1 = ml_collections.ConfigDict()  # OpenCV's defaults (as TSN's denseflow); the evaluation reuses them
  c.train.batch_size = 32
  c.train.checkpoint_every = 1_000
  c.eval.batch_size = 32
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "step"
  c.optimizer.decay_factor = 0.1
  c.recognizer.name = {"tsn_rgb": "tsn", "tsn_flow": "tsn"}.get(name, name)
  if name.startswith("tsn") or name == "st_resnet":
    c.recognizer.stem_type = "imagenet"  # 'small' for frames much smaller than 224 px
  if name.startswith("tsn"):
    c.recognizer.modality = name.split("_")[1]
    c.recognizer.depth = 50
    c.data.num_segments = 3
    c.data.flow_stack = 5
    rgb = name == "tsn_rgb"
    c.train.batch_size = 256  # TSN Sec. 4.1 "the batch size is set to 256 and momentum set to 0.9"
    # TSN Sec. 3.3 corner cropping + scale jittering to 224 px (tsn-pytorch models.py get_augmentation:
    # GroupMultiScaleCrop(224, [1, .875, .75, .66]) for RGB, [1, .875, .75] for flow) and horizontal
    # flips (data.flip, the base default; GroupRandomHorizontalFlip(is_flow) negates flow u).
    c.data.crop_size = 224
    c.data.scale_jitter = (1.0, 0.875, 0.75, 0.66) if rgb else (1.0, 0.875, 0.75)
    c.optimizer.learning_rate = 1e-3 if rgb else 5e-3
    c.train.num_steps = 4_500 if rgb else 20_000
    c.optimizer.boundaries = (2_000, 4_000) if rgb else (12_000, 18_000)
  elif name == "st_resnet":
    c.recognizer.depth = 50
    c.data.flow_stack = 10
    c.data.num_segments = 1
    c.optimizer.learning_rate = 1e-3
    c.train.num_steps = 20_000
    c.optimizer.boundaries = (12_000, 18_000)
  else:  # clip models
    c.data.clip_length = 16
    # TinyVIRAT Sec. IV-B: "Both DVSR and action classification networks are trained with Adam ...
    # β_1 as 0.5 and β_2 as 0.9 ... with a learning rate of 0.0002"; no decay is stated.
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.b1, c.optimizer.b2 = "adam", 2e-4, 0.5, 0.9
    c.optimizer.schedule = "constant"
    c.optimizer.weight_decay = 0.0
    c.train.num_steps = 20_000
    if name != "i3d":
      c.recognizer.depth = 50
    else:
      c.data.resize = 224  # I3D's 7x7 final pooling needs 224 px frames
  if "smoke" in variant:
    common.apply_smoke(c, steps=400)  # measured: tsn_flow well above chance on the test split (README)
    c.data.tvl1 = ml_collections.ConfigDict({"nscales": 3, "warps": 2, "outer_iterations": 3,
                                             "inner_iterations": 10})  # light TV-L1 for small CPU runs
    c.data.flip = False  # the synthetic classes tell leftward from rightward motion
    c.data.scale_jitter = ()  # whole small frames (plain random crops of data.crop_size when set)
    c.data.crop_size = 0
    c.train.batch_size = 8
    c.eval.batch_size = 8
    c.eval.num_segments = 3
    c.data.num_segments = 2
    c.data.flow_stack = 3
    c.data.clip_length = 8
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.schedule = "adam", 1e-3, "cosine"
    c.optimizer.weight_decay = 0.0
    if name.startswith("tsn") or name == "st_resnet":
      c.recognizer.depth, c.recognizer.width, c.recognizer.stem_type = 18, 8, "small"
    if name in ("resnet3d", "wide_resnet3d"):
      c.recognizer.depth, c.recognizer.width = 10, 8
    if "b1" in c.optimizer:  # clip models: smoke keeps its Adam default betas
      c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999
  return c
