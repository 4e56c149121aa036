"""One way to map a jitted function over a whole split, on every device of every process.

  items      this process's share of the split: each item a dict of host arrays
             with its 'index' (the video it came from; one video may give many items)
  batches    items stacked into per-process batches, padded with blank items
             (index -1); every process yields the same number of batches
  map        each batch becomes a global, batch-sharded array; ``fn`` runs jitted
             on the devices; outputs are gathered from every process, the
             padding is dropped and rows come back ordered by index (stable:
             the items of one video keep their order)

Keys named in ``ride_along`` (labels) travel through the jitted function
unchanged, so each video is read once. Batch b+1 is sampled on the host while
the devices run batch b. A progress bar (``writers.ProgressBar``: count, total,
rate, ETA) goes to stderr on process 0.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterable, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from arsr_jax import sharding, writers

INDEX = "index"


def local_indices(n: int) -> range:
  """The videos 0..n-1 that this process reads: p, p + P, p + 2P, ..."""
  return range(jax.process_index(), n, jax.process_count())


def num_batches(num_local_items: int, per_process: int) -> int:
  """Batches ``padded_batches`` makes of this process's items (the progress bar's total)."""
  return -(-num_local_items // per_process)


def stack_items(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([it[k] for it in items]) for k in items[0]}


def padded_batches(items: Iterable[dict[str, np.ndarray]], per_process: int, what: str = "split"
                   ) -> Iterator[dict[str, np.ndarray]]:
  """Stacks items (each with an int 'index') into batches of ``per_process``, padding the last.

  Processes may hold different numbers of items (clips differ in length): all
  of them pad with blank batches to the largest count, agreed by an all-gather.
  """
  buf: list[dict[str, np.ndarray]] = []
  produced, template = 0, None
  for item in items:
    template = template or item
    buf.append(item)
    if len(buf) == per_process:
      produced += 1
      yield stack_items(buf)
      buf = []
  if template is None:
    raise ValueError(f"The {what} has no item for process {jax.process_index()}")
  blank = {k: np.zeros_like(v) for k, v in template.items()}
  blank[INDEX] = np.int32(-1)
  if buf:
    produced += 1
    yield stack_items(buf + [blank] * (per_process - len(buf)))
  total = produced
  if jax.process_count() > 1:
    total = int(np.max(multihost_utils.process_allgather(np.int32(produced))))
  for _ in range(total - produced):
    yield stack_items([blank] * per_process)


def gather(out: Any) -> Any:
  """Global arrays -> host NumPy arrays of the whole batch (all processes' rows)."""
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(out, tiled=True)
  return jax.device_get(out)


def map_batches(fn: Callable[[dict[str, Any]], dict[str, Any]], batches: Iterable[dict[str, np.ndarray]],
                mesh: jax.sharding.Mesh, *, ride_along: tuple[str, ...] = (), total: int | None = None,
                what: str = "batches", desc: str = "evaluating") -> dict[str, np.ndarray]:
  """Runs jitted ``fn`` over padded batches (with 'index'); per-item outputs ordered by index.

  ``fn`` maps a dict of global arrays (B, ...) (without 'index' and the
  ``ride_along`` keys) to a dict of per-item outputs (B, ...). Returns those
  outputs, the ride-along keys and 'index' for every real item, in index order.
  ``total``: the number of batches (an estimate is fine) for the progress bar's ETA.
  """
  batched = sharding.batch_sharded(mesh)
  carried = (INDEX,) + tuple(ride_along)

  def with_carried(batch):
    out = fn({k: v for k, v in batch.items() if k not in carried})
    return dict(out, **{k: batch[k] for k in carried if k in batch})

  p_fn = jax.jit(with_carried, in_shardings=(batched,), out_shardings=batched)
  outputs: dict[str, list[np.ndarray]] = {}

  def collect(out) -> None:
    for k, v in gather(out).items():
      outputs.setdefault(k, []).append(np.asarray(v))

  pending = None
  with open(os.devnull, "w") if jax.process_index() else contextlib.nullcontext() as quiet:
    bar = writers.ProgressBar(total, desc=desc, unit=what, stream=quiet)  # None: stderr
    for batch in batches:
      out = p_fn(sharding.to_global(batch, mesh))  # dispatch is asynchronous
      if pending is not None:
        collect(pending)
        bar.update()
      pending = out
    if pending is None:
      raise ValueError(f"No {what} to evaluate")
    collect(pending)
    bar.update()
    bar.close()
  out = {k: np.concatenate(v) for k, v in outputs.items()}
  index = out[INDEX]
  keep = np.flatnonzero(index >= 0)
  order = keep[np.argsort(index[keep], kind="stable")]
  return {k: v[order] for k, v in out.items()}
