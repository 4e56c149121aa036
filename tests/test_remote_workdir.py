"""A whole smoke run with its workdir on gs:// (an offline emulator): train, checkpoint, resume, eval.

Every workdir output goes through etils.epath (checkpoints through Orbax/TensorStore), so a URL works
wherever a local path does. The emulator is tests/fake_gcs.py (skips cleanly when its packages are absent).
"""

import json

import jax
import numpy as np
import pytest
from etils import epath

from arsr_jax import checkpointing, main
from fake_gcs import fake_gcs  # noqa: F401  (pytest fixture)
from configs import sosr_vdsr


def _config(data_dir, **train):
  c = sosr_vdsr.get_config("smoke")
  c.data.data_dir = data_dir
  c.model.num_layers, c.model.features = 2, 8
  c.optimizer.warmup_steps = 0
  c.train.batch_size = c.eval.batch_size = 8
  c.train.num_steps, c.train.log_every, c.train.checkpoint_every = 4, 2, 2
  c.eval.max_clips = 1
  c.train.update(train)
  return c


@pytest.mark.slow
def test_smoke_run_with_a_gcs_workdir(fake_gcs, small_data_dir, tmp_path):  # noqa: F811
  workdir = f"{fake_gcs}/runs/sosr"
  first = main.run(_config(small_data_dir, steps_per_run=2), workdir)
  assert first == {"step": 2, "finished": False}
  assert any(name.startswith("runs/sosr/checkpoints/2/") for name in fake_gcs.list_objects("runs/sosr/"))
  results = main.run(_config(small_data_dir), workdir)  # resumes at step 2 from gs://
  assert results["step"] == 4 and np.isfinite(results["model"]["psnr"])
  remote = epath.Path(workdir)
  assert json.loads((remote / "results.json").read_text())["model"] == results["model"]
  assert json.loads((remote / "eval" / "step_4.json").read_text())["step"] == 4
  assert json.loads((remote / "config.json").read_text())["model"]["num_layers"] == 2
  assert any(p.name.startswith("events.out.tfevents") for p in (remote / "tensorboard").iterdir())
  step, state = checkpointing.load_latest_state(workdir)
  assert step == 4 and int(state["step"]) == 4
  # Evaluating the restored checkpoint again (mode=eval) gives the same numbers.
  c = _config(small_data_dir)
  c.mode = "eval"
  assert main.run(c, workdir)["model"] == results["model"]
  # The same run on a local workdir gives the same parameters (nothing differs but the storage).
  main.run(_config(small_data_dir), str(tmp_path / "local"))
  _, local = checkpointing.load_latest_state(str(tmp_path / "local"))
  for a, b in zip(jax.tree.leaves(local["params"]), jax.tree.leaves(state["params"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
