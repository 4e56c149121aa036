"""Device mesh and data-parallel shardings.

One mesh axis, ``data``, spans every device of every process. Batches are
sharded along their leading axis; parameters and optimizer state are
replicated. Each process feeds only its local slice of the global batch.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from arsr_jax import config_lib

DATA_AXIS = "data"


def maybe_initialize_distributed(distributed: bool = False) -> None:
  """Calls ``jax.distributed.initialize`` for multi-process runs.

  With ``distributed`` (the ``--distributed`` flag) or JAX_COORDINATOR_ADDRESS
  set, JAX connects the processes; on Cloud TPU pods, SLURM and Open MPI it
  discovers the coordinator, process id and count itself. Each process then
  feeds its own shard of every batch.
  """
  if distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D ``data`` mesh over ``devices`` (default: all devices, all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, what: str = "train.batch_size") -> int:
  """Returns the per-process batch size; config_lib.Mismatch (one line, exit 2 in the CLI) if the
  devices do not divide it."""
  n = mesh.devices.size
  if global_batch % n:
    raise config_lib.Mismatch(f"{what}={global_batch} is not divisible by the {n} devices of the mesh; "
                     f"use a multiple of {n}")
  local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
  return global_batch // n * local_devices


def to_global(batch: Any, mesh: Mesh) -> Any:
  """Turns this process's slice of a batch (pytree of NumPy arrays) into global jax.Arrays."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
