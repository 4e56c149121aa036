"""Validation during training: the job's evaluator every ``eval.every_steps`` steps.

As big_vision's and the flax examples' ``eval_every_steps``: at every multiple N of
``eval.every_steps`` below ``train.num_steps`` the loop hands the current network to the job's
evaluator (the final evaluation's split, ``data.eval_split``, and its cap ``eval.max_clips``),
which logs ``eval/*`` TensorBoard scalars (and SR sample images) at step N; the results go to
``workdir/eval/step_N.json``. Evaluations are kept across preemptions and resumes: a step whose
``eval/step_N.json`` exists is not evaluated again, and a run stopped by a signal at such a step
(which skips it, to stop quickly) evaluates it when it resumes. The final evaluation (after
``train.num_steps``) is the loop's own and also writes ``results.json``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from arsr_jax import fileio
from arsr_jax.writers import EventWriter


class PeriodicEval:
  """``due(step)``: whether step N is evaluated; ``run(variables, step)``: evaluates and writes it
  (returns the seconds it took, which the loop keeps out of its steps/s)."""

  def __init__(self, ecfg: ml_collections.ConfigDict, num_steps: int, workdir: fileio.PathLike, evaluator: Callable,
               mesh: jax.sharding.Mesh, writer: EventWriter | None):
    """``ecfg``: the config's eval section; ``num_steps``: train.num_steps (its final evaluation is the loop's)."""
    self.every, self.last = ecfg.get("every_steps", 0), num_steps
    self.folder = fileio.path(workdir) / "eval"
    self.evaluator, self.mesh, self.writer = evaluator, mesh, writer

  def due(self, step: int) -> bool:
    """Step is a positive multiple of eval.every_steps before the last, not evaluated yet (the same
    answer in every process: process 0's)."""
    if not self.every or step <= 0 or step % self.every or step >= self.last:
      return False
    done = (self.folder / f"step_{step}.json").exists()
    if jax.process_count() > 1:  # a rare host sync (at eval steps only)
      done = bool(multihost_utils.broadcast_one_to_all(np.int32(done)))
    return not done

  def run(self, variables: Any, step: int) -> float:
    t0 = time.perf_counter()
    results = self.evaluator(variables, self.mesh, step, self.writer)
    if jax.process_index() == 0:
      fileio.write_json(self.folder / f"step_{step}.json", results)
    if self.writer is not None:
      self.writer.flush()
    seconds = time.perf_counter() - t0
    logging.info("Evaluated step %d in %.1f s: %s", step, seconds, self.folder / f"step_{step}.json")
    return seconds
