"""Device mesh, data-parallel shardings and one-off work shared by the processes of a run.

One mesh axis, ``data``, spans every device of every process. Batches are
sharded along their leading axis; parameters and optimizer state are
replicated. Each process feeds only its local slice of the global batch.

Work done once for all processes (generating a dataset, a TV-L1 cache) runs
where ``run_once`` says and is announced through the jax.distributed key-value
store: no device computation is involved, so the others can wait for hours.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from arsr_jax import config_lib

DATA_AXIS = "data"


# How long a process waits for another's one-off work (see ``run_once``): data preparation can be long.
WAIT_S = 24 * 3600


def maybe_initialize_distributed(distributed: bool = False, expect_devices: int = 0) -> None:
  """Calls ``jax.distributed.initialize`` for multi-process runs; logs and checks the devices.

  With ``distributed`` (the ``--distributed`` flag) or JAX_COORDINATOR_ADDRESS
  set, JAX connects the processes; on Cloud TPU pods, SLURM and Open MPI it
  discovers the coordinator, process id and count itself. Under SLURM (not on
  TPU) JAX also restricts each process to GPU ``SLURM_LOCALID`` (jax/_src/clusters/
  cluster.py): right with one task per GPU, one GPU of the node with one task per node.
  ``expect_devices`` > 0 (what the launcher allocated) raises ValueError when the
  run sees another number of devices, instead of training on fewer.
  """
  if distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
  logging.info("devices: process %d of %d sees %d local %s device(s); the job sees %d",
               jax.process_index(), jax.process_count(), jax.local_device_count(), jax.default_backend(),
               jax.device_count())
  if expect_devices and jax.device_count() != expect_devices:
    raise ValueError(f"the job sees {jax.device_count()} devices ({jax.process_count()} processes x "
                     f"{jax.local_device_count()} local in process {jax.process_index()}), the launcher "
                     f"allocated {expect_devices}")


def _client():
  from jax._src import distributed  # noqa: PLC0415  (the key-value store has no public API)
  return distributed.global_state.client


def report(key: str, fn: Callable[[], Any]) -> Any:
  """Runs ``fn`` and publishes 'done' (or its error) under ``key`` for ``wait_for``; returns its result."""
  try:
    result = fn()
  except BaseException as e:
    if jax.process_count() > 1:
      _client().key_value_set(key, f"failed: {type(e).__name__}: {e}", allow_overwrite=True)
    raise
  if jax.process_count() > 1:
    _client().key_value_set(key, "done", allow_overwrite=True)
  return result


def wait_for(key: str, what: str) -> None:
  """Blocks until another process ``report``ed ``key`` (up to WAIT_S); raises if its work failed."""
  if jax.process_count() == 1:
    return
  logging.info("process %d waits for %s", jax.process_index(), what)
  try:
    value = _client().blocking_key_value_get(key, WAIT_S * 1000)
  except Exception as e:  # jaxlib raises on the deadline
    raise TimeoutError(f"process {jax.process_index()} waited {WAIT_S} s for {what}: {e}") from e
  if value != "done":
    raise RuntimeError(f"{what} {value}")


def run_once(key: str, fn: Callable[[], Any], what: str) -> None:
  """``fn()`` on process 0 only; every other process waits until it has finished (or raises its error)."""
  if jax.process_index() == 0:
    report(key, fn)
  else:
    wait_for(key, f"process 0 {what}")


def mark_done(key: str) -> None:
  """Process 0 found ``run_once``'s work already done: releases processes that did not see it yet."""
  if jax.process_count() > 1 and jax.process_index() == 0:
    _client().key_value_set(key, "done", allow_overwrite=True)


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
