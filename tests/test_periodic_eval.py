"""Validation during training (eval.every_steps): eval/step_N.json and eval/* TensorBoard scalars and
images at every N, kept across stops and continued by a resumed run."""

import json
import pathlib
import struct

import numpy as np
import pytest

from arsr_jax import config_lib, main
from test_train import tiny_config


def tensorboard_events(logdir) -> list[tuple[int, str]]:
  """(step, tag) of every summary value in every event file under ``logdir``."""
  from tensorboardX.proto import event_pb2
  out = []
  for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
    data, off = path.read_bytes(), 0
    while off < len(data):
      (n,) = struct.unpack("<Q", data[off:off + 8])
      event = event_pb2.Event.FromString(data[off + 12:off + 12 + n])
      off += 12 + n + 4
      out += [(event.step, v.tag) for v in event.summary.value]
  return out


def _config(data_dir, **train):
  c = tiny_config(data_dir, num_steps=8, **train)
  c.eval.every_steps = 2
  return c


@pytest.mark.slow
def test_every_steps_evaluates_and_a_resumed_run_continues(small_data_dir, tmp_path):
  evals = tmp_path / "eval"
  assert main.run(_config(small_data_dir, steps_per_run=4), str(tmp_path)) == {"step": 4, "finished": False}
  assert sorted(p.name for p in evals.iterdir()) == ["step_2.json", "step_4.json"]
  first = {n: json.loads((evals / f"step_{n}.json").read_text()) for n in (2, 4)}
  for n, r in first.items():
    assert r["step"] == n and r["split"] == "test" and np.isfinite(r["model"]["psnr"])
  assert first[2]["model"]["psnr"] != first[4]["model"]["psnr"]  # the network of that step
  events = tensorboard_events(tmp_path / "tensorboard")
  assert {s for s, t in events if t == "eval/model_psnr"} == {2, 4}
  assert {s for s, t in events if t.startswith("eval/lr_bicubic_sr_hr")} == {2, 4}
  # A resumed run does not redo an evaluation it finds (step 4: marked), and goes on (6).
  (evals / "step_4.json").write_text(json.dumps({"step": 4, "marker": True}))
  assert main.run(_config(small_data_dir, steps_per_run=2), str(tmp_path))["step"] == 6
  assert json.loads((evals / "step_4.json").read_text())["marker"] is True
  at_6 = json.loads((evals / "step_6.json").read_text())
  # A run stopped at an evaluation step before evaluating it (as a signal does) evaluates it on resuming,
  # with the restored network: the same numbers.
  (evals / "step_6.json").unlink()
  final = main.run(_config(small_data_dir), str(tmp_path))
  assert final["step"] == 8
  assert json.loads((evals / "step_6.json").read_text())["model"] == pytest.approx(at_6["model"])
  assert sorted(p.name for p in evals.iterdir()) == [f"step_{n}.json" for n in (2, 4, 6, 8)]
  assert json.loads((tmp_path / "results.json").read_text())["step"] == 8  # the final evaluation's
  assert {s for s, t in tensorboard_events(tmp_path / "tensorboard") if t == "eval/model_psnr"} == {2, 4, 6, 8}


def test_every_steps_must_be_a_count():
  c = config_lib.recipe("sosr_vdsr", "smoke")
  c.eval.every_steps = -1
  with pytest.raises(ValueError, match="eval.every_steps"):
    config_lib.validate(c)
  assert config_lib.recipe("esrgan").eval.every_steps == 5000  # full recipes validate during training
