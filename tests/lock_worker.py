"""One process of a 2-process jax.distributed run taking a workdir lock (test_run_reliability.py).

usage: python lock_worker.py PROCESS_ID PORT WORKDIR
Prints 'held: lock file True|False' inside the lock, or 'refused: MESSAGE'.
"""

import os
import pathlib
import sys

pid, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)

from jax.experimental import multihost_utils  # noqa: E402

from arsr_jax import workdir_lock  # noqa: E402

try:
  with workdir_lock.hold(workdir):
    multihost_utils.sync_global_devices("inside")  # both processes are inside the lock together
    print("held: lock file", os.path.exists(os.path.join(workdir, workdir_lock.LOCK_NAME)), flush=True)
    multihost_utils.sync_global_devices("leaving")
except workdir_lock.WorkdirInUse as e:
  print(f"refused: {e}", flush=True)
