"""SoSR on a VDSR backbone (Zhang et al., ICCV 2019, arXiv version).

Loss (1 - a) * WMSE + a * perceptual, WMSE weighted by the HR optical-flow
magnitude (paper eq. 1). The paper uses a = 5.29e-5 on VGG16 conv3_3; the
perceptual term arrives with the model zoo, so a = 0 here for now.

  python -m arsr_jax.main --config configs/sosr_vdsr.py --workdir DIR
  python -m arsr_jax.main --config configs/sosr_vdsr.py:smoke --workdir DIR   # ~minutes on CPU
"""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = config_lib.get_base_config()
  c.model.name = "vdsr"
  c.model.num_layers = 20
  c.model.features = 64
  c.loss.name = "sosr"
  c.loss.perceptual_weight = 0.0
  c.data.patch_size = 128
  c.train.batch_size = 64
  c.optimizer.learning_rate = 1e-4

  if arg == "smoke":  # small data, small net, a few hundred steps on a CPU
    c.data.name = "synthetic_actions/small"
    c.data.patch_size = 32
    c.model.num_layers = 8
    c.model.features = 32
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 20
    c.train.batch_size = 16
    c.train.num_steps = 300
    c.train.log_every = 50
    c.train.checkpoint_every = 100
    c.eval.batch_size = 16
  elif arg:
    raise ValueError(f"Unknown variant {arg!r} of sosr_vdsr; use '' or 'smoke'")
  return c
