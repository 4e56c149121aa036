"""One process of a multi-process data-parallel train step (run by test_multiprocess.py).

usage: python multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz
Each process owns 4 / NUM_PROCESSES simulated CPU devices and feeds its own
slice of a fixed global batch of 8; the updated parameters go to OUT.npz.
"""

import os
import pathlib
import sys

pid, nproc, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // nproc}"
os.environ["JAX_PLATFORMS"] = "cpu"
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
if nproc > 1:
  os.environ["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{port}"
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)

from arsr_jax import config_lib, sharding  # noqa: E402
from arsr_jax.jobs import sr as sr_job  # noqa: E402
from arsr_jax.steps import sr as sr_steps  # noqa: E402

config = config_lib.recipe("sosr_vdsr", "smoke")
config.model.num_layers, config.model.features = 3, 8
config.optimizer.warmup_steps = 0
b, b_frozen = sr_job.build(config)
mesh = sharding.make_mesh()
repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
state = jax.jit(sr_steps.make_init_fn(b, (1, 8, 8, 3)), out_shardings=repl)(jax.random.key(0))
step = sr_steps.make_train_step(b)
rng = np.random.default_rng(0)
full = {"lr": rng.uniform(size=(8, 8, 8, 3)).astype(np.float32),
        "hr": rng.uniform(size=(8, 32, 32, 3)).astype(np.float32),
        "flow": rng.normal(size=(8, 32, 32, 2)).astype(np.float32)}
per = 8 // jax.process_count()
local = {k: v[pid * per:(pid + 1) * per] for k, v in full.items()}  # this process's shard only
p_step = jax.jit(step, in_shardings=(repl, batched, repl, repl), out_shardings=(repl, repl))
new, metrics = p_step(state, sharding.to_global(local, mesh), {}, jax.random.key(1))
np.savez(out, loss=float(metrics["loss"]),
         *[np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(new.params)])
