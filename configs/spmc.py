"""SPMC baseline (Tao et al., "Detail-revealing Deep Video Super-resolution", ICCV 2017): 3 LR frames ->
the centre HR frame through motion estimation, sub-pixel motion compensation (forward splatting to the
HR grid) and an encoder-decoder with a ConvLSTM; trained on Y with MSE + the flow's warp loss.

The paper trains in three phases (Sec. 4), one run each here, chained with train.init_from:
  stage1  motion estimation only: L_ME = warp L1 + lambda_1 ||grad F||_1, lambda_1 = 0.01, 70,000
          iterations;
  stage2  detail fusion only, motion frozen: L_SR, 20,000 iterations (init_from the stage1 workdir);
  ''      (default) joint: L_SR + lambda_2 L_ME (init_from the stage2 workdir).
lambda_1 and the two iteration counts: a third-party summary of the paper's Sec. 4 and
JesseYang/VideoSR cfgs/config_VideoSR.py (lambda1 0.01, me_max_iteration 70000, spmc_max_iteration
20000); we could not read the paper's own text. Adam at 1e-4: the paper as cited in issue #22 and both
re-implementations read (JesseYang/VideoSR, LoSealL/VideoSuperResolution). Not found, so ours:
lambda_2 = 0.01, the per-step weights kappa_i (1/K each), the joint phase's length (50,000), batch 16,
HR patches 128 (LR 32), a constant learning rate. K = 3 frames as the released x2/x4 models (3f).
The ICCV'19 paper (Tables 3-4) trains its baselines "with MSE": L_SR is MSE.
"""

import ml_collections

from arsr_jax import config_lib

common = config_lib.configs_module("common")  # configs/common.py


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variant = config_lib.parse_variant(arg, ("smoke", "stage1", "stage2"), "spmc")
  if {"stage1", "stage2"} <= variant:
    raise ValueError("spmc: pick one of 'stage1' and 'stage2' (the default is the joint phase)")
  c = config_lib.get_base_config()
  c.model.name = "spmc"
  c.model.features = 32
  c.model.luma = True
  c.data.input_frames = 3
  c.data.patch_size = 128
  c.loss.name = "spmc"
  c.loss.space = "y"
  c.loss.sr_weight = 1.0
  c.loss.flow_weight = 0.01  # lambda_2
  c.loss.smoothness_weight = 0.01  # lambda_1
  c.train.batch_size = 16
  c.train.num_steps = 50_000
  c.optimizer.learning_rate = 1e-4
  c.optimizer.schedule = "constant"
  if "stage1" in variant:
    c.loss.sr_weight, c.loss.flow_weight = 0.0, 1.0
    c.train.num_steps = 70_000
  elif "stage2" in variant:
    c.model.freeze_motion = True
    c.loss.flow_weight = 0.0
    c.train.num_steps = 20_000
  if "smoke" in variant:
    common.apply_smoke(c, steps=100)
    c.model.features = 16
    c.train.batch_size = 8
  return c
