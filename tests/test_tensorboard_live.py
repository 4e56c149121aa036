"""TensorBoard on a gs:// workdir is live: event files reach the bucket during the run (every
writers.REMOTE_SYNC_SECS and at each flush), each uploaded once, and together they hold every value."""

import time

import pytest
from etils import epath

from arsr_jax import main, sharding, writers
from fake_gcs import fake_gcs  # noqa: F401  (pytest fixture)
from test_periodic_eval import tensorboard_events
from test_train import tiny_config


def _remote_events(url, tmp_path):
  """(step, tag) of every event file under ``url`` (copied to ``tmp_path`` to read them)."""
  tmp_path.mkdir(exist_ok=True)
  for p in epath.Path(url).glob("events.out.tfevents.*"):
    (tmp_path / p.name).write_bytes(p.read_bytes())
  return tensorboard_events(tmp_path)


@pytest.mark.slow
def test_tensorboard_on_gcs_is_live_during_the_run(fake_gcs, small_data_dir, tmp_path, monkeypatch):  # noqa: F811
  monkeypatch.setattr(writers, "REMOTE_SYNC_SECS", 0.2)
  logdir = f"{fake_gcs}/runs/live/tensorboard"
  to_global, calls, seen = sharding.to_global, [], []

  def watching(batch, mesh):  # before step 6: steps 1, 2, 4 are logged; wait for them in the bucket
    calls.append(1)
    if len(calls) == 6:
      deadline = time.monotonic() + 20
      while time.monotonic() < deadline:
        seen[:] = _remote_events(logdir, tmp_path / f"mid{len(seen)}")
        if {(s, "train/loss") for s in (1, 2, 4)} <= set(seen):
          break
        time.sleep(0.2)
    return to_global(batch, mesh)

  monkeypatch.setattr(sharding, "to_global", watching)
  c = tiny_config(small_data_dir, num_steps=8, log_every=2, checkpoint_every=100)
  main.run(c, f"{fake_gcs}/runs/live")
  assert {(s, "train/loss") for s in (1, 2, 4)} <= set(seen), seen  # while the run was at step 5
  final = _remote_events(logdir, tmp_path / "final")
  assert sorted(s for s, t in final if t == "train/loss") == [1, 2, 4, 6, 8]  # each value once
  assert {t for s, t in final if s == 8} >= {"eval/model_psnr", "eval/lr_bicubic_sr_hr"}
  assert len(fake_gcs.list_objects("runs/live/tensorboard/")) >= 2  # rolled over to new files
