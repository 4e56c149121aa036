"""Orbax checkpoints of the train state, the grain iterator and run metadata.

A checkpoint step directory holds three items:
  state: the ``TrainState`` pytree (params, optimizer state, step, model state);
  data:  this process's grain iterator state (one file per process);
  meta:  JSON with the run's identity (model, discriminator, scale, loss, data for
         SR; recognizer and data for recognizers), used to refuse restoring a
         checkpoint of another run, and the sha256 of every array of ``state``.
Saving is asynchronous; retention follows ``max_to_keep`` only. A save that fails (e.g. a full
disk) raises ``SaveFailed`` at the first ``check_saves`` after it failed (the train loop calls it
every step; it does not block) or at ``wait``: one line naming the checkpoint path and, for a full
disk, the free space and the space a checkpoint needs; the save's temporary directory is removed
and Orbax's own tracebacks for it are not logged. The previous checkpoints stay intact.

Restoring verifies the checksums. A damaged checkpoint (unreadable, truncated,
bytes changed, empty) is reported with its path and the newest intact one is
used instead; with ``strict=True`` (``train.strict_restore``) it is an error. An
intact checkpoint whose state has other parameter names than the run's (the per-block
names of older unrolled nets) is refused (``StateTreeMismatch``, naming
``python -m arsr_jax.upgrade``), never skipped or converted.
The identity is checked first, by reading ``meta`` only: a refused workdir is
left exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any, Callable

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from arsr_jax import config_lib, fileio, save_failures

# Config sections whose values must match for a checkpoint to be restored, per config.task.
IDENTITY_KEYS = {"sr": ("model", "discriminator", "scale", "loss", "data"),
                 "recognition": ("task", "recognizer", "data")}
# data.* keys that may change between invocations of one run: where the data lives, how it is read,
# which split is evaluated. Everything else under data shapes what is trained.
RESUMABLE_DATA_KEYS = ("data_dir", "worker_count", "read_threads", "eval_split")
ITEMS = ("state", "data", "meta")
META_FILE = "metadata"  # what ocp.JsonCheckpointHandler names its file inside the item directory


class CheckpointDamaged(ValueError):
  """A checkpoint that cannot be read back as it was written."""


SaveFailed = save_failures.SaveFailed


def identity_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return IDENTITY_KEYS[config.get("task", "sr")]


def manager(workdir: fileio.PathLike, *, max_to_keep: int, async_save: bool = True) -> ocp.CheckpointManager:
  """The CheckpointManager of ``workdir/checkpoints`` (local or a URL such as gs://...); creates it."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(fileio.path(workdir) / "checkpoints", options=options, item_names=ITEMS)


def run_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The identity sections of ``config`` as JSON values (tuples become lists, as in the meta file)."""
  out = {}
  for k in identity_keys(config):
    v = config[k].to_dict() if isinstance(config[k], ml_collections.ConfigDict) else config[k]
    if k == "data":
      v = {key: x for key, x in v.items() if key not in RESUMABLE_DATA_KEYS}
    out[k] = v
  return json.loads(json.dumps(out))


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _host(x) -> np.ndarray:
  """``x`` on the host; a replicated array that spans processes is read from a local copy."""
  if isinstance(x, jax.Array):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if not x.is_fully_addressable:
      if not x.is_fully_replicated:
        raise ValueError("checksums need replicated or process-local arrays")
      x = x.addressable_data(0)
  return np.ascontiguousarray(np.asarray(x))


def checksums(tree: Any) -> dict[str, str]:
  """{leaf path: sha256 of its dtype, shape and bytes} of an array pytree."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = _host(leaf)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    out[_path_name(path)] = h.hexdigest()
  return out


def verify(tree: Any, want: dict[str, str] | None, where: epath.Path) -> None:
  """Raises CheckpointDamaged naming ``where`` when ``tree``'s checksums differ from ``want``."""
  if want is None:
    logging.warning("Checkpoint %s has no checksums (written by an older arsr_jax); not verified", where)
    return
  have = checksums(tree)
  if set(have) == set(want):
    bad = sorted(k for k in want if have[k] != want[k])
  else:  # restored without the saved tree structure (names differ): compare the digests themselves
    bad = ["(arrays)"] if sorted(have.values()) != sorted(want.values()) else []
  if bad:
    raise CheckpointDamaged(f"{where}: the restored arrays differ from what was saved "
                            f"(checksum mismatch in {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''})")


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter: grain.DatasetIterator | None,
         config: ml_collections.ConfigDict) -> None:
  meta = {"step": step, **run_identity(config), "checksums": checksums(state)}
  items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
  if data_iter is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iter)
  wait(mngr)  # the previous save (Orbax waits for it anyway): its failure is reported as its own
  mngr.arsr_pending = (step, sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state)))
  save_failures.HELD_ORBAX_ERRORS.pending = True
  try:
    mngr.save(step, args=ocp.args.Composite(**items))
  except Exception as e:  # noqa: BLE001 - Orbax/TensorStore report write errors in many types
    raise _save_failed(mngr, e) from e


def check_saves(mngr: ocp.CheckpointManager) -> None:
  """Raises SaveFailed if an asynchronous save has failed by now; does not block (a finished
  save's errors are held by Orbax's finalize thread until someone waits for it)."""
  if getattr(mngr, "arsr_pending", None) and not mngr.is_saving_in_progress():
    wait(mngr)  # the save has finished: returns at once, or raises its error
    mngr.arsr_pending = None


def wait(mngr: ocp.CheckpointManager) -> None:
  """Waits for the pending save; SaveFailed (one line) if it failed."""
  try:
    mngr.wait_until_finished()
  except Exception as e:  # noqa: BLE001
    raise _save_failed(mngr, e) from e
  save_failures.HELD_ORBAX_ERRORS.release()


def _save_failed(mngr: ocp.CheckpointManager, e: Exception) -> SaveFailed:
  """SaveFailed for the pending save of ``mngr``, after removing its temporary directory."""
  step, nbytes = getattr(mngr, "arsr_pending", None) or (None, 0)
  directory = fileio.path(mngr.directory)
  with contextlib.suppress(Exception):  # the failed save's threads are done; nothing else to report
    mngr.wait_until_finished()
  save_failures.HELD_ORBAX_ERRORS.drop()
  if jax.process_index() == 0 and step is not None:
    save_failures.remove_temporary(directory, step)
  return save_failures.describe(e, directory, step, nbytes, [s for s in steps(directory) if s != step])


def steps(directory: fileio.PathLike) -> list[int]:
  """Step numbers of the checkpoint directories in ``directory``, ascending; reads only."""
  directory = fileio.path(directory)
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def read_meta(directory: fileio.PathLike, step: int) -> dict[str, Any]:
  """The ``meta`` item of a step; CheckpointDamaged names the file when it is missing or unreadable."""
  p = fileio.path(directory) / str(step) / "meta" / META_FILE
  try:
    meta = json.loads(p.read_text())
  except (OSError, ValueError) as e:
    raise CheckpointDamaged(f"{p}: unreadable checkpoint metadata ({type(e).__name__}: {e})") from e
  if not isinstance(meta, dict):
    raise CheckpointDamaged(f"{p}: checkpoint metadata is not a JSON object")
  return meta


def check_identity(directory: fileio.PathLike, config: ml_collections.ConfigDict) -> None:
  """Raises if a checkpoint in ``directory`` was written for another run; writes nothing.

  Every readable ``meta`` is compared (damaged ones are left to ``restore_latest``); keys an
  older checkpoint did not record are not compared.
  """
  directory = fileio.path(directory)
  want = run_identity(config)
  for step in reversed(steps(directory)):
    try:
      meta = config_lib.upgrade_stored(read_meta(directory, step))  # keys renamed since: new names
    except CheckpointDamaged:
      continue
    diffs = {k: (meta[k], want[k]) for k in want if k in meta and meta[k] != want[k]}
    if diffs:  # config_lib.Mismatch: arsr_jax.main prints it as one line, exit status 2
      raise config_lib.Mismatch(
          f"The checkpoint at step {step} in {directory} was written for a different run: "
          + "; ".join(f"{k}: checkpoint has {h}, config asks for {w}" for k, (h, w) in diffs.items())
          + ". Use another --workdir (nothing was changed in this one).")


def _brief(e: Exception) -> str:
  """One line of at most ~300 characters (TensorStore errors span pages)."""
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text[:300]}{' ...' if len(text) > 300 else ''}"


class StateTreeMismatch(config_lib.Mismatch):
  """An intact checkpoint whose state tree has other names than this run's (e.g. written by the
  unrolled nets of an older arsr_jax): refused, not skipped as damaged (main: one line, exit 2)."""


def _restore_step(mngr: ocp.CheckpointManager, step: int, abstract_state: Any,
                  data_iter: grain.DatasetIterator | None) -> Any:
  where = fileio.path(mngr.directory) / str(step)
  meta = read_meta(mngr.directory, step)
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iter is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
  try:
    state = mngr.restore(step, args=ocp.args.Composite(**items))["state"]
  except Exception as e:  # noqa: BLE001 - Orbax/TensorStore report damage in many types
    _check_names(mngr, step, abstract_state)
    raise CheckpointDamaged(f"{where}: cannot be restored into this model's state "
                            f"({_brief(e)})") from e
  verify(state, meta.get("checksums"), where)
  return state


def _check_names(mngr: ocp.CheckpointManager, step: int, abstract_state: Any) -> None:
  """Raises StateTreeMismatch when the saved state's (readable) tree names differ from ``abstract_state``'s."""
  where = fileio.path(mngr.directory) / str(step)
  try:
    saved = ocp.StandardCheckpointer().metadata(where / "state").item_metadata
  except Exception:  # noqa: BLE001 - unreadable metadata: damage, reported by the caller
    return
  have = {_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(saved)[0]}
  want = {_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
  if have and have != want:
    workdir = fileio.path(mngr.directory).parent
    raise StateTreeMismatch(
        f"{where} holds a state with other parameter names than this model's (unexpected "
        f"{sorted(have - want)[:3]}, missing {sorted(want - have)[:3]}): written by an older arsr_jax? "
        f"Convert the workdir once with `python -m arsr_jax.upgrade {workdir}` (nothing was changed here).")


def _restore_as_saved(mngr: ocp.CheckpointManager, step: int) -> Any:
  """The state item at ``step`` in the tree it was saved with, on this process's first device
  (whatever topology wrote it); raises what Orbax/TensorStore raise."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  tree = ocp.StandardCheckpointer().metadata(fileio.path(mngr.directory) / str(step) / "state").item_metadata
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
  return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]


def _newest_intact(directory: epath.Path, restore: Callable[[int], Any], *, strict: bool,
                   strict_note: str = "") -> tuple[int, Any, list[int]]:
  """(step, ``restore(step)``, damaged newer steps) for the newest step that ``restore`` reads back
  without CheckpointDamaged. A damaged one is logged with its path and skipped, or re-raised with
  ``strict`` (``strict_note`` appended); none intact raises, listing each one's problem."""
  found = steps(directory)
  if not found:
    raise FileNotFoundError(f"No checkpoint in {directory}")
  damaged, problems = [], []
  for step in reversed(found):
    try:
      result = restore(step)
    except CheckpointDamaged as e:
      if strict:
        if strict_note:
          raise CheckpointDamaged(f"Damaged checkpoint {e} ({strict_note})") from e
        raise
      logging.warning("Damaged checkpoint %s; trying the previous one", e)
      damaged.append(step)
      problems.append(str(e))
      continue
    if damaged:
      logging.warning("Fell back to the intact checkpoint at step %d in %s (damaged: steps %s)",
                      step, directory, damaged)
    return step, result, damaged
  raise CheckpointDamaged(f"No intact, restorable checkpoint in {directory}:\n  " + "\n  ".join(problems))


def restore_latest(mngr: ocp.CheckpointManager, abstract_state: Any, data_iter: grain.DatasetIterator | None,
                   *, strict: bool = False) -> tuple[Any, list[int]]:
  """(state of the newest intact checkpoint, damaged newer steps); restores ``data_iter`` in place.

  The state gets the shardings of ``abstract_state``. A damaged checkpoint is logged with its
  path and skipped, or raises with ``strict``; none intact raises, listing each one's problem.
  An intact checkpoint of another state tree (another parameter layout) raises StateTreeMismatch.
  """
  step, state, damaged = _newest_intact(
      fileio.path(mngr.directory), lambda s: _restore_step(mngr, s, abstract_state, data_iter), strict=strict,
      strict_note="train.strict_restore=True: no fallback")
  logging.info("Restored checkpoint step %d from %s", step, mngr.directory)
  return state, damaged


def set_aside(mngr: ocp.CheckpointManager, workdir: fileio.PathLike, damaged: list[int]) -> None:
  """Moves damaged step directories to ``workdir/damaged_checkpoints`` (new saves reuse their steps)."""
  if jax.process_index() == 0:
    target = fileio.path(workdir) / "damaged_checkpoints"
    target.mkdir(parents=True, exist_ok=True)
    for step in damaged:
      src, dst = fileio.path(mngr.directory) / str(step), target / str(step)
      n = 1
      while dst.exists():
        dst, n = target / f"{step}.{n}", n + 1
      src.rename(dst)
      logging.warning("Moved the damaged checkpoint %s to %s", src, dst)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("arsr_jax.checkpointing.set_aside")
  mngr.reload()


def abstract(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """ShapeDtypeStructs of ``tree`` (e.g. from jax.eval_shape) carrying ``sharding``."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def load_latest_state(workdir: fileio.PathLike, *, strict: bool = False) -> tuple[int, Any]:
  """(step, state as a nested dict of arrays) of the newest intact checkpoint in ``workdir``.

  For inspection and frozen use; training restores through ``restore_latest``. Damaged
  checkpoints are skipped with a warning naming them (an error with ``strict``). Arrays land on
  this process's first device, whatever topology wrote them (a TPU pod's run restores on a laptop).
  """
  directory = fileio.path(workdir) / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(f"No checkpoints directory in {workdir}")
  with ocp.CheckpointManager(directory, item_names=ITEMS,
                             options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
    def restore(step: int) -> Any:
      meta = read_meta(directory, step)
      try:
        state = _restore_as_saved(mngr, step)
      except Exception as e:  # noqa: BLE001 - Orbax/TensorStore report damage in many types
        raise CheckpointDamaged(f"{directory / str(step)}: cannot be restored ({_brief(e)})") from e
      verify(state, meta.get("checksums"), directory / str(step))
      return state
    step, state, _ = _newest_intact(directory, restore, strict=strict)
  return step, state
