"""ToSR1 (ICCV 2019): VDSR trained as a siamese net on consecutive frames t, t+1 with
a * (l(HR_t, SR_t) + l(HR_t+1, SR_t+1)) + b * l(SR_t, warp(SR_t+1, F)) + c * l(HR_t, warp(SR_t+1, F)),
F the HR flow t -> t+1; paper: a = 1/11, b = 10/11, c = 0, l = MSE ('huber' variant: the
released code's Huber 0.01).
Deliberate difference: the paper trains ToSR1 "with the same configuration as SoSR (except batch
size is 60)" (Sec. 4), i.e. Caffe SGD from a pretrained VDSR; this recipe uses Adam 1e-4 cosine
from scratch with 32 pairs (divisible by 8 devices). For the paper's optimisation take
configs/sosr_vdsr.py:paper's optimizer keys, batch 60 and --config.train.init_from=VDSR_DIR.
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "huber"), "tosr1_vdsr")
  c = config_lib.get_base_config()
  c.model.name = "vdsr"
  c.model.num_layers = 20
  c.model.features = 64
  c.data.sampler = "pair"
  c.data.patch_size = 128
  c.loss.name = "tosr"
  c.loss.pixel = "huber" if "huber" in variant else "mse"
  c.loss.delta = 0.01
  c.loss.a, c.loss.b, c.loss.c = 1 / 11, 10 / 11, 0.0
  c.train.batch_size = 32  # pairs: 64 frames per step
  c.optimizer.learning_rate = 1e-4
  if "smoke" in variant:
    common.apply_smoke(c)
    c.model.num_layers, c.model.features = 8, 32
    c.train.batch_size = 8
    c.optimizer.learning_rate = 1e-3
  return c
