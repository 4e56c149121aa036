"""Input pipelines: TFDS array_record sources read with grain, no TensorFlow.

Datasets store clips as uint8 HR (T, H, W, 3), uint8 LR (T, H/s, W/s, 3) and
forward HR flow (T-1, H, W, 2) in pixels. The pipelines turn them into
batches whose frames stay uint8 (4x fewer bytes from host to device; the
steps convert them to float32 in [0, 1] on the device, ``steps.sr.as_float``)
and whose flow is in pixels, in the dataset's dtype (float16 for this project's
builders: half the bytes of float32, converted to float32 on the device too):

  train: {'lr', 'hr', 'flow'} batches of random aligned patches (random clip,
         frame(s), crop and flips), shaped by the sampler (see SamplePatch);
  eval:  items with the same keys at full frame size plus 'index' (the clip),
         every frame of every clip, in a fixed order (batched and padded by
         evaluation/batched.py).

Both are deterministic functions of (seed, step): a restored grain iterator
continues exactly where it stopped.

Damaged or missing data is a ``DataError`` naming the file and how to prepare it again:
``check_splits`` opens every shard of every split a run reads before any work (each file's index,
record count and first and last records; every record the evaluation reads), and a record that
fails to read later (damage inside a training shard) names its file too.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from typing import Any, Iterator

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

import tfds_builders
from arsr_jax import sharding
from arsr_jax.flow import tvl1

# Datasets that this package can generate on the fly (no manual download).
_GENERATED = ("synthetic_actions",)


class DataError(OSError):
  """A prepared dataset that cannot be read: a missing, truncated or damaged file (named)."""


class DataNotPrepared(DataError, FileNotFoundError):
  """The dataset has not been prepared in data_dir."""


def _prepare_hint(name: str, builder: tfds.core.DatasetBuilder) -> str:
  if name.split("/")[0] in _GENERATED:
    return f"delete {builder.data_dir} and run again (it is generated again)"
  parent = os.path.dirname(os.path.dirname(os.path.dirname(os.fspath(builder.data_dir))))
  return (f"delete {builder.data_dir} and prepare it again: `python -m tfds_builders.prepare --dataset {name} "
          f"--manual_dir DIR --data_dir {parent}`")


def get_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The TFDS builder for ``name`` ('dataset/config'), prepared if we can generate it.

  In a multi-process run, process 0 generates it while the others wait (data_dir must be shared).
  """
  tfds_builders.check_name(name)  # a misspelled config: one line, no empty folder left behind
  tfds_builders.load(name)  # imports (registers) the project's builder for ``name``
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except Exception as e:  # TFDS raises several types for unknown names/configs.
    raise ValueError(f"Unknown dataset {name!r} (data_dir={data_dir}): {e}") from e
  key = f"arsr_jax/prepared/{builder.data_dir}"
  if builder.is_prepared():
    sharding.mark_done(key)
    return builder
  if name.split("/")[0] not in _GENERATED:
    raise DataNotPrepared(
        f"Dataset {name!r} is not prepared in {builder.data_dir}. Prepare it first: "
        f"`python -m tfds_builders.prepare --dataset {name} --manual_dir DIR --data_dir {data_dir or '~/tensorflow_datasets'}` "
        "(see tfds_builders/README.md).")

  def generate():
    logging.info("Generating %s into %s ...", name, builder.data_dir)
    tfds_builders.progress_bars_on_terminal_only()
    builder.download_and_prepare(file_format="array_record")

  sharding.run_once(key, generate, f"generating {name} into {builder.data_dir}")
  if jax.process_index() > 0:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
      raise FileNotFoundError(f"Process 0 generated {name!r} into {builder.data_dir}, but process "
                              f"{jax.process_index()} does not see it there: data_dir must be shared by all processes")
  return builder


def get_source(name: str, split: str, data_dir: str | None):
  """A random-access source (``__len__``/``__getitem__``) over one split; a record that cannot be
  read raises DataError naming its file."""
  builder = get_builder(name, data_dir)
  if split not in builder.info.splits:
    raise ValueError(f"Dataset {name!r} has no split {split!r}; it has {list(builder.info.splits)}")
  return _NamedSource(builder.as_data_source(split=split), name, split, _shards(builder, split),
                      _prepare_hint(name, builder))


def _shards(builder: tfds.core.DatasetBuilder, split: str) -> list[tuple[str, int, int, int]]:
  """(file, first record read, records read, records in the file) of each shard of ``split``."""
  return [(f.filename, f.skip, f.take, f.examples_in_shard)
          for f in builder.info.splits[split].file_instructions]


@dataclasses.dataclass
class _NamedSource:
  """A TFDS data source whose read errors name the shard file (grain reads through it; picklable)."""
  source: Any
  name: str
  split: str
  shards: list[tuple[str, int, int, int]]
  hint: str

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Any:
    try:
      return self.source[index]
    except Exception as e:  # noqa: BLE001 - array_record/Riegeli raise RuntimeError, decoding others
      raise self._error(int(index), e) from e

  def __getitems__(self, indices) -> list[Any]:
    if not hasattr(self.source, "__getitems__"):
      return [self[i] for i in indices]
    try:
      return self.source.__getitems__(indices)
    except Exception as e:  # noqa: BLE001
      for index in indices:  # which record: read them one by one
        self[index]
      raise self._error(int(indices[0]), e) from e

  def _error(self, index: int, e: Exception) -> DataError:
    where, i = f"record {index}", index
    for filename, _, take, _ in self.shards:
      if 0 <= i < take:
        where = f"{filename} (record {index} of split {self.split!r})"
        break
      i -= take
    return DataError(f"Dataset {self.name!r}: cannot read {where}: {' '.join(str(e).split())[:300]}; {self.hint}")


def check_splits(config: ml_collections.ConfigDict) -> None:
  """Opens and checks every split the run reads (train unless mode=eval or task=protocol; eval);
  DataError names the first missing, truncated or damaged file. Reads each shard's index and its
  first and last records, and every record of the evaluated clips (eval.max_clips)."""
  d = config.data
  splits = [d.eval_split]
  if config.get("mode", "train") == "train" and config.get("task", "sr") != "protocol":
    splits.insert(0, d.train_split)
  builder = get_builder(d.name, d.get("data_dir"))
  for split in splits:
    if split not in builder.info.splits:
      raise ValueError(f"Dataset {d.name!r} has no split {split!r}; it has {list(builder.info.splits)}")
    remaining = None
    if split == d.eval_split and split not in splits[:-1]:
      remaining = config.eval.get("max_clips") or builder.info.splits[split].num_examples
    for filename, skip, take, count in _shards(builder, split):
      every = None if remaining is None else max(0, min(take, remaining))
      _check_shard(d.name, split, filename, skip, take, count, every, builder)
      if remaining is not None:
        remaining -= take


def _check_shard(name, split, filename, skip, take, count, every, builder) -> None:
  """Opens one array_record shard: its index, its record count, its first and last records (and the
  first ``every`` records read in full); DataError naming the file on any failure."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel

  def fail(problem: str) -> DataError:
    return DataError(f"Dataset {name!r} split {split!r}: {filename} {problem}; {_prepare_hint(name, builder)}")

  if not epath.Path(filename).exists():
    raise fail("is missing")
  try:
    reader = array_record_module.ArrayRecordReader(filename, "readahead_buffer_size:0,max_parallelism:0")
    try:
      if reader.num_records() != count:
        raise fail(f"has {reader.num_records()} records; the dataset's info says {count}")
      reader.read(sorted({skip, skip + take - 1}) if take else [])
      for start in range(skip, skip + (every or 0), 64):
        reader.read(list(range(start, min(start + 64, skip + every))))
    finally:
      reader.close()
  except DataError:
    raise
  except Exception as e:  # noqa: BLE001 - Riegeli reports damage as RuntimeError
    raise fail(f"is damaged ({' '.join(str(e).split())[:200]})") from e


# ---------------------------------------------------------------------------
# Samplers: what one training example is.
#
#   'frame': the LR input for one HR frame t (t < T-1, so flow[t] exists);
#   'pair':  frames t and t+1 (ToSR's siamese pair) and the flow t -> t+1;
#   'clip':  frames t .. t+L-1 (L = data.clip_length) and their L-1 flows.
# With data.input_frames = K > 1, each output frame's LR input is the window of
# K frames centred on it (clamped at the clip ends), as VSR-DUF consumes.
#
# Shapes (p = patch, s = scale), before batching:
#   frame: lr (p/s, p/s, 3) or (K, p/s, p/s, 3); hr (p, p, 3); flow (p, p, 2)
#   pair:  lr (2, [K,] p/s, p/s, 3);             hr (2, p, p, 3); flow (p, p, 2)
#   clip:  lr (L, [K,] p/s, p/s, 3);             hr (L, p, p, 3); flow (L, p, p, 2)

SAMPLERS = ("frame", "pair", "clip")
# Where flow comes from: stored in the dataset, or TV-L1 on the accelerator from
# the HR frame pairs (batch key 'flow_frames' (..., H, W, 6); see steps.with_flow).
FLOW_SOURCES = ("dataset", "tvl1")


def lr_window(num_frames: int, centres: np.ndarray, k: int) -> np.ndarray:
  """(len(centres), k) frame indices of the K-windows around ``centres``, clamped to the clip."""
  offsets = np.arange(k) - k // 2
  return np.clip(centres[:, None] + offsets[None], 0, num_frames - 1)


@dataclasses.dataclass(frozen=True)
class SamplePatch(grain.transforms.RandomMap):
  """Clip example -> one aligned (LR, HR, flow) training example; frames uint8, flow in px (stored dtype)."""
  scale: int
  patch_size: int  # HR patch side; 0 = whole (square) frame
  sampler: str = "frame"
  input_frames: int = 1
  clip_length: int = 1
  flip: bool = True
  flow_source: str = "dataset"  # 'tvl1': return 'flow_frames' (frame pairs) instead of 'flow'
  labels: bool = False  # also return the clip's 'label' (recognition-guided objectives)

  def random_map(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    hr, lr = example["hr"], example["lr"]
    s, num_frames = self.scale, hr.shape[0]
    span = {"frame": 1, "pair": 2, "clip": self.clip_length}[self.sampler]
    last_start = num_frames - span if self.sampler == "clip" else num_frames - 2
    if last_start < 0:
      raise ValueError(f"Clip {example.get('id', '?')} has {num_frames} frames; sampler "
                       f"{self.sampler!r} needs {max(span, 2)}")
    t = int(rng.integers(last_start + 1))
    h, w = hr.shape[1:3]
    if lr.shape[1:3] != (h // s, w // s):  # e.g. an 8x recipe (progressive stage 3) on 4x data
      raise ValueError(f"Clip {example.get('id', '?')}: LR {lr.shape[1]}x{lr.shape[2]} for HR {h}x{w} is not "
                       f"scale={s}; use a dataset prepared at {s}x (or set scale to the data's)")
    p = self.patch_size or h
    if p % s or p > min(h, w) or (self.patch_size == 0 and h != w):
      raise ValueError(f"data.patch_size={self.patch_size} does not fit frames {h}x{w} at scale {s}")
    y = int(rng.integers((h - p) // s + 1)) * s
    x = int(rng.integers((w - p) // s + 1)) * s
    centres = np.arange(t, t + span)
    windows = lr_window(num_frames, centres, self.input_frames)
    # One flow per frame, flow[min(t, T-2)] (as in eval); a pair keeps only flow t -> t+1.
    flows = np.minimum(centres, num_frames - 2)[:1 if self.sampler == "pair" else span]
    out = {
        "hr": hr[centres, y:y + p, x:x + p],
        "lr": lr[windows, y // s:(y + p) // s, x // s:(x + p) // s],  # (span, K, h, w, 3)
    }
    key = _flow_key(self.flow_source)
    out[key] = _flow_or_pairs(example, flows, self.flow_source)[:, y:y + p, x:x + p]
    if self.flip and rng.random() < 0.5:  # horizontal: u changes sign
      out = {k: v[..., :, ::-1, :] for k, v in out.items()}
      if key == "flow":
        out["flow"] = out["flow"] * np.asarray([-1, 1], out["flow"].dtype)
    if self.flip and rng.random() < 0.5:  # vertical: v changes sign
      out = {k: v[..., ::-1, :, :] for k, v in out.items()}
      if key == "flow":
        out["flow"] = out["flow"] * np.asarray([1, -1], out["flow"].dtype)
    if self.input_frames == 1:
      out["lr"] = out["lr"][:, 0]
    if self.sampler != "clip":
      out[key] = out[key][0]
    if self.sampler == "frame":
      out["hr"], out["lr"] = out["hr"][0], out["lr"][0]
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    if self.labels:
      out["label"] = (np.asarray(example["labels"], np.float32) if "labels" in example
                      else np.asarray(example["label"], np.int32))
    return out


def flow_fn(data: ml_collections.ConfigDict):
  """(frame0, frame1) -> flow for data.flow_source == 'tvl1' (TV-L1 with data.tvl1 parameters), else None.

  ``data``: the config's data section."""
  _flow_key(data.flow_source)
  if data.flow_source != "tvl1":
    return None
  params = tvl1.TVL1Params.from_config(data.tvl1)
  return lambda f0, f1: tvl1.tvl1_flow_sharded(f0, f1, params)  # in the batch-sharded step: per device


def _flow_key(flow_source: str) -> str:
  if flow_source not in FLOW_SOURCES:
    raise ValueError(f"Unknown data.flow_source {flow_source!r}; use one of {FLOW_SOURCES}")
  return "flow" if flow_source == "dataset" else "flow_frames"


def _flow_or_pairs(example: dict[str, Any], flows: np.ndarray, flow_source: str) -> np.ndarray:
  """(n, H, W, 2) stored flows, or for 'tvl1' the frame pairs (n, H, W, 6) to compute them from.

  A pair is frames a and a+1 concatenated on channels, so crops and flips treat it as an image.
  """
  if flow_source == "tvl1":
    hr = example["hr"]
    return np.concatenate([hr[flows], hr[flows + 1]], axis=-1)
  if "flow" not in example:
    raise ValueError(f"Example {example.get('id', '?')} has no 'flow' feature; set "
                     "data.flow_source='tvl1' to compute TV-L1 flow from the HR frames on the accelerator")
  return np.asarray(example["flow"][flows])  # the stored dtype (float16): exact, half of float32's bytes


def sample_patch(d: ml_collections.ConfigDict, scale: int) -> SamplePatch:
  """The training sampler of data section ``d`` at SR factor ``scale``."""
  if d.sampler not in SAMPLERS:
    raise ValueError(f"Unknown data.sampler {d.sampler!r}; use one of {SAMPLERS}")
  return SamplePatch(scale=scale, patch_size=d.patch_size, sampler=d.sampler,
                     input_frames=d.input_frames, clip_length=d.clip_length, flip=d.flip,
                     flow_source=d.flow_source, labels=d.with_labels)


# ---------------------------------------------------------------------------
# Train pipeline.

class ZlibFrames:
  """A zlib-encoded (T, ...) tensor (TFDS ``Tensor(encoding=ZLIB)``) decompressed only up to the last
  frame indexed: a sample that takes flow t decompresses t + 1 frames, not T (a zlib stream can be
  cut short, not entered in the middle, so on average half the work for a uniform t)."""

  def __init__(self, data: bytes, frame_shape: tuple[int, ...], dtype):
    self.data, self.frame_shape, self.dtype = data, tuple(frame_shape), np.dtype(dtype)

  def __getitem__(self, frames) -> np.ndarray:
    frames = np.asarray(frames)
    n = int(frames.max()) + 1
    size = self.dtype.itemsize * int(np.prod(self.frame_shape))
    raw = zlib.decompressobj().decompress(self.data, n * size)
    if len(raw) < n * size:
      raise IndexError(f"frame {n - 1} is beyond the {len(raw) // size} stored frames")
    return np.frombuffer(raw, self.dtype).reshape((n, *self.frame_shape))[frames]


@dataclasses.dataclass(frozen=True)
class LazyFlow(grain.transforms.Map):
  """Wraps an example's undecoded zlib 'flow' bytes as ``ZlibFrames``."""
  frame_shape: tuple[int, ...]
  dtype: str

  def map(self, example: dict[str, Any]) -> dict[str, Any]:
    return dict(example, flow=ZlibFrames(example["flow"], self.frame_shape, self.dtype))


def train_source(name: str, split: str, data_dir: str | None) -> tuple[Any, LazyFlow | None]:
  """The training split decoding only what SamplePatch reads: no 'mask' (moving-pixel masks are not
  trained on) and, for a zlib 'flow' of static shape, no flow until a sample indexes it (the map to
  apply: ``LazyFlow``, else None). HR and LR frames are stored as raw bytes inside each record's
  serialized tf.Example, so a record is read and parsed whole; only the frames a sample takes are copied.
  A record that cannot be read raises DataError naming its file, as ``get_source``."""
  builder = get_builder(name, data_dir)
  if split not in builder.info.splits:
    raise ValueError(f"Dataset {name!r} has no split {split!r}; it has {list(builder.info.splits)}")
  features = builder.info.features
  decoders = {"mask": tfds.decode.SkipDecoding()} if "mask" in features else {}
  lazy = None
  flow = features["flow"] if "flow" in features else None
  if (flow is not None and getattr(flow, "_encoding", None) == tfds.features.Encoding.ZLIB
      and None not in flow.shape):
    decoders["flow"] = tfds.decode.SkipDecoding()
    lazy = LazyFlow(tuple(flow.shape[1:]), np.dtype(flow.np_dtype).name)
  source = builder.as_data_source(split=split, decoders=decoders or None)
  return _NamedSource(source, name, split, _shards(builder, split), _prepare_hint(name, builder)), lazy


def train_iterator(d: ml_collections.ConfigDict, scale: int, per_process_batch: int, seed: int
                   ) -> grain.DatasetIterator:
  """An endless, checkpointable iterator of this process's training batches (data section ``d``)."""
  source, lazy_flow = train_source(d.name, d.train_split, d.get("data_dir"))
  ds = grain.MapDataset.source(source).repeat(None).shuffle(seed=seed)
  ds = ds[jax.process_index()::jax.process_count()]
  if lazy_flow is not None:
    ds = ds.map(lazy_flow)
  ds = ds.random_map(sample_patch(d, scale), seed=seed + 1)
  ds = ds.batch(per_process_batch, drop_remainder=True)
  threads = d.get("read_threads", 4)
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(threads, 2)))
  workers = resolve_worker_count(d.get("worker_count", 0))
  if workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)


AUTO_WORKERS, MAX_AUTO_WORKERS = -1, 16


def resolve_worker_count(setting: int) -> int:
  """data.worker_count as a count: -1 (auto) = min(16, host cores // local devices - 1) on GPU/TPU
  (a core per device left to the training process), 0 on CPU, where the devices are the host's
  cores and worker processes would compete with the step for them."""
  if setting != AUTO_WORKERS:
    return int(setting)
  if jax.default_backend() == "cpu":
    return 0
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  workers = min(MAX_AUTO_WORKERS, cores // jax.local_device_count() - 1)
  logging.info("data.worker_count=-1 (auto): %d grain worker processes (%d cores, %d local devices)",
               max(workers, 0), cores, jax.local_device_count())
  return max(workers, 0)


# ---------------------------------------------------------------------------
# Eval pipeline.

def eval_items(d: ml_collections.ConfigDict, max_clips: int | None = None
               ) -> Iterator[dict[str, np.ndarray]]:
  """Every frame of every eval clip at full size: this process's share, one item at a time.

  Items are single frames for the 'frame'/'pair' samplers (LR windows of
  data.input_frames) and consecutive, non-overlapping chunks of
  data.clip_length frames for 'clip': dicts of 'lr', 'hr' (uint8) and 'flow' (stored dtype;
  one flow per HR frame, flow[min(t, T-2)], used for moving-pixel masks) and
  'index' (int32, the clip's index in the split). Batch them with
  ``evaluation.batched.padded_batches``. ``d``: the config's data section.
  """
  source = get_source(d.name, d.eval_split, d.get("data_dir"))
  n = len(source) if not max_clips else min(len(source), max_clips)
  span = d.clip_length if d.sampler == "clip" else 1
  for i in range(jax.process_index(), n, jax.process_count()):
    for item in _eval_items(source[i], span, d.input_frames, d.flow_source):
      yield dict(item, index=np.int32(i))


def eval_item_count(d: ml_collections.ConfigDict, max_clips: int | None = None) -> int:
  """How many items ``eval_items`` yields in this process (counting every clip as long as the first)."""
  source = get_source(d.name, d.eval_split, d.get("data_dir"))
  n = len(source) if not max_clips else min(len(source), max_clips)
  span = d.clip_length if d.sampler == "clip" else 1
  return len(range(jax.process_index(), n, jax.process_count())) * (source[0]["hr"].shape[0] // span)


def _eval_items(example: dict[str, np.ndarray], span: int, k: int,
                flow_source: str) -> Iterator[dict[str, np.ndarray]]:
  hr, lr = example["hr"], example["lr"]
  num_frames = hr.shape[0]
  for start in range(0, num_frames - span + 1, span):
    centres = np.arange(start, start + span)
    item_lr = lr[lr_window(num_frames, centres, k)]  # (span, K, h, w, 3)
    item_lr = item_lr[:, 0] if k == 1 else item_lr
    flows = _flow_or_pairs(example, np.minimum(centres, num_frames - 2), flow_source)
    item = {"hr": hr[centres], "lr": item_lr, _flow_key(flow_source): np.asarray(flows)}
    if span == 1:
      item = {k_: v[0] for k_, v in item.items()}
    yield item
