"""Input pipelines: TFDS array_record sources read with grain, no TensorFlow.

Datasets store clips as uint8 HR (T, H, W, 3), uint8 LR (T, H/s, W/s, 3) and
forward HR flow (T-1, H, W, 2) in pixels. The pipelines turn them into
batches of float32 frames in [0, 1]:

  train: {'lr': (B, p/s, p/s, 3), 'hr': (B, p, p, 3), 'flow': (B, p, p, 2)}
         random clip, random frame t < T-1, random aligned crop and flips;
  eval:  {'lr', 'hr', 'flow' as above at full frame size, 'valid': (B,) bool},
         every frame t < T-1 of every clip, in a fixed order, padded to a
         whole number of batches.

Both are deterministic functions of (seed, step): a restored grain iterator
continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

# Datasets that this package can generate on the fly (no manual download).
_GENERATED = ("synthetic_actions",)


def get_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The TFDS builder for ``name`` ('dataset/config'), prepared if we can generate it."""
  import tfds_builders  # noqa: F401  (registers the project's builders)
  if name.split("/")[0] == "synthetic_actions":
    import tfds_builders.synthetic_actions  # noqa: F401
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except Exception as e:  # TFDS raises several types for unknown names/configs.
    raise ValueError(f"Unknown dataset {name!r} (data_dir={data_dir}): {e}") from e
  if not builder.is_prepared():
    if name.split("/")[0] not in _GENERATED:
      raise FileNotFoundError(
          f"Dataset {name!r} is not prepared in {builder.data_dir}. Prepare it first, e.g. "
          f"`tfds build tfds_builders/{name.split('/')[0]} --file_format=array_record`.")
    logging.info("Generating %s into %s ...", name, builder.data_dir)
    builder.download_and_prepare(file_format="array_record")
  return builder


def get_source(name: str, split: str, data_dir: str | None):
  """A random-access source (``__len__``/``__getitem__``) over one split."""
  builder = get_builder(name, data_dir)
  if split not in builder.info.splits:
    raise ValueError(f"Dataset {name!r} has no split {split!r}; it has {list(builder.info.splits)}")
  return builder.as_data_source(split=split)


# ---------------------------------------------------------------------------
# Train pipeline.

@dataclasses.dataclass(frozen=True)
class SampleFramePatch(grain.transforms.RandomMap):
  """Clip example -> one aligned (LR, HR, flow) patch; float32 frames in [0, 1]."""
  scale: int
  patch_size: int  # HR patch side; 0 = whole frame
  flip: bool = True

  def random_map(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    hr, lr, flow = example["hr"], example["lr"], example["flow"]
    s = self.scale
    t = int(rng.integers(flow.shape[0]))
    h, w = hr.shape[1:3]
    p = self.patch_size or h
    if p % s or p > min(h, w) or (self.patch_size == 0 and h != w):
      raise ValueError(f"data.patch_size={self.patch_size} does not fit frames {h}x{w} at scale {s}")
    y = int(rng.integers((h - p) // s + 1)) * s
    x = int(rng.integers((w - p) // s + 1)) * s
    out = {
        "hr": hr[t, y:y + p, x:x + p],
        "lr": lr[t, y // s:(y + p) // s, x // s:(x + p) // s],
        "flow": flow[t, y:y + p, x:x + p].astype(np.float32),
    }
    if self.flip and rng.random() < 0.5:  # horizontal: u changes sign
      out = {k: v[:, ::-1] for k, v in out.items()}
      out["flow"] = out["flow"] * np.float32([-1, 1])
    if self.flip and rng.random() < 0.5:  # vertical: v changes sign
      out = {k: v[::-1] for k, v in out.items()}
      out["flow"] = out["flow"] * np.float32([1, -1])
    return {
        "hr": np.ascontiguousarray(out["hr"], np.float32) / 255.0,
        "lr": np.ascontiguousarray(out["lr"], np.float32) / 255.0,
        "flow": np.ascontiguousarray(out["flow"]),
    }


def train_iterator(config: ml_collections.ConfigDict, per_process_batch: int, seed: int
                   ) -> grain.DatasetIterator:
  """An endless, checkpointable iterator of this process's training batches."""
  d = config.data
  source = get_source(d.name, d.train_split, d.get("data_dir"))
  ds = grain.MapDataset.source(source).repeat(None).shuffle(seed=seed)
  ds = ds[jax.process_index()::jax.process_count()]
  ds = ds.random_map(SampleFramePatch(config.scale, d.patch_size, d.flip), seed=seed + 1)
  ds = ds.batch(per_process_batch, drop_remainder=True)
  threads = d.get("read_threads", 4)
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(threads, 2)))
  if d.get("worker_count", 0) > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=d.worker_count))
  return iter(it_ds)


# ---------------------------------------------------------------------------
# Eval pipeline.

def eval_batches(config: ml_collections.ConfigDict, per_process_batch: int,
                 max_clips: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every frame t < T-1 of every eval clip, this process's share, padded.

  Yields dicts of 'lr', 'hr', 'flow' (float32) and 'valid' (bool, False on
  padding). All processes yield the same number of batches.
  """
  d = config.data
  source = get_source(d.name, d.eval_split, d.get("data_dir"))
  n = len(source) if not max_clips else min(len(source), max_clips)
  ids = list(range(jax.process_index(), n, jax.process_count()))
  max_ids = -(-n // jax.process_count())
  frames_per_clip = None
  buf: list[dict[str, np.ndarray]] = []
  produced = 0
  for i in ids:
    ex = source[i]
    frames_per_clip = ex["flow"].shape[0]
    for t in range(frames_per_clip):
      buf.append({"hr": ex["hr"][t].astype(np.float32) / 255.0,
                  "lr": ex["lr"][t].astype(np.float32) / 255.0,
                  "flow": ex["flow"][t].astype(np.float32),
                  "valid": np.bool_(True)})
      if len(buf) == per_process_batch:
        produced += 1
        yield _stack(buf)
        buf = []
  if frames_per_clip is None:
    raise ValueError(f"Eval split {d.eval_split!r} of {d.name!r} is empty for process {jax.process_index()}")
  total = -(-(max_ids * frames_per_clip) // per_process_batch)
  blank = {"hr": np.zeros_like(ex["hr"][0], np.float32), "lr": np.zeros_like(ex["lr"][0], np.float32),
           "flow": np.zeros_like(ex["flow"][0], np.float32), "valid": np.bool_(False)}
  while produced < total:
    buf += [blank] * (per_process_batch - len(buf))
    produced += 1
    yield _stack(buf)
    buf = []


def _stack(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([it[k] for it in items]) for k in items[0]}
