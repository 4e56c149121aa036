"""Orbax checkpoints of the train state, the grain iterator and run metadata.

A checkpoint step directory holds three items:
  state: the ``TrainState`` pytree (params, optimizer state, step, model state);
  data:  this process's grain iterator state (one file per process);
  meta:  JSON with the model/scale/loss config, used to refuse restoring a
         checkpoint of another model into this run.
Saving is asynchronous; retention follows ``max_to_keep`` only.
"""

from __future__ import annotations

from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from arsr_jax import io

# Config sections whose values must match for a checkpoint to be restored, per config.task.
IDENTITY_KEYS = {"sr": ("model", "discriminator", "scale"), "recognition": ("task", "recognizer")}


def identity_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return IDENTITY_KEYS[config.get("task", "sr")]


def manager(workdir: io.PathLike, *, max_to_keep: int, async_save: bool = True) -> ocp.CheckpointManager:
  """The CheckpointManager of ``workdir/checkpoints`` (local or a URL such as gs://...)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(io.path(workdir) / "checkpoints", options=options,
                               item_names=("state", "data", "meta"))


def run_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {k: (config[k].to_dict() if isinstance(config[k], ml_collections.ConfigDict) else config[k])
          for k in identity_keys(config)}


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter: grain.DatasetIterator | None,
         config: ml_collections.ConfigDict) -> None:
  items = {"state": ocp.args.StandardSave(state),
           "meta": ocp.args.JsonSave({"step": step, **run_identity(config)})}
  if data_iter is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iter)
  mngr.save(step, args=ocp.args.Composite(**items))


def check_identity(mngr: ocp.CheckpointManager, step: int, config: ml_collections.ConfigDict) -> None:
  """Raises if the checkpoint at ``step`` was written for another model or scale."""
  meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  want = run_identity(config)
  have = {k: meta.get(k) for k in want}
  if have != want:
    diffs = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
    raise ValueError(
        f"The checkpoint at step {step} in {mngr.directory} was written for a different run: "
        + "; ".join(f"{k}: checkpoint has {h}, config asks for {w}" for k, (h, w) in diffs.items())
        + ". Use another --workdir (nothing was changed in this one).")


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any,
            data_iter: grain.DatasetIterator | None, config: ml_collections.ConfigDict) -> Any:
  """Restores state (with the shardings of ``abstract_state``) and, in place, the iterator."""
  check_identity(mngr, step, config)
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iter is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"Checkpoint at step {step} in {mngr.directory} does not match this model's "
                     f"parameters/optimizer state: {e}") from e
  logging.info("Restored checkpoint step %d from %s", step, mngr.directory)
  return restored["state"]


def abstract(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """ShapeDtypeStructs of ``tree`` (e.g. from jax.eval_shape) carrying ``sharding``."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def load_latest_state(workdir: io.PathLike) -> tuple[int, Any]:
  """(step, state as a nested dict of arrays) of the newest checkpoint in ``workdir``.

  For inspection and frozen use; training restores through ``restore``. Arrays land on this
  process's first device, whatever topology wrote them (a TPU pod's run restores on a laptop).
  """
  directory = io.path(workdir) / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(f"No checkpoints directory in {workdir}")
  with ocp.CheckpointManager(directory, item_names=("state", "data", "meta"),
                             options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
    step = mngr.latest_step()
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {directory}")
    tree = ocp.StandardCheckpointer().metadata(directory / str(step) / "state").item_metadata
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
  return step, state
