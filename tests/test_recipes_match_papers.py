"""The full recipes (no variant) carry the numbers the papers state; each assertion names its source.

ICCV'19 = Zhang et al., Two-Stream Action Recognition-Oriented Video SR (arXiv); TinyVIRAT =
Demir et al., ICPR 2020; TSN = Wang et al., ECCV 2016. README's Recipes table is the same list.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arsr_jax import config_lib, losses, optim
from arsr_jax.flow.tvl1 import TVL1Params


def _c(name, arg=""):
  c = config_lib.recipe(name, arg)
  config_lib.validate(c)
  return c


def test_vdsr():
  c = _c("vdsr")
  assert (c.model.num_layers, c.model.features) == (20, 64)  # VDSR (Kim et al. 2016) Sec. 3.1: d = 20, 64 filters
  assert c.loss.name == "mse" and c.scale == 4  # ICCV'19 Sec. 4: 4x bicubic down-sampling


def test_sosr_vdsr():
  c = _c("sosr_vdsr")
  assert (c.model.name, c.model.num_layers, c.model.features) == ("vdsr", 20, 64)  # ICCV'19 Sec. 3.1: VDSR
  assert c.data.patch_size == 128  # ICCV'19 Sec. 4: 128x128 aligned patches
  assert c.loss.name == "sosr" and c.loss.get("perceptual_layer", "conv3_3") == "conv3_3"  # Sec. 3.1: VGG-16 conv3_3
  # Sec. 4: alpha puts WMSE and perceptual "at the same scale": measured equal-scale value here.
  assert c.loss.perceptual_weight == pytest.approx(2.87e-4)
  assert _c("sosr_vdsr", "paper_alpha").loss.perceptual_weight == 5.29e-5  # Sec. 4, literal
  p = _c("sosr_vdsr", "paper")
  # Sec. 4: lr 1e-3 filters / 1e-4 biases, /10 every quarter of the iterations, batch 50.
  assert (p.optimizer.name, p.optimizer.learning_rate, p.optimizer.bias_lr_factor) == ("sgd", 1e-3, 0.1)
  n = p.train.num_steps
  assert p.optimizer.schedule == "step" and p.optimizer.decay_factor == 0.1
  assert tuple(p.optimizer.boundaries) == (n // 4, n // 2, 3 * n // 4)
  assert p.train.batch_size == 50
  # run length changes keep the quarters
  q = config_lib.set_run_length(_c("sosr_vdsr", "paper"), 1000)
  assert tuple(q.optimizer.boundaries) == (250, 500, 750) and q.train.num_steps == 1000


def test_tosr():
  c1 = _c("tosr1_vdsr")
  assert (c1.model.num_layers, c1.model.features, c1.data.sampler) == (20, 64, "pair")  # ICCV'19 Sec. 3.2: VDSR siamese
  assert (c1.loss.a, c1.loss.b, c1.loss.c) == (1 / 11, 10 / 11, 0.0)  # Sec. 4: alpha 1/11, beta 10/11, gamma 0
  assert c1.loss.pixel == "mse" and c1.data.patch_size == 128  # eq. 3 MSE terms; Sec. 4 patches as SoSR
  c2 = _c("tosr2_duf16")
  assert (c2.model.name, c2.model.num_layers, c2.data.input_frames) == ("duf", 16, 7)  # Sec. 3.2: VSR-DUF-16
  assert (c2.loss.a, c2.loss.b, c2.loss.c) == (1.0, 1.0, 1.0)  # Sec. 4: alpha = beta = gamma = 1
  assert c2.train.batch_size == 16 and c2.optimizer.learning_rate == 1e-3  # Sec. 4: batch 16 (lr: see README)


def test_sosr_esrgan_weights_are_flow_pixels():
  c = _c("sosr_esrgan")
  # Poster / released SRRaGAN_model.py: L1(W SR, W HR) x1e-2 + VGG x1 + RaGAN x5e-3; W unscaled |flow|.
  assert c.loss.flow_weighted and (c.loss.pixel_weight, c.loss.perceptual_weight, c.loss.gan_weight) == (1e-2, 1.0, 5e-3)
  assert (c.model.num_blocks, c.model.features, c.model.growth) == (23, 64, 32)  # train_ESRGAN.json nb 23, nf 64, gc 32
  objective, _ = losses.build_objective(config_lib.recipe("sosr_esrgan", "", {"loss.perceptual_weight": 0.0}).loss)
  hr = jnp.zeros((1, 2, 2, 3))
  sr = hr.at[0, 0, 0].set(0.5)
  flow = jnp.zeros((1, 2, 2, 2)).at[0, 0, 0].set(jnp.array([3.0, 4.0]))  # |flow| = 5 px
  _, aux = objective(sr, {"hr": hr, "flow": flow}, {})
  assert float(aux["pixel"]) == pytest.approx(5 * 0.5 * 3 / 12)  # mean |W (SR - HR)|, W = 5 (raw pixels)


def test_gan_recipes_use_imagenet_vgg19_conv5_4():
  # ESRGAN (Wang et al., ECCVW 2018) Sec. 3.3: VGG19 conv5_4 features "before activation" (BasicSR
  # train_ESRGAN_x4: vgg19, conv5_4, L1); SRGAN (Ledig et al., CVPR 2017) Sec. 2.2.1: phi_5,4 after
  # activation. Both on ImageNet weights: 'auto' = torchvision's vgg19 (fetched, never random features).
  for name, pre_activation in (("esrgan", True), ("sosr_esrgan", True), ("srgan", False)):
    loss = _c(name).loss
    assert (loss.perceptual_arch, loss.perceptual_layer, loss.get("perceptual_pre_activation", False),
            loss.perceptual_weights) == ("vgg19", "conv5_4", pre_activation, "auto"), name
  assert _c("esrgan").loss.perceptual_criterion == "l1" and _c("srgan").loss.perceptual_criterion == "mse"


def test_progressive_dvsr():
  c = _c("dvsr_progressive")
  assert c.data.clip_length == 16  # TinyVIRAT Sec. III-B.2: "The network takes 16 RGB frames"
  assert c.train.fade_steps == 200  # Sec. IV-B: alpha += 5e-3 per iteration -> 1 after 200
  assert (c.optimizer.name, c.optimizer.learning_rate, c.optimizer.b1, c.optimizer.b2) == ("adam", 2e-4, 0.5, 0.9)  # Sec. IV-B
  assert c.loss.name == "l1"  # eq. 1 with F_att = 1 in phase 1
  assert c.model.features == 32 and c.model.growth == 32  # released conf/228l.py: ngf 32, nbf 32


def test_attention_recipe_and_objective_follow_eq_1():
  c = _c("dvsr_progressive_attention")
  # TinyVIRAT eq. 1-2; released conf/228l.py: l1_wloc 1.0, loc 1.0, loc_reg 5e-4, no plain 'l1'.
  assert (c.loss.l1_weight, c.loss.attention_l1_weight, c.loss.attention_action_weight, c.loss.sparsity_weight) == (
      0.0, 1.0, 1.0, 5e-4)
  assert c.loss.action_weight == 0.0 and _c("dvsr_progressive_attention", "l1_plus").loss.l1_weight == 1.0
  j = _c("dvsr_progressive_attention", "joint")
  assert (j.loss.l1_weight, j.loss.action_weight) == (1.0, 0.5)  # Sec. IV-B: lambda_rec 1, lambda_att 0.5
  logits = jnp.array([[2.0, 0.0]])
  clf = losses.Classifier(apply=lambda v, clip: logits * jnp.mean(clip), variables={})
  objective, frozen = losses.build_objective(c.loss, classifier=clf)
  hr = jnp.zeros((1, 1, 2, 2, 3))
  sr = hr + 0.25
  att = jnp.array([1.0, 0.0, 0.5, 0.5]).reshape(1, 1, 2, 2, 1)
  loss, _ = objective(sr, {"hr": hr, "label": jnp.array([0]), "attention": att}, frozen)
  masked_mean = float(jnp.mean(sr * att))
  ce = float(optax.softmax_cross_entropy_with_integer_labels(logits * masked_mean, jnp.array([0]))[0])
  expected = 0.25 * 0.5 + ce + 5e-4 * 0.5  # mean(A |SR - HR|) + CE + lambda mean(A); no plain L1
  assert float(loss) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name,lr,bounds,steps,dropout", [
    ("tsn_rgb", 1e-3, (2_000, 4_000), 4_500, 0.8),  # TSN Sec. 4.1 spatial; Sec. 3.2 dropout 0.8
    ("tsn_flow", 5e-3, (12_000, 18_000), 20_000, 0.7),  # TSN Sec. 4.1 temporal; tsn-pytorch flow dropout 0.7
])
def test_tsn_recognizers(name, lr, bounds, steps, dropout):
  from arsr_jax.recognition.tsn import DEFAULT_DROPOUT
  c = _c("recognizer", name)
  assert (c.optimizer.name, c.optimizer.momentum, c.train.batch_size) == ("sgd", 0.9, 256)  # TSN Sec. 4.1
  assert c.optimizer.learning_rate == lr and tuple(c.optimizer.boundaries) == bounds and c.train.num_steps == steps
  assert c.optimizer.decay_factor == 0.1  # "decreases to 1/10"
  assert DEFAULT_DROPOUT[c.recognizer.modality] == dropout and c.recognizer.get("dropout_rate") is None
  assert (c.data.num_segments, c.data.new_length) == (3, 5)  # TSN Sec. 3.3/4.1: K = 3 segments, 5 flow fields
  # TV-L1 at OpenCV DualTVL1's defaults (denseflow): no overrides.
  assert c.data.flow_source == "tvl1" and not c.data.tvl1.to_dict()
  p = TVL1Params()
  # cv::optflow::DualTVL1OpticalFlow::create defaults (TVL1Params' docstring).
  assert (p.tau, p.lambda_, p.theta, p.nscales, p.warps, p.epsilon, p.inner_iterations, p.outer_iterations,
          p.scale_step, p.gamma, p.median_filtering) == (0.25, 0.15, 0.3, 5, 5, 0.01, 30, 10, 0.8, 0.0, 5)


def test_bias_lr_factor_scales_only_biases():
  cfg = config_lib.recipe("sosr_vdsr", "paper").optimizer
  tx = optim.build_optimizer(cfg, 100)
  params = {"conv": {"kernel": jnp.ones(2), "bias": jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # SGD step: -lr * (g + wd * p); bias lr is 1/10 of the filters' (ICCV'19 Sec. 4)
  np.testing.assert_allclose(updates["conv"]["kernel"], -1e-3 * (1 + 1e-4), rtol=1e-6)
  np.testing.assert_allclose(updates["conv"]["bias"], -1e-4 * (1 + 1e-4), rtol=1e-6)


def test_loss_terms_at_init_give_the_equal_scale_alpha(small_data_dir):
  """benchmarks/sosr_alpha.py's measurement at tiny size: WMSE and perceptual of the initial VDSR."""
  from arsr_jax.jobs import sr as sr_job
  c = config_lib.recipe("sosr_vdsr", "smoke", {
      "data.data_dir": small_data_dir, "train.batch_size": 2, "loss.perceptual_weight": 0.5,
      "loss.perceptual_weights": "random", "loss.perceptual_layer": "conv2_2"})
  terms = sr_job.loss_terms_at_init(c, num_batches=1)
  assert terms["wmse"] > 0 and terms["perceptual"] > 0
  a = terms["wmse"] / (terms["wmse"] + terms["perceptual"])
  assert (1 - a) * terms["wmse"] == pytest.approx(a * terms["perceptual"])  # "at the same scale" (ICCV'19 Sec. 4)


def _diff(a, b):
  fa, fb = _flat(a.to_dict()), _flat(b.to_dict())
  return {k for k in fa.keys() | fb.keys() if fa.get(k, "<missing>") != fb.get(k, "<missing>")}


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


def test_full_size_studies_are_the_full_recipes():
  """--size full = configs/<recipe>.py (no variant) with only dataset and run length changed."""
  from arsr_jax import real_study, study
  allowed = {"data.name", "data.data_dir", "train.num_steps", "optimizer.boundaries", "optimizer_d.boundaries",
             "scale", "train.init_from"}
  recipes = {"tsn_rgb": ("recognizer", "tsn_rgb"), "tsn_flow": ("recognizer", "tsn_flow"), "vdsr": ("vdsr", ""),
             "sosr": ("sosr_vdsr", ""), "tosr": ("tosr1_vdsr", ""), "dvsr_stage1": ("dvsr_progressive", "stage1"),
             "dvsr_stage2": ("dvsr_progressive", "stage2"), "dvsr_stage3": ("dvsr_progressive", "stage3")}
  built = dict(study.runs("full", "/tmp/tfds"))
  built.update(real_study.runs(8, "full", "/tmp/tfds", "/tmp/w"))
  assert set(built) == set(recipes)
  for name, config in built.items():
    assert _diff(config, _c(*recipes[name])) <= allowed, name
  assert built["tsn_flow"].train.num_steps == 20_000 and built["sosr"].loss.perceptual_weight == pytest.approx(2.87e-4)
  assert built["dvsr_stage2"].train.fade_steps == 200 and built["dvsr_stage3"].model.features == 32


@pytest.mark.slow
def test_sosr_paper_variant_trains_two_steps(small_data_dir, tmp_path):
  """The paper variant (SGD, bias lr x0.1 through optax.masked inside the per-network optimizer) runs."""
  from arsr_jax import main
  c = config_lib.recipe("sosr_vdsr", "paper,smoke", {"data.data_dir": small_data_dir, "train.num_steps": 2,
                                                      "train.checkpoint_every": 2, "eval.max_clips": 1})
  c.model.num_layers, c.model.features = 2, 8
  res = main.run(c, str(tmp_path))
  assert res["step"] == 2 and np.isfinite(res["model"]["psnr"])
