"""TinyVIRAT end to end on dummy data: multi-label clip recognizer, then macro F1 of SR methods."""

import jax.numpy as jnp
import numpy as np
import pytest

from arsr_jax import main, sharding
from arsr_jax.data import recognition_data
from arsr_jax.evaluation import frozen
from arsr_jax.evaluation.recognition_eval import RecognitionEvaluator
from configs import protocol as protocol_recipe
from configs import recognizer
from test_real_video_builders import _tiny_tree, build, tiny


def _hand_f1(probs, labels):
  """(macro F1, per-class F1) of predictions probs > 0.5, class by class: 2 TP / (2 TP + FP + FN),
  0 when a class is neither labelled nor predicted (TinyVIRAT's macro F1 over all classes)."""
  per_class = []
  for c in range(labels.shape[1]):
    pred, true = [p > 0.5 for p in probs[:, c]], [bool(t) for t in labels[:, c]]
    tp = sum(p and t for p, t in zip(pred, true))
    fp = sum(p and not t for p, t in zip(pred, true))
    fn = sum(t and not p for p, t in zip(pred, true))
    per_class.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
  return sum(per_class) / len(per_class), per_class


@pytest.mark.slow
def test_tinyvirat_multilabel_recognizer_and_f1(tmp_path):
  _tiny_tree(tmp_path / "manual", "v1")
  data_dir = str(tmp_path / "data")
  build(tiny.Builder(config="v1", data_dir=data_dir, workers=0), tmp_path / "manual")

  c = recognizer.get_config("resnet3d,smoke")
  c.data.name, c.data.data_dir, c.data.eval_split = "tiny_virat/v1", data_dir, "test"
  c.data.clip_length, c.data.resize = 4, 16
  c.recognizer.depth, c.recognizer.width = 10, 4
  c.train.num_steps = c.train.checkpoint_every = c.train.log_every = 2
  c.train.batch_size = c.eval.batch_size = 8
  assert recognition_data.is_multilabel(c.data) and recognition_data.num_classes(c.data) == 26
  res = main.run(c, str(tmp_path / "cls"))
  assert len(res["per_class_f1"]) == 26  # BCE-trained, sigmoid > 0.5
  mesh = sharding.make_mesh()
  rec = frozen.load_recognizer(str(tmp_path / "cls"), sharding.replicated(mesh), jnp.float32, 26)
  logits, labels = RecognitionEvaluator(frozen.load_run_config(str(tmp_path / "cls")), rec.model,
                                        rec.kind).logits(rec.variables, mesh)
  f1, per_class = _hand_f1(1 / (1 + np.exp(-np.asarray(next(iter(logits.values()))))), np.asarray(labels))
  assert res["macro_f1"] == pytest.approx(f1) and res["per_class_f1"] == pytest.approx(per_class)

  e = protocol_recipe.get_config("smoke")
  e.data.name, e.data.data_dir, e.data.eval_split = "tiny_virat/v1", data_dir, "test"
  e.protocol.clip, e.protocol.clip_length = str(tmp_path / "cls"), 4
  e.protocol.lr_size, e.protocol.input_size = 8, 16  # tiny clips -> 8x8 -> bicubic x4 -> 16x16
  e.protocol.methods = "bicubic"
  out = main.run(e, str(tmp_path / "ev"))["methods"]["bicubic"]
  saved = np.load(tmp_path / "ev" / "scores.npz")
  scores = saved["bicubic/clip"]
  assert scores.shape == (4, 26) and ((scores >= 0) & (scores <= 1)).all()  # max of sigmoids per video
  f1, per_class = _hand_f1(scores, saved["labels"])
  assert out["clip_macro_f1"] == pytest.approx(f1) and out["clip_per_class_f1"] == pytest.approx(per_class)
