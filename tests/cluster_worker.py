"""One process of a simulated cluster job (run by test_cluster.py with SLURM's environment variables).

usage: python cluster_worker.py MODE OUT.json [ARGS]
  step DEVICES OUT.npz: jax.distributed from SLURM's variables (arsr_jax.sharding), this process's
        DEVICES CPU devices; one SR train step on its shard of a fixed global batch of 8 (as
        multiprocess_worker.py) -> OUT.npz; devices, coordinator and the GPUs JAX would pick -> OUT.json.
  data DATA_DIR: synthetic_actions/small read from DATA_DIR (empty at the start) and the TV-L1
        flow of 4 of its clips; how often this process generated data and which clips it computed
        flow for -> OUT.json.
"""

import json
import os
import pathlib
import sys

mode, out = sys.argv[1], sys.argv[2]
devices = int(sys.argv[3]) if mode == "step" else 1
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from absl import logging  # noqa: E402

from arsr_jax import sharding  # noqa: E402

logging.set_verbosity(logging.INFO)

sharding.maybe_initialize_distributed(True, expect_devices=2 * devices)
from jax._src import distributed, xla_bridge  # noqa: E402

report = {"process": jax.process_index(), "processes": jax.process_count(), "local": jax.local_device_count(),
          "global": jax.device_count(), "coordinator": distributed.global_state.coordinator_address,
          "cuda_visible_devices": xla_bridge.CUDA_VISIBLE_DEVICES.value}
try:  # the check a launcher's --expect_devices makes, with a wrong count
  sharding.maybe_initialize_distributed(False, expect_devices=8 * devices)
except ValueError as e:
  report["wrong_count"] = str(e)

if mode == "step":
  from arsr_jax import config_lib  # noqa: E402
  from arsr_jax.jobs import sr as sr_job  # noqa: E402
  from arsr_jax.steps import sr as sr_steps  # noqa: E402

  config = config_lib.recipe("sosr_vdsr", "smoke")
  config.model.num_layers, config.model.features = 3, 8
  config.optimizer.warmup_steps = 0
  b, _ = sr_job.build(config)
  mesh = sharding.make_mesh()
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  state = jax.jit(sr_steps.make_init_fn(b, (1, 8, 8, 3)), out_shardings=repl)(jax.random.key(0))
  rng = np.random.default_rng(0)
  full = {"lr": rng.uniform(size=(8, 8, 8, 3)).astype(np.float32),
          "hr": rng.uniform(size=(8, 32, 32, 3)).astype(np.float32),
          "flow": rng.normal(size=(8, 32, 32, 2)).astype(np.float32)}
  per = 8 // jax.process_count()
  local = {k: v[jax.process_index() * per:(jax.process_index() + 1) * per] for k, v in full.items()}
  p_step = jax.jit(sr_steps.make_train_step(b), in_shardings=(repl, batched, repl, repl),
                   out_shardings=(repl, repl))
  new, metrics = p_step(state, sharding.to_global(local, mesh), {}, jax.random.key(1))
  np.savez(sys.argv[4], loss=float(metrics["loss"]),
           *[np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(new.params)])
else:
  import ml_collections  # noqa: E402
  import tensorflow_datasets as tfds  # noqa: E402

  from arsr_jax.data import pipeline, recognition_data  # noqa: E402

  generated, computed = [], []
  prepare = tfds.core.DatasetBuilder.download_and_prepare
  compute = recognition_data._compute_flows

  def counting_prepare(self, *args, **kwargs):
    generated.append(self.name)
    return prepare(self, *args, **kwargs)

  def recording_compute(config, split, source, clips, *args):
    computed.extend(clips)
    return compute(config, split, source, clips, *args)

  tfds.core.DatasetBuilder.download_and_prepare = counting_prepare
  recognition_data._compute_flows = recording_compute
  data_dir = sys.argv[3]
  source = pipeline.get_source("synthetic_actions/small", "train", data_dir)
  config = ml_collections.ConfigDict({"data": {
      "name": "synthetic_actions/small", "data_dir": data_dir,
      "tvl1": {"nscales": 1, "warps": 1, "outer_iterations": 1, "inner_iterations": 2}}})

  class FirstFour:  # 4 clips: the part each process computes stays small
    def __len__(self):
      return 4

    def __getitem__(self, i):
      return source[i]

  flows = recognition_data.tvl1_flows(config.data, "train", FirstFour())
  report.update(generated=generated, computed=computed, num_examples=len(source),
                ids=[str(source[i]["id"]) for i in range(len(source))],
                flows_sum=float(np.asarray(flows, np.float64).sum()), flows_shape=list(flows.shape))

pathlib.Path(out).write_text(json.dumps(report))
