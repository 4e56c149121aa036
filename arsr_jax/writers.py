"""Run outputs without TensorFlow: TensorBoard event files and progress lines.

Only process 0 writes. Images are uint8 (N, H, W, 3) or float in [0, 1].
"""

from __future__ import annotations

import time
from typing import Mapping

import jax
import numpy as np
from absl import logging


class EventWriter:
  """TensorBoard scalars and images (tensorboardX backend); a no-op off process 0."""

  def __init__(self, logdir: str):
    self._writer = None
    if jax.process_index() == 0:
      from tensorboardX import SummaryWriter
      self._writer = SummaryWriter(logdir=logdir, flush_secs=30)

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

  def close(self) -> None:
    if self._writer:
      self._writer.close()
      self._writer = None


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
