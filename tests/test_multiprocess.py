"""Multi-host data parallelism on one machine: 2 processes x 2 CPU devices (jax.distributed + gloo)
give the same train step as 1 process x 4 devices."""

import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("multiprocess_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  single = subprocess.run([sys.executable, WORKER, "0", "1", "0", tmp_path / "single.npz"],
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-2000:]
  port = str(_free_port())
  procs = [subprocess.Popen([sys.executable, WORKER, str(i), "2", port, tmp_path / f"p{i}.npz"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    try:
      _, err = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("multi-process run timed out")
    assert p.returncode == 0, err[-2000:]
  want = np.load(tmp_path / "single.npz")
  for i in range(2):
    got = np.load(tmp_path / f"p{i}.npz")
    assert set(got.files) == set(want.files)
    for k in want.files:
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-7)
