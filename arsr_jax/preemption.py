"""Clean stops on SIGTERM / SIGINT, agreed by every process without a host sync per step.

A preempted cluster job gets SIGTERM in one or more of its processes; every process must stop
after the same step and write the same checkpoint. ``StopSignals.poll()`` (once per step) agrees
through the devices: each process puts its flag on its local devices, an asynchronous all-reduce
(max) combines them, and the result is read ``lag`` steps later, when the loop already waits for
that step (``train.MAX_STEPS_IN_FLIGHT``), so the host never waits for the devices to learn it.
Every process reads the same reduced value at the same step, so all stop at one step.

Orbax's ``multihost.reached_preemption`` would be the alternative: it relies on the coordination
service's preemption notifier, which watches only SIGTERM and is off in a single process; this
covers SIGINT (Ctrl-C) and any process count alike.
"""

from __future__ import annotations

import collections
import os
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from arsr_jax import sharding


class StopSignals:
  """Within ``with``: SIGTERM/SIGINT set ``self.name`` instead of killing the run (main thread only).

  A second signal of the same kind acts as the previous handler would (e.g. Ctrl-C twice). The
  previous handlers are restored on exit. ``poll()`` and ``requested()`` agree across processes.
  """
  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, mesh: jax.sharding.Mesh | None = None, lag: int = 2):
    self.name, self._previous = None, {}
    self.lag, self._mesh, self._pending = lag, mesh, collections.deque()
    if mesh is not None and jax.process_count() > 1:
      self._reduce = jax.jit(jnp.max, out_shardings=sharding.replicated(mesh))

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    if self.name == name:  # asked twice: stop now, as without this handler
      previous = self._previous[signum]
      signal.signal(signum, previous)
      if callable(previous):
        previous(signum, frame)
      else:
        os.kill(os.getpid(), signum)
      return
    logging.warning("%s received: finishing this step and writing a checkpoint (send it again to stop now)",
                    name)
    self.name = name

  def _code(self) -> int:
    return self.SIGNALS.index(signal.Signals[self.name]) + 1 if self.name else 0

  def _name(self, code: int) -> str | None:
    return self.SIGNALS[code - 1].name if code else None

  def poll(self) -> str | None:
    """Call once per step in every process: the signal that asked to stop, in every process at the
    same call, ``lag`` calls after the one that saw it (at once with one process). Never blocks on
    a step that is not ``lag`` steps old."""
    if jax.process_count() == 1:
      return self.name
    flags = np.full((len(self._mesh.local_devices),), self._code(), np.int32)
    self._pending.append(self._reduce(
        jax.make_array_from_process_local_data(sharding.batch_sharded(self._mesh), flags)))
    if len(self._pending) <= self.lag:
      return None
    return self._name(int(np.asarray(self._pending.popleft().addressable_data(0))))

  def requested(self) -> str | None:
    """The signal that asked to stop, in every process when any one received it (a blocking collective)."""
    if jax.process_count() == 1:
      return self.name
    return self._name(int(np.max(multihost_utils.process_allgather(np.int32(self._code())))))
