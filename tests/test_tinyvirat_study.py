"""Classifiers trained on SR outputs (TinyVIRAT eq. 4) and the one-command macro-F1 table."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arsr_jax.data import recognition_data
from arsr_jax.evaluation import frozen
from arsr_jax.jobs import recognition as rec_job
from arsr_jax.metrics import image as image_metrics
from arsr_jax.models import dvsr
from arsr_jax.steps import protocol as protocol_steps
from arsr_jax.steps import recognition as rec_steps


class _Probe(nn.Module):
  """A classifier whose logits are its input's first 3 values (times a weight 1): shows what it saw."""

  @nn.compact
  def __call__(self, clip, train=False):
    return self.param("w", nn.initializers.ones, ()) * clip.reshape(clip.shape[0], -1)[:, :3]


def _tiny_sr():
  model = dvsr.ProgressiveDVSR(scale=4, features=4, growth=4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 4, 3, 3, 3)))
  return frozen.FrozenSR("tiny", model, variables, 4, 1, {}, 0)


def test_sr_input_recognizer_sees_the_sr_output_not_hr():
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 256, (8, 12, 12, 3), dtype=np.uint8)
  lr = rng.integers(0, 256, (8, 3, 3, 3), dtype=np.uint8)
  example = {"hr": hr, "lr": lr, "label": np.int32(1)}
  take = recognition_data.SampleRecognition(kind="clip", clip_length=4, train=False, sr_input=True)
  clip = take.sample(example, None)["clip"]
  np.testing.assert_array_equal(clip, lr[2:6])  # the LR frames of the centred window, not HR
  video = {"video": hr, "labels": np.zeros(26, np.float32)}  # natively small video (TinyVIRAT): resized
  assert recognition_data.SampleRecognition(kind="clip", clip_length=4, train=False, sr_input=True,
                                            lr_size=6).sample(video, None)["clip"].shape == (4, 6, 6, 3)
  with pytest.raises(ValueError, match="no 'lr' frames; set data.lr_size"):
    take.sample(video, None)
  with pytest.raises(ValueError, match="clip recognizers"):
    recognition_data.SampleRecognition(kind="rgb", sr_input=True).sample(example, None)

  sr = _tiny_sr()
  prepare = rec_job.make_prepare(sr, 4, 0)
  frozen_vars = {"sr": sr.variables}
  batch = {"clip": jnp.asarray(clip[None]), "label": jnp.asarray([1])}
  seen = prepare(frozen_vars, batch)["clip"]
  expected = image_metrics.quantize(jnp.clip(sr.model.apply(sr.variables, clip[None].astype(np.float32) / 255.0), 0, 1))
  np.testing.assert_allclose(np.asarray(seen), np.asarray(expected), atol=1e-6)
  assert seen.shape == (1, 4, 12, 12, 3)
  assert not np.allclose(np.asarray(seen), hr[None, 2:6] / 255.0, atol=0.02)
  assert rec_job.make_prepare(sr, 4, 8)(frozen_vars, batch)["clip"].shape == (1, 4, 8, 8, 3)  # data.resize

  model, tx = _Probe(), optax.sgd(0.0)
  state = rec_steps.make_init_fn(model, tx, "clip", {"clip": np.zeros((4, 12, 12, 3))})(jax.random.key(0))
  logits = rec_steps.make_eval_step(model, "clip", lambda b: prepare(frozen_vars, b))(
      {"params": state.params["recognizer"]}, batch)["logits"]
  np.testing.assert_allclose(np.asarray(logits), np.asarray(seen).reshape(1, -1)[:, :3], atol=1e-6)
  # The evaluation protocol's clip path super-resolves the same way (one super-resolver).
  rec = frozen.FrozenRecognizer(model, {"params": state.params["recognizer"]}, "clip", 3, 1, 0, "probe")
  windows = {"lr": jnp.asarray(clip[None, :, None]), "hr": jnp.zeros((1, 4, 12, 12, 3), jnp.uint8)}
  np.testing.assert_allclose(np.asarray(protocol_steps.make_clip_step(sr, rec, None)(windows)["logits"]), np.asarray(logits),
                             atol=1e-6)
  stage1 = dataclasses.replace(sr, model=dvsr.ProgressiveDVSR(scale=4, stage=1, features=4, growth=4))
  with pytest.raises(ValueError, match="not x4 with every frame"):
    rec_job.make_prepare(stage1, 4, 0)(frozen_vars, batch)
  step = rec_steps.make_train_step(model, tx, optax.constant_schedule(0.0), "clip", prepare)
  _, metrics = step(state, batch, frozen_vars, jax.random.key(1))
  ce = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(seen).reshape(1, -1)[:, :3], jnp.asarray([1]))
  assert float(metrics["loss"]) == pytest.approx(float(ce[0]), rel=1e-5)


def test_methods_spec():
  from arsr_jax.studies import tinyvirat_study as tv
  assert tv.parse_methods("bicubic, dvsr=/w/d") == {"bicubic": "bicubic", "dvsr": "/w/d"}
  for bad, msg in (("", "empty"), ("/w/d", "name SR workdirs"), ("a=x,a=y", "twice")):
    with pytest.raises(ValueError, match=msg):
      tv.parse_methods(bad)


@pytest.mark.slow
def test_tinyvirat_study_one_command_table(small_data_dir, tmp_path, capsys):
  """Tiny SR (VDSR, 2 steps) + bicubic; a 3D ResNet trained on each one's outputs; one table row each."""
  from arsr_jax import config_lib, fileio, main
  from arsr_jax.studies import tinyvirat_study
  from test_real_video_builders import _tiny_tree, build, tiny

  sr = config_lib.recipe("vdsr", "smoke", {"data.data_dir": small_data_dir, "train.num_steps": 2,
                                           "train.checkpoint_every": 2, "eval.max_clips": 1,
                                           "model.num_layers": 2, "model.features": 4})
  main.run(sr, str(tmp_path / "vdsr"))
  _tiny_tree(tmp_path / "manual", "v1")
  data_dir = str(tmp_path / "data")
  build(tiny.Builder(config="v1", data_dir=data_dir, workers=0), tmp_path / "manual")
  out = tinyvirat_study.study(str(tmp_path / "study"), ["resnet3d"], {"bicubic": "bicubic",
                                                                      "vdsr": str(tmp_path / "vdsr")},
                              size="smoke", dataset="tiny_virat/v1", data_dir=data_dir, steps=2)
  assert list(out["table"]) == ["bicubic", "vdsr"]
  assert all(0.0 <= row["resnet3d"] <= 1.0 for row in out["table"].values())
  printed = capsys.readouterr().out
  assert "| bicubic |" in printed and "| vdsr |" in printed
  assert fileio.read_json(tmp_path / "study" / "table.json")["table"] == out["table"]
  trained = frozen.load_run_config(tmp_path / "study" / "resnet3d" / "vdsr")
  assert trained.data.sr_input == str(tmp_path / "vdsr") and trained.data.lr_size == 4
