"""One run per workdir: ``with hold(workdir):`` holds an exclusive lock on it for the run.

A second run on the same workdir is refused with ``WorkdirInUse`` naming the holder ("workdir W is
in use by pid N on host H (started T); ..."); ``python -m arsr_jax.main`` prints it as one line and
exits with status 2. The lock is ``LOCK_NAME`` in the workdir; it is removed on release.

Local workdirs: ``fcntl.flock`` on that file. The kernel releases it when the holder dies (``kill -9``
included), so a local lock is never stale; a file left behind by a killed run is taken over with a
warning naming that run. The file holds the holder's pid, host and start time for the message.
Caveats: on NFS, Linux emulates flock with POSIX byte-range locks (NFSv3 needs lockd, NFSv4 has
them built in); Cloud Storage FUSE (gcsfuse) keeps locks on one machine only: give such a workdir
as its gs:// URL instead, which takes the gs:// lock.

gs:// workdirs: an object created with the precondition ``ifGenerationMatch=0`` (exactly one
creator succeeds). The holder rewrites it every ``HEARTBEAT_S`` (conditional on its generation). A
lock is stale when its holder ran on this machine in this boot and its pid is gone, or when its
heartbeat is older than ``STALE_S``; a stale lock is taken over by a rewrite conditional on the
generation that was read (one taker wins). Other URL schemes are not locked (a warning says so).

Multi-process runs (jax.distributed): process 0 takes the lock and tells the others the outcome, so
a refused run stops in every process.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import threading
import time
import urllib.parse
from typing import Any, Iterator

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from arsr_jax import fileio

LOCK_NAME = "run.lock"
HEARTBEAT_S = 30.0  # gs:// holders rewrite the lock object this often
STALE_S = 300.0  # a gs:// lock without a heartbeat for this long belongs to a dead run


class WorkdirInUse(RuntimeError):
  """Another live run holds the workdir's lock."""


def _holder() -> dict[str, Any]:
  return {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
          "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
          "heartbeat": time.time()}


def _boot_id() -> str:
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip()
  except OSError:
    return ""


def _in_use(workdir, holder: dict[str, Any] | None) -> WorkdirInUse:
  who = (f"pid {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')})"
         if holder else "another process")
  return WorkdirInUse(f"workdir {workdir} is in use by {who}; wait for it or use another --workdir")


def _parse(data: bytes) -> dict[str, Any] | None:
  try:
    holder = json.loads(data)
  except ValueError:
    return None
  return holder if isinstance(holder, dict) else None


class _LocalLock:
  """flock on ``workdir/LOCK_NAME``; the file is unlinked while still locked on release."""

  def __init__(self, workdir):
    self.workdir = fileio.path(workdir)
    self.path = os.fspath(self.workdir / LOCK_NAME)
    self.created_workdir = not self.workdir.exists()
    self.workdir.mkdir(parents=True, exist_ok=True)
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _parse(os.pread(fd, 4096, 0))
        os.close(fd)
        raise _in_use(self.workdir, holder) from None
      try:  # the file we locked must still be the one at the path (a releasing holder unlinks it)
        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    self.fd = fd
    previous = _parse(os.pread(fd, 4096, 0))
    if previous:
      logging.warning("Taking over the lock of %s: that run (pid %s on host %s, started %s) is no longer "
                      "running", self.path, previous.get("pid"), previous.get("host"), previous.get("started"))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_holder()).encode(), 0)
    os.fsync(fd)

  def release(self) -> None:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(self.path)
    os.close(self.fd)
    if self.created_workdir:  # a run refused before it wrote anything leaves no empty workdir
      with contextlib.suppress(OSError):
        os.rmdir(self.workdir)


class _GcsLock:
  """A lock object on gs:// with generation preconditions and a heartbeat thread."""

  def __init__(self, workdir):
    import fsspec  # pylint: disable=import-outside-toplevel  # gcsfs: the `gcs` extra, as for any gs:// workdir
    self.workdir = fileio.path(workdir)
    self.fs = fsspec.filesystem("gs")
    self.bucket, _, prefix = os.fspath(self.workdir).removeprefix("gs://").partition("/")
    self.key = f"{prefix.rstrip('/')}/{LOCK_NAME}" if prefix else LOCK_NAME
    self.holder = _holder()
    try:
      self.generation = self._write(0)
    except FileExistsError:
      meta, holder = self._read()
      if meta is None:  # released meanwhile
        self.generation = self._write(0)
      elif self._stale(holder):
        logging.warning("Taking over the stale lock gs://%s/%s of %s", self.bucket, self.key,
                        f"pid {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')})"
                        if holder else "an unknown run")
        try:
          self.generation = self._write(meta["generation"])
        except FileExistsError:  # another run took it over first
          raise _in_use(self.workdir, self._read()[1]) from None
      else:
        raise _in_use(self.workdir, holder) from None
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._heartbeat, name="workdir-lock-heartbeat", daemon=True)
    self._thread.start()

  def _write(self, if_generation_match) -> str:
    """Uploads the holder record if the object's generation is ``if_generation_match`` (0: absent);
    returns the new generation; FileExistsError (HTTP 412) when the precondition fails. A multipart
    upload, as gcsfs's own create-only write (GCS honours the precondition on every upload type)."""
    meta = json.dumps({"name": self.key, "contentType": "application/json"})
    body = (f"--==0==\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--==0==\r\n"
            "Content-Type: application/json\r\n\r\n").encode() + json.dumps(self.holder).encode() + b"\r\n--==0==--\r\n"
    out = self.fs.call("POST", f"{self.fs._location}/upload/storage/v1/b/{urllib.parse.quote(self.bucket)}/o",
                       uploadType="multipart", ifGenerationMatch=str(if_generation_match), data=body,
                       headers={"Content-Type": 'multipart/related; boundary="==0=="'}, json_out=True)
    return out["generation"]

  def _read(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(object metadata, holder record) of the lock, (None, None) when there is none."""
    try:
      meta = self.fs.call("GET", "b/{}/o/{}", self.bucket, self.key, json_out=True)
      _, body = self.fs.call("GET", "b/{}/o/{}", self.bucket, self.key, alt="media",
                             generation=meta["generation"])
    except FileNotFoundError:
      return None, None
    return meta, _parse(body)

  def _stale(self, holder: dict[str, Any] | None) -> bool:
    if holder is None:
      return False
    if holder.get("host") == socket.gethostname() and holder.get("boot_id") == _boot_id() and holder.get("pid"):
      try:
        os.kill(int(holder["pid"]), 0)
      except ProcessLookupError:
        return True
      except PermissionError:
        pass
    return time.time() - float(holder.get("heartbeat", 0)) > STALE_S

  def _heartbeat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      self.holder["heartbeat"] = time.time()
      try:
        self.generation = self._write(self.generation)
      except FileExistsError:
        logging.error("The lock gs://%s/%s was taken over by another run (no heartbeat for %.0f s); stop "
                      "this run: two runs now write to %s", self.bucket, self.key, STALE_S, self.workdir)
        return
      except Exception as e:  # noqa: BLE001 - a network hiccup: retried at the next beat
        logging.warning("Could not refresh the lock gs://%s/%s: %s", self.bucket, self.key, e)

  def release(self) -> None:
    self._stop.set()
    self._thread.join()
    with contextlib.suppress(FileNotFoundError, FileExistsError):
      self.fs.call("DELETE", "b/{}/o/{}", self.bucket, self.key, ifGenerationMatch=str(self.generation))


def acquire(workdir: fileio.PathLike):
  """Takes the lock of ``workdir`` in this process; an object with ``release()``, or None where
  the storage has no lock (a warning). Raises WorkdirInUse."""
  s = os.fspath(workdir)
  if fileio.is_local(s):
    return _LocalLock(s.removeprefix("file://"))
  if s.startswith("gs://"):
    return _GcsLock(s)
  logging.warning("%s: no lock on this storage; make sure no other run uses this workdir", s)
  return None


@contextlib.contextmanager
def hold(workdir: fileio.PathLike) -> Iterator[None]:
  """Holds ``workdir``'s lock within ``with`` (process 0 of a multi-process run)."""
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = acquire(workdir)
    except WorkdirInUse as e:
      error = e
  if jax.process_count() > 1:
    ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not ok and error is None:
      error = WorkdirInUse(f"workdir {workdir} is in use (process 0 could not lock it); wait for the other "
                           "run or use another --workdir")
  if error is not None:
    raise error
  try:
    yield
  finally:
    if lock is not None:
      lock.release()
