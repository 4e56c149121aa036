"""TinyVIRAT end to end on dummy data: multi-label clip recognizer, then macro F1 of SR methods."""

import numpy as np

from arsr_jax import main
from arsr_jax.data import recognition_data
from configs import evaluate, recognizer
from test_real_video_builders import _tiny_tree, build, tiny


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
  assert recognition_data.is_multilabel(c) and recognition_data.num_classes(c) == 26
  res = main.run(c, str(tmp_path / "cls"))
  assert 0.0 <= res["macro_f1"] <= 1.0 and len(res["per_class_f1"]) == 26  # BCE-trained, sigmoid > 0.5

  e = evaluate.get_config("smoke")
  e.data.name, e.data.data_dir, e.data.eval_split = "tiny_virat/v1", data_dir, "test"
  e.evaluate.clip, e.evaluate.clip_length = str(tmp_path / "cls"), 4
  e.evaluate.lr_size, e.evaluate.input_size = 8, 16  # tiny clips -> 8x8 -> bicubic x4 -> 16x16
  e.evaluate.methods = "bicubic"
  out = main.run(e, str(tmp_path / "ev"))["methods"]["bicubic"]
  assert 0.0 <= out["clip_macro_f1"] <= 1.0 and len(out["clip_per_class_f1"]) == 26
  scores = np.load(tmp_path / "ev" / "scores.npz")["bicubic/clip"]
  assert scores.shape == (4, 26) and ((scores >= 0) & (scores <= 1)).all()  # max of sigmoids per video
