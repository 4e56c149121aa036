"""Recognition-consistency SR: VDSR trained so that a frozen Kinetics-400 I3D sees SR clips as it
sees the HR clips (no labels; beyond the papers, issue 13).

Loss (losses._consistency_objective), on 16-frame clips (data.sampler='clip'; VDSR runs per frame):
  MSE(SR, HR)
  + kl_weight * T^2 KL(softmax(I3D(HR) / T) || softmax(I3D(SR) / T))
  + feature_weight * mean over {Mixed_3c, Mixed_4f} of |I3D_l(SR) - I3D_l(HR)|^2 / |I3D_l(HR)|^2

Feature layers: Mixed_3c (stride 8 in space, 2 in time) is the last block before I3D's first
temporal pooling, mid-level space-time texture and motion, where blur and ringing of SR change the
activations most while still below class semantics; Mixed_4f (stride 16/4) is the last block of
the 4x stage, part- and motion-pattern features that feed the class decision. Early units
(Conv3d_1a-2c) are close to pixels (the MSE covers them); Mixed_5c feeds the logits directly (the KL
covers it). Both chosen layers keep >= 4x4 positions at 112 px crops. Each is normalised by the HR
activation energy so they weigh alike.

Temperature T = 2 (softened targets carry the HR prediction's ranking beyond top-1; T^2 scaling).
Weights: each consistency term about the size of the pixel term at initialisation, measured on the
corpus' validation clips at 4x (benchmarks/consistency_terms.py, 3 batches of 2 clips, 8 x 16
VDSR at init): MSE 2.69e-3, T^2 KL 7.03, feature 0.158 -> kl_weight 4e-4 (1.05 x MSE), feature_weight
1e-2 (0.59 x MSE). ``studies/corpus_study.py`` searches a common multiplier of both (x0.3, x1, x3)
on the corpus' validation videos and records it in its ``search.json``.
I3D runs with global pooling on 112 px crops (its 2x7x7 head needs 224 px); its strided stem is a
space-to-depth convolution (recognition/conv.strided_conv: XLA's CPU input gradient of a
strided 3D convolution took 22 s, nearly all of the step). Compute dtype float32 (loss.recognizer_dtype):
measured on the 2-core CPU (benchmarks/i3d_consistency_bench.py, batch 1 of 16 x 112 px), I3D
forward + backward to the input takes 0.55 s in float32 and 0.61 s in bfloat16 (emulated on CPU);
try bfloat16 on an accelerator.
Step time (batch 2 clips of 16 x 112 x 112, f32) on the idle 2-core CPU: 3.7 s with this recipe's
10 x 32 VDSR (0.27 steps/s; first step 11 s with compilation), so 1000 steps ~ one hour; 1.75 s
with the 8 x 16 VDSR of the corpus study.

Training: fine-tunes a pixel-loss VDSR (train.init_from) on cdvl_sr/corpus_x4 (or corpus_x8 with
scale=8), batch 2 clips, Adam 1e-4, 1000 steps (CPU size; use larger batches on an accelerator).

  python -m arsr_jax.main --config configs/sosr_vdsr_consistency.py --workdir DIR \
      --config.data.data_dir=TFDS_DIR --config.train.init_from=VDSR_DIR
  python -m arsr_jax.main --config configs/sosr_vdsr_consistency.py:smoke --workdir DIR  # random I3D
Variant 'wmse': SoSR's flow-weighted MSE as the pixel term.
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py

FEATURE_LAYERS = ("Mixed_3c", "Mixed_4f")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "wmse"), "sosr_vdsr_consistency")
  c = config_lib.get_base_config()
  c.model.name = "vdsr"
  c.model.num_layers = 10
  c.model.features = 32
  c.loss.name = "consistency"
  c.loss.pixel = "wmse" if "wmse" in variant else "mse"
  c.loss.temperature = 2.0
  c.loss.kl_weight = 4e-4
  c.loss.feature_weight = 1e-2
  c.loss.feature_layers = FEATURE_LAYERS
  c.loss.recognizer = "kinetics400"
  c.loss.recognizer_dtype = "float32"
  c.data.name = "cdvl_sr/corpus_x4"
  c.data.sampler = "clip"
  c.data.clip_length = 16
  c.data.patch_size = 112
  c.data.eval_split = "validation"
  c.train.batch_size = 2  # 2-core CPU: 3.7 s a step (measured, 10 x 32 VDSR) -> ~1 h
  c.train.num_steps = 1000
  c.train.log_every = 50
  c.train.checkpoint_every = 250
  c.eval.batch_size = 4
  c.optimizer.learning_rate = 1e-4
  c.optimizer.warmup_steps = 0

  if "smoke" in variant:  # plumbing: synthetic clips, a random I3D, a tiny VDSR
    common.apply_smoke(c, steps=20)
    c.data.clip_length = 8
    c.model.num_layers = 2
    c.model.features = 8
    c.loss.recognizer = "random"
    c.train.batch_size = 2
    c.data.eval_split = "test"
  return c
