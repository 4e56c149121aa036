"""Checkpoint saves that fail: ``SaveFailed`` (one line), the failed save's temporary directory
removed, Orbax's tracebacks for it held back (``checkpointing.save/check_saves/wait`` use these).

A full disk (ENOSPC, EDQUOT) is named as such, with the free space and what a checkpoint needs.
"""

from __future__ import annotations

import errno
import logging as pylogging
import os
import shutil
import time

from etils import epath

from arsr_jax import fileio


class SaveFailed(OSError):
  """A checkpoint could not be written (e.g. no space left); its temporary directory was removed."""


class HoldOrbaxErrors(pylogging.Filter):
  """Holds Orbax's ERROR records while a save is pending (a failed save logs several tracebacks from
  its threads before the error reaches the loop); dropped when the failure becomes SaveFailed,
  logged as they were when the save turns out to have succeeded."""

  def __init__(self):
    super().__init__()
    self.pending, self.held = False, []

  def filter(self, record: pylogging.LogRecord) -> bool:
    if self.pending and record.levelno >= pylogging.ERROR and "orbax" in record.pathname:
      self.held.append(record)
      return False
    return True

  def release(self) -> None:
    held, self.held, self.pending = self.held, [], False
    for record in held:
      pylogging.getLogger(record.name).handle(record)

  def drop(self) -> None:
    self.held, self.pending = [], False


HELD_ORBAX_ERRORS = HoldOrbaxErrors()
pylogging.getLogger("absl").addFilter(HELD_ORBAX_ERRORS)


def _is_disk_full(e: BaseException) -> bool:
  while e is not None:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def _size(n: int) -> str:
  return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def remove_temporary(directory: epath.Path, step: int, settle_s: float = 0.5, limit_s: float = 10.0) -> None:
  """Removes the failed save's temporary directory. Writes of the save that were still in flight
  when its first error surfaced may recreate parts of it: removed until none reappears for ``settle_s``."""
  deadline, quiet_since = time.monotonic() + limit_s, None
  while time.monotonic() < deadline:
    found = list(directory.glob(f"{step}.orbax-checkpoint-tmp*"))
    for tmp in found:
      shutil.rmtree(tmp, ignore_errors=True) if fileio.is_local(tmp) else tmp.rmtree(missing_ok=True)
    now = time.monotonic()
    quiet_since = (quiet_since or now) if not found else None
    if quiet_since is not None and now - quiet_since >= settle_s:
      return
    time.sleep(0.05)


def describe(e: Exception, directory: epath.Path, step: int | None, nbytes: int, earlier: list[int]) -> SaveFailed:
  """The one-line SaveFailed for the save of ``step`` in ``directory`` that raised ``e``; ``nbytes``:
  the state's size, ``earlier``: the checkpoint steps still there."""
  where = directory / str(step) if step is not None else directory
  kept = (f"the last good checkpoint (step {earlier[-1]}) is intact" if earlier else "no earlier checkpoint")
  if _is_disk_full(e):
    free = ""
    if fileio.is_local(directory):
      free = f"{_size(shutil.disk_usage(directory).free)} free there, "
      if earlier:  # what the last checkpoint takes on this file system (blocks), if more than the arrays
        nbytes = max(nbytes, sum(os.stat(os.path.join(d, f)).st_blocks * 512
                                 for d, _, files in os.walk(directory / str(earlier[-1])) for f in files))
    return SaveFailed(f"cannot write the checkpoint {where}: no space left on the device "
                      f"({free}a checkpoint needs about {_size(nbytes)}); {kept}. Free space "
                      "and rerun the same command to resume")
  text = " ".join(str(e).split())
  return SaveFailed(f"cannot write the checkpoint {where}: {type(e).__name__}: {text[:300]}"
                    f"{' ...' if len(text) > 300 else ''}; {kept}. Rerun the same command to resume")
