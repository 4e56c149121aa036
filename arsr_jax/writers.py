"""Run outputs without TensorFlow: TensorBoard event files and progress lines.

Only process 0 writes. Images are uint8 (N, H, W, 3) or float in [0, 1].
A remote ``logdir`` (gs://...) is written through a local staging folder whose
files are copied there (``arsr_jax.io``) on every flush and on close.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Mapping

import jax
import numpy as np
from absl import logging
from tensorboardX import SummaryWriter

from arsr_jax import io


class EventWriter:
  """TensorBoard scalars and images (tensorboardX backend); a no-op off process 0."""

  def __init__(self, logdir: io.PathLike):
    self._writer, self._remote, self._staging = None, None, None
    if jax.process_index() == 0:
      local = os.fspath(logdir)
      if not io.is_local(logdir):
        self._remote = io.path(logdir)
        self._staging = local = tempfile.mkdtemp(prefix="arsr_tb_")
      self._writer = SummaryWriter(logdir=local, flush_secs=30)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if self._writer:
      for k, v in values.items():
        self._writer.add_scalar(k, float(v), global_step=step)

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    if self._writer:
      for k, v in images.items():
        v = np.asarray(v)
        if v.dtype != np.uint8:
          v = np.round(np.clip(v, 0.0, 1.0) * 255).astype(np.uint8)
        self._writer.add_images(k, v, global_step=step, dataformats="NHWC")

  def flush(self) -> None:
    if self._writer:
      self._writer.flush()
      self._sync()

  def close(self) -> None:
    if self._writer:
      self._writer.close()
      self._writer = None
      self._sync()
      if self._staging:
        shutil.rmtree(self._staging, ignore_errors=True)

  def _sync(self) -> None:
    """Copies the staged event files to the remote logdir (whole files; they only grow)."""
    if self._remote is None:
      return
    for name in os.listdir(self._staging):
      with open(os.path.join(self._staging, name), "rb") as f:
        io.write_bytes(self._remote / name, f.read())


class Progress:
  """Logs 'step N/M | metrics | X steps/s | ETA' lines."""

  def __init__(self, total_steps: int, first_step: int):
    self.total = total_steps
    self._t0, self._s0 = time.perf_counter(), first_step

  def line(self, step: int, values: Mapping[str, float]) -> str:
    now = time.perf_counter()
    rate = (step - self._s0) / max(now - self._t0, 1e-9)
    self._t0, self._s0 = now, step
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    parts = " ".join(f"{k}={v:.4g}" for k, v in values.items())
    msg = f"step {step}/{self.total} | {parts} | {rate:.2f} steps/s | ETA {_fmt(eta)}"
    logging.info("%s", msg)
    return msg


def _fmt(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}:{m:02d}:{s:02d}"
