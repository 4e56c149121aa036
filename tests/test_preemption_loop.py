"""Preemption of a multi-process run: 2 processes x 2 CPU devices (jax.distributed + gloo) train the
smoke recipe (benchmarks/multiprocess_train_bench.py's worker); SIGTERM to ONE process stops both
after the same step, with that step's checkpoint, and the loop agrees on it without a host sync
(all-gather) per step."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from arsr_jax import checkpointing

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import multiprocess_train_bench as bench  # noqa: E402


@pytest.mark.slow
def test_sigterm_one_process_stops_all_at_one_step_loop(small_data_dir, tmp_path):
  logs = [tmp_path / f"p{i}.log" for i in range(2)]
  files = [open(p, "w") for p in logs]
  port = str(bench._free_port())
  procs = [subprocess.Popen([sys.executable, bench.__file__, "--data_dir", small_data_dir, "--worker", str(i), "2",
                             port, str(tmp_path / "run"), "100000"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=files[i]) for i in range(2)]
  try:
    deadline = time.monotonic() + 300
    while "step 3/100000" not in logs[0].read_text():
      assert time.monotonic() < deadline and all(p.poll() is None for p in procs), logs[0].read_text()[-3000:]
      time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)  # process 0 gets no signal
    outs = [p.communicate(timeout=300)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
    for f in files:
      f.close()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log.read_text()[-3000:]
  results = [json.loads(o.strip().splitlines()[-1]) for o in outs]
  stopped = results[0]["step"]
  for r in results:
    assert r["stopped_by"] == "SIGTERM" and r["finished"] is False and r["step"] == stopped
    # The stop is agreed on the devices: no blocking all-gather between the first and last logged step.
    assert r["timed"]["steps"] >= 2 and r["timed"]["process_allgathers"] == 0, r
  assert 3 <= stopped < 100000
  assert checkpointing.steps(tmp_path / "run" / "checkpoints") == [stopped]
  step, state = checkpointing.load_latest_state(str(tmp_path / "run"))
  assert step == stopped and int(state["step"]) == stopped
