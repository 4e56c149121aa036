"""Recognizer training, frozen restore, the evaluation protocol and recognition-guided SR."""

import itertools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import pytest

from arsr_jax import checkpointing, inference, losses, main, sharding
from arsr_jax.data import recognition_data
from arsr_jax.evaluation import batched, frozen, protocol
from arsr_jax.steps import protocol as protocol_steps
from arsr_jax.evaluation.recognition_eval import RecognitionEvaluator
from arsr_jax.recognition import tsn
from arsr_jax.jobs import sr as sr_job
from arsr_jax.steps import recognition as rec_steps
from configs import dvsr_progressive_attention, recognizer, spmc, vdsr
from configs import protocol as protocol_recipe


def _rec_config(data_dir, name, steps=4, **data):
  c = recognizer.get_config(f"{name},smoke")
  c.data.data_dir = data_dir
  c.train.num_steps = steps
  c.train.log_every = steps
  c.train.checkpoint_every = steps
  c.eval.max_clips = 16
  c.data.update(data)
  return c


def _hand_accuracy(scores, labels, num_classes):
  """(accuracy, per-class accuracy with None for absent classes) counted video by video."""
  pred = [int(np.argmax(row)) for row in np.asarray(scores)]
  right = [int(p == y) for p, y in zip(pred, labels)]
  per_class = []
  for c in range(num_classes):
    hits = [r for r, y in zip(right, labels) if y == c]
    per_class.append(sum(hits) / len(hits) if hits else None)
  return sum(right) / len(right), per_class


@pytest.fixture(scope="module")
def workdirs(small_data_dir, tmp_path_factory):
  """Tiny trained runs on synthetic_actions/small: TSN RGB, TSN flow and a VDSR."""
  root = tmp_path_factory.mktemp("runs")
  out = {}
  for name in ("tsn_rgb", "tsn_flow"):
    out[name] = str(root / name)
    out[name + "_results"] = main.run(_rec_config(small_data_dir, name), out[name])
  cls = _rec_config(small_data_dir, "resnet3d", steps=2, clip_length=4)
  cls.recognizer.depth, cls.recognizer.width = 10, 4
  out["resnet3d"] = str(root / "resnet3d")
  main.run(cls, out["resnet3d"])
  c = vdsr.get_config("smoke")
  c.data.data_dir = small_data_dir
  c.model.num_layers, c.model.features = 2, 8
  c.train.num_steps = c.train.checkpoint_every = 2
  c.eval.max_clips = 1
  out["vdsr"] = str(root / "vdsr")
  main.run(c, out["vdsr"])
  return out


@pytest.mark.slow
def test_recognizer_runs_write_config_and_hr_accuracy(workdirs):
  for name in ("tsn_rgb", "tsn_flow"):
    cfg = frozen.load_run_config(workdirs[name])
    assert cfg.task == "recognition" and cfg.recognizer.num_classes == 12
    res = workdirs[name + "_results"]
    assert res["num_videos"] == 16 and len(res["per_class_accuracy"]) == 12
    # The reported numbers are the hand-counted ones of the restored network's logits.
    mesh = sharding.make_mesh()
    rec = frozen.load_recognizer(workdirs[name], sharding.replicated(mesh), jnp.float32, 12)
    config = frozen.load_run_config(workdirs[name])
    logits, labels = RecognitionEvaluator(config, rec.model, rec.kind).logits(rec.variables, mesh)
    acc, per_class = _hand_accuracy(next(iter(logits.values())), labels.tolist(), 12)
    assert res["accuracy"] == pytest.approx(acc)
    assert [x is None for x in res["per_class_accuracy"]] == [x is None for x in per_class]
    assert [x for x in res["per_class_accuracy"] if x is not None] == pytest.approx([x for x in per_class if x is not None])
  assert frozen.load_run_config(workdirs["tsn_flow"]).recognizer.flow_stack == 3


@pytest.mark.slow
def test_frozen_recognizer_restores_in_eval_mode(workdirs, small_data_dir):
  mesh = sharding.make_mesh()
  rec = frozen.load_recognizer(workdirs["tsn_rgb"], sharding.replicated(mesh), jnp.float32, 12)
  _, state = checkpointing.load_latest_state(workdirs["tsn_rgb"])
  stats = state["model_state"]["recognizer"]["batch_stats"]
  config = _rec_config(small_data_dir, "tsn_rgb")
  batch = batched.stack_items(list(itertools.islice(recognition_data.eval_items(config, "rgb"), 8)))
  step = jax.jit(rec_steps.make_eval_step(rec.model, rec.kind))
  # Eval mode: BatchNorm uses the stored statistics and dropout is off, so a video's logits do not
  # depend on the other videos of its batch (batch statistics would mix them).
  whole = step(rec.variables, {"rgb": batch["rgb"]})["logits"]
  alone = step(rec.variables, {"rgb": batch["rgb"][:1]})["logits"]
  np.testing.assert_allclose(np.asarray(alone)[0], np.asarray(whole)[0], rtol=1e-4, atol=1e-5)
  reversed_batch = step(rec.variables, {"rgb": batch["rgb"][::-1]})["logits"]
  np.testing.assert_allclose(np.asarray(reversed_batch)[::-1], np.asarray(whole), rtol=1e-4, atol=1e-5)
  for x, y in zip(jax.tree.leaves(stats), jax.tree.leaves(rec.variables["batch_stats"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The restored network reproduces the accuracy the run reported (same TSN test sampling).
  logits, labels = RecognitionEvaluator(config, rec.model, rec.kind).logits(rec.variables, mesh)
  acc = float((logits["logits"].argmax(-1) == labels).mean())
  assert acc == pytest.approx(workdirs["tsn_rgb_results"]["accuracy"])


@pytest.mark.slow
def test_recognizer_for_another_class_count_is_refused(workdirs):
  repl = sharding.replicated(sharding.make_mesh())
  with pytest.raises(ValueError, match=r"predicts 12 classes; the evaluation data has 5"):
    frozen.load_recognizer(workdirs["tsn_rgb"], repl, jnp.float32, 5)
  with pytest.raises(ValueError, match="not a recognizer"):
    frozen.load_recognizer(workdirs["vdsr"], repl, jnp.float32, 12)


def _eval_config(data_dir, workdirs, methods):
  c = protocol_recipe.get_config("smoke")
  c.data.data_dir = data_dir
  c.data.flow_stack = 3
  c.eval.max_clips = 16
  c.protocol.spatial, c.protocol.temporal = workdirs["tsn_rgb"], workdirs["tsn_flow"]
  c.protocol.methods = methods
  return c


@pytest.mark.slow
def test_protocol_end_to_end(workdirs, small_data_dir, tmp_path):
  methods = f"bicubic,hr,vdsr={workdirs['vdsr']},mixed={workdirs['vdsr']}:bicubic"
  results = main.run(_eval_config(small_data_dir, workdirs, methods), str(tmp_path))
  m = results["methods"]
  assert list(m) == ["bicubic", "hr", "vdsr", "mixed"]
  for name, r in m.items():
    for key in ("spatial_accuracy", "temporal_accuracy", "fusion_accuracy", "psnr", "ssim", "warp_error"):
      assert r[key] is not None and (np.isfinite(r[key]) or (name, key) == ("hr", "psnr")), key
    assert len(r["fusion_per_class_accuracy"]) == 12
  assert m["hr"]["psnr"] == np.inf and m["hr"]["ssim"] == pytest.approx(1.0)  # identical frames
  assert m["bicubic"]["psnr"] < 40
  # Each stream sees only its own SR source: 'mixed' = VDSR spatial, bicubic temporal.
  assert m["mixed"]["spatial_accuracy"] == m["vdsr"]["spatial_accuracy"]
  assert m["mixed"]["temporal_accuracy"] == m["bicubic"]["temporal_accuracy"]
  # Fusion is the 1 : 1.5 weighted average of the saved per-video stream scores.
  scores = np.load(tmp_path / "scores.npz")
  fused = (scores["vdsr/spatial"] + 1.5 * scores["vdsr/temporal"]) / 2.5
  assert m["vdsr"]["fusion_accuracy"] == pytest.approx(float((fused.argmax(-1) == scores["labels"]).mean()))
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["methods"]["vdsr"]["fusion_accuracy"] == m["vdsr"]["fusion_accuracy"]
  assert saved["methods"]["hr"]["psnr"] == "inf"  # JSON has no infinity (io.write_json)
  assert "| hr | " in protocol.results_table(results) and " inf |" in protocol.results_table(results)
  # The views and the fusion used are recorded (smoke: one centre view; TSN streams: 1 : 1.5).
  assert (saved["views"], saved["fusion_weights"]) == (1, [1.0, 1.5])
  assert "1 view per segment (centre crop), fusion 1 : 1.5)" in protocol.results_table(results)
  plots = set(os.listdir(tmp_path / "plots"))
  assert {"scatter_vdsr_fusion.png", "scatter_vdsr_spatial.png", "profile_0.png"} <= plots


@pytest.mark.slow
def test_protocol_refuses_recognizers_of_another_dataset(workdirs, small_data_dir, tmp_path):
  other = tmp_path / "tsn_rgb_default"  # same 12 classes, trained on another config of the data
  shutil.copytree(workdirs["tsn_rgb"], other)
  cfg = json.loads((other / "config.json").read_text())
  cfg["data"]["name"] = "synthetic_actions/default"
  (other / "config.json").write_text(json.dumps(cfg))
  c = _eval_config(small_data_dir, workdirs, "bicubic")
  c.protocol.spatial = str(other)
  with pytest.raises(ValueError, match=r"tsn_rgb_default was trained on synthetic_actions/default \(12 classes\); "
                                       r"the evaluation data is synthetic_actions/small \(12 classes\)"):
    protocol.run(c, str(tmp_path / "ev"))
  assert not (tmp_path / "ev").exists()


@pytest.mark.slow
def test_protocol_rejects_sr_of_another_scale(workdirs, small_data_dir, tmp_path):
  other = tmp_path / "vdsr_x2"
  shutil.copytree(workdirs["vdsr"], other)
  cfg = json.loads((other / "config.json").read_text())
  cfg["scale"] = 2
  (other / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match=r"SR checkpoint .*vdsr_x2 is x2; .* has x4 LR"):
    protocol.run(_eval_config(small_data_dir, workdirs, f"x2={other}"), str(tmp_path / "ev"))


def test_short_video_error_names_the_video():
  example = {"hr": np.zeros((4, 8, 8, 3), np.uint8), "lr": np.zeros((4, 2, 2, 3), np.uint8), "id": 7}
  with pytest.raises(ValueError, match="3 frames, fewer than the 5"):
    protocol_steps.sample_two_stream(example, 25, 5, 1, 1, False)
  config = protocol_recipe.get_config("smoke")
  sample = lambda ex: protocol_steps.sample_two_stream(ex, 25, 5, 1, 1, False)  # noqa: E731
  with pytest.raises(ValueError, match="Video 7 of"):
    protocol.map_videos(config, [example], 1, sample, lambda b: b, sharding.make_mesh())


@pytest.mark.slow  # trains SPMC, then the protocol end to end (and the workdirs fixture's trainings)
def test_protocol_runs_spmc_on_3_frame_windows(workdirs, small_data_dir, tmp_path):
  """SPMC is a K-window method (as VSR-DUF): restored with its 3-frame input, the protocol feeds it
  centred windows on both streams and the enhancement path windows a stream of frames."""
  c = spmc.get_config("smoke")
  c.data.data_dir = small_data_dir
  c.train.num_steps = c.train.checkpoint_every = 2
  c.train.batch_size, c.eval.max_clips = 8, 1
  main.run(c, str(tmp_path / "spmc"))
  sr = frozen.load_sr(str(tmp_path / "spmc"), sharding.replicated(sharding.make_mesh()), jnp.float32)
  assert sr.input_frames == 3 and not sr.is_clip_model
  assert inference.spec_for(sr, 16) == inference.WindowSpec("window", 3)
  frames = [np.full((16, 16, 3), 40 * t, np.uint8) for t in range(4)]
  out = [f for f, _ in inference.from_frozen(sr, 16)(iter(frames))]
  assert len(out) == 4 and all(f.shape == (64, 64, 3) for f in out)
  e = _eval_config(small_data_dir, workdirs, f"spmc={tmp_path / 'spmc'}")
  e.eval.max_clips = 4  # CPU time: TV-L1 of every temporal stack
  m = main.run(e, str(tmp_path / "eval"))["methods"]
  for key in ("spatial_accuracy", "temporal_accuracy", "fusion_accuracy", "psnr", "ssim", "warp_error"):
    assert m["spmc"][key] is not None and np.isfinite(m["spmc"][key]), key


def test_map_videos_on_8_devices_equals_1_device():
  source = [{"x": np.full((3,), i, np.float32), "id": i} for i in range(11)]
  config = protocol_recipe.get_config("smoke")
  step = lambda b: {"y": b["x"].sum(-1) * 2.0}  # noqa: E731
  config.eval.batch_size = 8
  sample = lambda ex: {"x": ex["x"], "label": np.int32(ex["id"])}  # noqa: E731
  many = protocol.map_videos(config, source, 11, sample, step, sharding.make_mesh())
  one = protocol.map_videos(config, source, 11, sample, step, sharding.make_mesh(jax.devices()[:1]))
  np.testing.assert_array_equal(many["label"], np.arange(11))
  np.testing.assert_array_equal(many["y"], np.arange(11) * 6.0)
  np.testing.assert_array_equal(many["y"], one["y"])


def test_two_stream_sampling_follows_tsn():
  t = 40
  example = {"hr": np.arange(t)[:, None, None, None] * np.ones((t, 4, 4, 3), np.uint8),
             "lr": np.arange(t)[:, None, None, None] * np.ones((t, 1, 1, 3), np.uint8)}
  out = protocol_steps.sample_two_stream(example, 25, 5, 1, 7, False)
  starts = tsn.segment_indices(t - 1, 25, 5)
  np.testing.assert_array_equal(out["sp_hr"][:, 0, 0, 0], tsn.segment_indices(t, 25, 1))
  np.testing.assert_array_equal(out["tp_hr"][:, :, 0, 0, 0], starts[:, None] + np.arange(6))
  assert out["tp_lr"].shape == (25, 6, 7, 1, 1, 3)  # 7-frame LR windows (VSR-DUF) per stack frame
  np.testing.assert_array_equal(out["tp_lr"][0, 0, :, 0, 0, 0], np.clip(starts[0] + np.arange(-3, 4), 0, t - 1))


def test_parse_methods():
  m = protocol.parse_methods("bicubic,hr,v=W1,s+t=W2:W3")
  assert [(x.name, x.spatial, x.temporal) for x in m] == [
      ("bicubic", "bicubic", "bicubic"), ("hr", "hr", "hr"), ("v", "W1", "W1"), ("s+t", "W2", "W3")]
  with pytest.raises(ValueError, match="NAME=SPATIAL"):
    protocol.parse_methods("vdsr")
  with pytest.raises(ValueError, match="distinct"):
    protocol.parse_methods("bicubic,bicubic")


@pytest.mark.slow
def test_protocol_clip_recognizer(workdirs, small_data_dir, tmp_path):
  c = _eval_config(small_data_dir, workdirs, f"bicubic,vdsr={workdirs['vdsr']},hr")
  c.protocol.spatial = c.protocol.temporal = ""
  c.protocol.clip, c.protocol.clip_length = workdirs["resnet3d"], 4
  m = protocol.run(c, str(tmp_path))["methods"]
  saved = np.load(tmp_path / "scores.npz")
  for name, r in m.items():  # accuracy and per-class accuracy counted by hand from the saved scores
    acc, per_class = _hand_accuracy(saved[f"{name}/clip"], saved["labels"].tolist(), 12)
    assert r["clip_accuracy"] == pytest.approx(acc)
    assert [x is None for x in r["clip_per_class_accuracy"]] == [x is None for x in per_class]
    assert [x for x in r["clip_per_class_accuracy"] if x is not None] == pytest.approx(
        [x for x in per_class if x is not None])
  scores = saved["hr/clip"]  # mean softmax over the two 4-frame windows
  np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)


def test_multilabel_summary_is_tinyvirat_macro_f1():
  e = protocol_recipe.get_config("").protocol
  labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]])
  probs = np.array([[.9, .6, .1], [.2, .7, .4], [.1, .2, .3]])  # predictions: {0, 1}, {1}, {}
  res, _ = protocol._summarize({"clip": probs}, labels, 3, e)
  # class 0: TP 1, FN 1 -> 2/3; class 1: TP 1, FP 1 -> 2/3; class 2: no positives at all -> 0
  assert res["clip_macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


@pytest.mark.slow
def test_attention_objective_routes_gradients(workdirs, small_data_dir, tmp_path):
  """The action term on sg(SR) * A trains only the map; the joint action term trains SR."""
  c = dvsr_progressive_attention.get_config("smoke,joint")
  c.loss.classifier = workdirs["resnet3d"]
  c.loss.action_weight = 0.5  # the released joint runs' action CE on C(SR) (not in eq. 3's 'joint')
  objective, fz = losses.build_objective(c.loss, "float32", sr_job.restore_classifier(c.loss, jnp.float32))
  rng = np.random.default_rng(0)
  sr = jnp.asarray(rng.random((2, 4, 64, 64, 3)), jnp.float32)
  att = jnp.asarray(rng.random((2, 4, 64, 64, 1)), jnp.float32)
  batch = {"hr": jnp.asarray(rng.random((2, 4, 64, 64, 3)), jnp.float32), "label": jnp.asarray([1, 5])}

  def term(name):
    return lambda s, a: objective(s, dict(batch, attention=a), fz)[1][name]
  g_sr, g_att = jax.grad(term("attention_action"), argnums=(0, 1))(sr, att)
  assert float(jnp.abs(g_sr).max()) == 0.0 and float(jnp.abs(g_att).max()) > 0
  g_sr, g_att = jax.grad(term("action"), argnums=(0, 1))(sr, att)
  assert float(jnp.abs(g_sr).max()) > 0 and float(jnp.abs(g_att).max()) == 0.0
  g_sr, g_att = jax.grad(term("attention_mean"), argnums=(0, 1))(sr, att)
  np.testing.assert_allclose(np.asarray(g_att), 1.0 / att.size, rtol=1e-5)
  # The recipe trains end to end with the attention branch and labels in the batch.
  c.data.data_dir = small_data_dir
  c.train.num_steps, c.train.steps_per_run, c.train.batch_size = 4, 2, 8
  assert main.run(c, str(tmp_path / "att")) == {"step": 2, "finished": False}


def test_study_claims_logic():
  from arsr_jax.studies import study
  m = {k: {"spatial_accuracy": s, "temporal_accuracy": t, "fusion_accuracy": f}
       for k, (s, t, f) in {"bicubic": (.1, .1, .2), "vdsr": (.2, .1, .3), "sosr": (.3, .1, .35),
                            "tosr": (.2, .2, .36), "sosr+tosr": (.3, .2, .4), "hr": (.4, .3, .5)}.items()}
  claims = study.check_claims(m)
  assert all(c["holds"] for c in claims.values())
  m["tosr"]["temporal_accuracy"] = 0.05
  m["hr"]["fusion_accuracy"] = 0.39
  claims = study.check_claims(m)
  assert not claims["tosr_temporal"]["holds"] and not claims["hr_ceiling"]["holds"]
  assert claims["sosr_spatial"]["holds"] and claims["sosr_tosr_best"]["holds"]


def test_sr_flow_uses_the_temporal_streams_training_tvl1():
  import types
  e = protocol_recipe.get_config("").protocol
  recs = {"spatial": types.SimpleNamespace(tvl1=None),
          "temporal": types.SimpleNamespace(tvl1={"nscales": 2, "warps": 1})}
  params = protocol.flow_params(e, recs)
  assert (params.nscales, params.warps, params.inner_iterations) == (2, 1, 30)
  e.tvl1.nscales = 4  # an explicit setting wins
  assert protocol.flow_params(e, recs).nscales == 4
  assert protocol.flow_params(protocol_recipe.get_config("").protocol, {"spatial": recs["spatial"]}).nscales == 5


@pytest.mark.slow
def test_protocol_with_st_resnet(workdirs, small_data_dir, tmp_path):
  """ST-ResNet's two heads become the spatial and temporal scores; RGB is the stack's centre frame."""
  w = str(tmp_path / "st")
  main.run(_rec_config(small_data_dir, "st_resnet", steps=2), w)
  c = _eval_config(small_data_dir, workdirs, "bicubic")
  c.protocol.spatial = c.protocol.temporal = ""
  c.protocol.two_stream = w
  res = protocol.run(c, str(tmp_path / "ev"))
  r = res["methods"]["bicubic"]
  assert {"spatial_accuracy", "temporal_accuracy", "fusion_accuracy"} <= set(r)
  # ST-ResNet's own fusion: its released test averages the two prediction layers (1 : 1).
  assert res["fusion_weights"] == [1.0, 1.0]
  scores = np.load(tmp_path / "ev" / "scores.npz")
  fused = (scores["bicubic/spatial"] + scores["bicubic/temporal"]) / 2
  assert r["fusion_accuracy"] == pytest.approx(float((fused.argmax(-1) == scores["labels"]).mean()))
  c.protocol.spatial = workdirs["tsn_rgb"]
  with pytest.raises(ValueError, match="not both"):
    protocol.run(c, str(tmp_path / "ev2"))


def test_mcnemar_exact():
  from arsr_jax.studies import study
  a = np.array([True] * 6 + [False] * 4)
  b = np.array([False] * 6 + [False] * 4)
  assert study.mcnemar_p(a, b) == pytest.approx(2 / 64)  # 6 discordant pairs, all one way
  assert study.mcnemar_p(a, a) == 1.0


def test_recognizer_inputs_travel_as_uint8_and_step_like_floats(small_data_dir):
  """The recognition sampler keeps frames uint8 and flow float16 (as stored); the jitted step maps uint8 to [0, 1]
  exactly as the host did before, for TSN RGB and for I3D's (-1, 1) input range."""
  config = recognizer.get_config("tsn_rgb,smoke")
  config.data.data_dir = small_data_dir
  source = recognition_data.recognition_source(config.data, config.data.train_split, "rgb")
  item = recognition_data.sampler(config.data, "rgb", train=True).sample(source[0], np.random.default_rng(0))
  assert item["rgb"].dtype == np.uint8
  two = recognition_data.sampler(config.data, "two_stream", train=False,
                                 num_segments=config.eval.num_segments).sample(source[0], None)
  assert two["rgb"].dtype == np.uint8 and two["flow"].dtype == np.float16  # as stored
  rng = np.random.default_rng(0)
  for net, kind, shape in ((tsn.TSN(modality="rgb", num_classes=3, depth=18, width=8), "rgb", (2, 2, 32, 32, 3)),
                           (_SignedClipNet(), "clip", (2, 4, 8, 8, 3))):
    u8 = rng.integers(0, 256, shape, np.uint8)
    variables = net.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, jnp.zeros(shape), train=False)
    run = jax.jit(lambda v, x: rec_steps.apply(net, v, kind, {kind: x}, train=False)["logits"])
    np.testing.assert_allclose(run(variables, u8), run(variables, u8.astype(np.float32) / 255.0), rtol=1e-5, atol=1e-5)
  assert float(jnp.min(rec_steps.model_inputs(_SignedClipNet(), "clip", {"clip": np.zeros((1, 2, 2, 2, 3), np.uint8)})[0])) == -1.0


class _SignedClipNet(nn.Module):
  """A clip network that, like I3D, declares its input range (-1, 1)."""
  INPUT_RANGE = (-1.0, 1.0)

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(3)(jnp.mean(x, axis=(1, 2, 3)))
