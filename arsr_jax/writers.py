"""Run outputs without TensorFlow: TensorBoard event files, progress lines and progress bars.

Only process 0 writes. Images are uint8 (N, H, W, 3) or float in [0, 1].
A remote ``logdir`` (gs://...) is written through a local staging folder and is live: every
``REMOTE_SYNC_SECS`` (a background thread), on every ``flush`` (each evaluation) and on close, the
current event file is closed, uploaded once (``arsr_jax.fileio``) and removed locally; the next value
starts a new event file. GCS objects are immutable, so appending means re-uploading: rolling over
to a new file per sync uploads each byte once (re-uploading a growing file every minute would cost
O(run length^2) bytes, as tensorboardX's own gs:// writer does on every flush), and TensorBoard
reads every event file of a directory in name (= time) order. A failed upload is retried at the
next sync (the file stays staged) and raised on close.
"""

from __future__ import annotations

import contextlib
import logging as pylogging
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Iterable, Mapping, Sequence, TextIO

import jax
import numpy as np
from absl import logging
from tensorboardX import SummaryWriter

from arsr_jax import fileio


REMOTE_SYNC_SECS = 60.0  # a remote logdir gets new events at least this often (and at each flush)


class EventWriter:
  """TensorBoard scalars and images (tensorboardX backend); a no-op off process 0."""

  def __init__(self, logdir: fileio.PathLike):
    self._writer, self._remote, self._staging = None, None, None
    if jax.process_index() == 0:
      if fileio.is_local(logdir):
        self._writer = SummaryWriter(logdir=os.fspath(logdir), flush_secs=30)
      else:
        self._remote, self._staging = fileio.path(logdir), tempfile.mkdtemp(prefix="arsr_tb_")
        self._lock, self._upload_lock, self._files = threading.Lock(), threading.Lock(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sync_every, args=(REMOTE_SYNC_SECS,), daemon=True,
                                        name="tensorboard-sync")
        self._thread.start()

  def _active(self) -> SummaryWriter | None:
    """The writer to add to (the caller holds the lock); a remote logdir opens a new file lazily."""
    if self._writer is None and self._remote is not None and not self._stop.is_set():
      self._files += 1  # the suffix keeps files of one second apart; names sort by time, then by it
      self._writer = SummaryWriter(logdir=self._staging, flush_secs=30, filename_suffix=f".{self._files:06d}")
    return self._writer

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    with self._locked():
      if writer := self._active():
        for k, v in values.items():
          writer.add_scalar(k, float(v), global_step=step)

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    with self._locked():
      if writer := self._active():
        for k, v in images.items():
          v = np.asarray(v)
          if v.dtype != np.uint8:
            v = np.round(np.clip(v, 0.0, 1.0) * 255).astype(np.uint8)
          writer.add_images(k, v, global_step=step, dataformats="NHWC")

  def flush(self) -> None:
    if self._remote is not None:
      self._sync()
    elif self._writer:
      self._writer.flush()

  def close(self) -> None:
    if self._remote is not None:
      self._stop.set()
      self._thread.join()
      self._sync()
      shutil.rmtree(self._staging, ignore_errors=True)
      self._remote = None
    elif self._writer:
      self._writer.close()
      self._writer = None

  def _locked(self):
    return self._lock if self._remote is not None else contextlib.nullcontext()

  def _sync_every(self, seconds: float) -> None:
    while not self._stop.wait(seconds):
      try:
        self._sync()
      except Exception as e:  # noqa: BLE001  (the files stay staged; close() raises)
        logging.warning("TensorBoard upload to %s failed (retried at the next sync): %s", self._remote, e)

  def _sync(self) -> None:
    """Closes the current event file and uploads every closed one not yet uploaded, oldest first."""
    with self._lock:
      if self._writer is not None:
        self._writer.close()
        self._writer = None
      names = sorted(os.listdir(self._staging))  # all closed: a new file opens only under the lock
    with self._upload_lock:
      for name in names:
        local = os.path.join(self._staging, name)
        if os.path.exists(local):  # another sync may have uploaded it meanwhile
          with open(local, "rb") as f:  # written once, directly: a GCS object appears only when
            (self._remote / name).write_bytes(f.read())  # complete; a temporary name would be read too
          os.remove(local)


class QuietLibraries(pylogging.Filter):
  """Keeps only warnings and errors from chatty libraries (Orbax logs every file it writes), and
  drops those that say nothing to a user: Orbax's read-only warnings on every frozen restore,
  TFDS's 'Variant folder ... has no dataset_info.json' before generating a dataset, and JAX's 'Unable to initialize
  backend ...' for accelerators the machine does not have."""
  NOISY = ("/orbax/", "/tensorflow_datasets/", "/grain/", "/etils/", "/jax/_src/xla_bridge.py")
  DROP = (("/orbax/", "read only"), ("/orbax/", "read_only"), ("/orbax/", "Metadata file does not exist"),
          ("/tensorflow_datasets/", "Variant folder %s has no %s"))

  def filter(self, record: pylogging.LogRecord) -> bool:
    if any(p in record.pathname and m in str(record.msg) for p, m in self.DROP):
      return False
    return record.levelno >= pylogging.WARNING or not any(s in record.pathname for s in self.NOISY)


def quiet_libraries() -> None:
  """Installs ``QuietLibraries`` on absl's log handler (once); every CLI calls it first."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, QuietLibraries) for f in handler.filters):
    handler.addFilter(QuietLibraries())


class Progress:
  """Logs 'step N/M | metrics | X steps/s | ETA' lines; a line for a run's first step reports
  its time instead (compilation included), so a run is never silent until its first log_every."""

  def __init__(self, total_steps: int, first_step: int):
    self.total = total_steps
    self._t0, self._s0 = time.perf_counter(), first_step
    self._first = True

  def exclude(self, seconds: float) -> None:
    """Keeps ``seconds`` spent on something else (a validation) out of the next line's steps/s."""
    self._t0 += seconds

  def line(self, step: int, values: Mapping[str, float]) -> str:
    now = time.perf_counter()
    rate = (step - self._s0) / max(now - self._t0, 1e-9)
    first, seconds = self._first and step - self._s0 == 1, now - self._t0
    self._t0, self._s0, self._first = now, step, False
    parts = " ".join(f"{k}={v:.4g}" for k, v in values.items())
    if first:
      msg = f"step {step}/{self.total} | {parts} | first step {seconds:.1f} s (compilation included)"
    else:
      eta = (self.total - step) / rate if rate > 0 else float("inf")
      msg = f"step {step}/{self.total} | {parts} | {rate:.2f} steps/s | ETA {_fmt(eta)}"
    logging.info("%s", msg)
    return msg


class ProgressBar:
  """'DESC  120/300 frames [#####-----] 40% | 12.3 frames/s | ETA 0:00:14' on stderr.

  Drawn when created (work may start with a long compilation), then redrawn in place (at most
  every ``min_interval`` s) on a terminal, one line every ``line_interval`` s otherwise (logs,
  CI). The rate counts from the first ``update``, so a first call that includes compilation does
  not distort the ETA. ``total`` 0 or None = unknown (no bar, no ETA); an estimated total is
  corrected by the count.
  """

  def __init__(self, total: int | None, desc: str = "", unit: str = "frames", stream: TextIO | None = None,
               min_interval: float = 0.2, line_interval: float = 10.0, width: int = 20):
    self.total, self.desc, self.unit, self.count = int(total or 0), desc, unit, 0
    self._stream = stream if stream is not None else sys.stderr
    self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
    self._interval = min_interval if self._tty else line_interval
    self._width, self._last_draw, self._drawn = width, 0.0, (-1, -1)
    self._t_start = time.perf_counter()
    self._t_first, self._n_first = None, 0
    self._draw(self._t_start)

  def update(self, n: int = 1) -> None:
    self.count += n
    self.total = max(self.total, self.count) if self.total else 0
    now = time.perf_counter()
    if self._t_first is None:
      self._t_first, self._n_first = now, self.count
      self._draw(now)
    elif now - self._last_draw >= self._interval:
      self._draw(now)

  def rate(self, now: float | None = None) -> float:
    """Units per second since the first update (0 before it; over the whole run for a run that
    ends within a second of its first update, e.g. one batch)."""
    now = time.perf_counter() if now is None else now
    if self._t_first is None:
      return 0.0
    if now - self._t_first < 1.0:
      return self.count / max(now - self._t_start, 1e-9) if self.count > self._n_first else 0.0
    return (self.count - self._n_first) / (now - self._t_first)

  def text(self, now: float | None = None) -> str:
    now = time.perf_counter() if now is None else now
    rate = self.rate(now)
    parts = [f"{self.desc}  {self.count}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
    if self.total:
      done = int(self._width * self.count / self.total)
      parts[0] += f" [{'#' * done}{'-' * (self._width - done)}] {100 * self.count // self.total:3d}%"
    parts.append(f"{rate:.2f} {self.unit}/s" if rate else "starting")
    if self.total and rate:
      parts.append(f"ETA {_fmt((self.total - self.count) / rate)}")
    parts.append(f"elapsed {_fmt(now - self._t_start)}")
    return " | ".join(parts)

  def close(self) -> None:
    """Draws the final state (the total becomes the final count) and ends the line; in a log, only
    if the last line did not already show it."""
    if not self._tty and self._drawn == (self.count, self.count):
      return
    self.total = self.count
    self._draw(time.perf_counter(), final=True)

  def _draw(self, now: float, final: bool = False) -> None:
    self._last_draw, self._drawn = now, (self.count, self.total)
    if self._tty:
      self._stream.write("\r\033[K" + self.text(now) + ("\n" if final else ""))
    else:
      self._stream.write(self.text(now) + "\n")
    self._stream.flush()


def _fmt(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}:{m:02d}:{s:02d}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
  """A markdown table: ``header`` cells, then one line per row (cells as ``str`` gives them)."""
  line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"  # noqa: E731
  return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])
