"""Recognizer inputs from clip datasets: TSN segments, flow stacks, two-stream pairs and clips.

A clip example holds 'hr' (T, H, W, 3) uint8 frames, optionally 'flow'
(T-1, H, W, 2) forward flow in pixels, and 'label' (class index) or 'labels'
(multi-hot, multi-label data such as TinyVIRAT). ``SampleRecognition`` turns
it into one recognizer input; frames stay uint8 (4x fewer bytes from host to
device; ``steps.recognition.model_inputs`` maps them to [0, 1] in the jitted
step), flow stays in its stored dtype (float16 here; float32 on the device), in pixels:

  'rgb':        'rgb'  (S, H, W, 3), one frame per segment;
  'flow':       'flow' (S, H, W, 2L) in pixels, a stack of L consecutive flows
                per segment, channels (u1, v1, u2, v2, ...) (TSN);
  'two_stream': both, the RGB frame taken at the centre of each flow stack;
  'clip':       'clip' (L, H, W, 3), L consecutive frames (3D CNNs).

Training draws one random start per segment (TSN) and a random crop, or with
``scale_jitter`` TSN's corner cropping and scale jittering (Sec. 3.3) resized to
crop_size, and with ``flip`` a random horizontal flip (flow: u negated); eval
uses TSN's test sampling (eval.num_segments evenly spaced, centred starts) and a
centre crop. The random draws come from grain's per-example generator
(``random_map``: a function of the seed and the example's position in the
epoch-repeated, shuffled stream), so a batch is the same on every rerun.

With ``sr_input`` (data.sr_input set; clip kind only) 'clip' holds the LR frames (L, h, w, 3)
instead: the stored 'lr', or the frames resized to lr_size x lr_size (natively small video,
TinyVIRAT); the recognition step super-resolves them (TinyVIRAT eq. 4: A(G(V_LR))).

The temporal stream may learn from the dataset's flow or from TV-L1 flow of
the HR frames (``data.flow_source='tvl1'``), computed once per split on the
accelerator and cached next to the dataset (``tvl1_flows``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Iterator

import grain
import jax
import ml_collections
import numpy as np
from absl import logging

from arsr_jax import recognition, sharding, writers
from arsr_jax.data import pipeline
from arsr_jax.flow import tvl1
from arsr_jax.media import degrade
from arsr_jax.recognition import tsn

@dataclasses.dataclass(frozen=True)
class SampleRecognition(grain.transforms.RandomMap):
  """Clip example -> one recognizer input (see module docstring) and its label."""
  kind: str
  num_segments: int = 3
  flow_stack: int = 5
  clip_length: int = 16
  crop_size: int = 0  # 0 = whole frame
  resize: int = 0  # frames resized to resize x resize first (variable-size clips, TinyVIRAT: 112)
  train: bool = True
  sr_input: bool = False  # 'clip' holds LR frames for a frozen SR network (module docstring)
  lr_size: int = 0  # sr_input: LR frames resized to lr_size x lr_size (0 = the stored 'lr')
  scale_jitter: tuple[float, ...] = ()  # TSN multi-scale corner crops (fractions of the short side)
  flip: bool = False  # random horizontal flip in training (TSN Sec. 3.3; flow u negated)

  def random_map(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return self.sample(example, rng if self.train else None)

  def sample(self, example: dict[str, Any], rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    """``rng`` None = deterministic test sampling and a centre crop."""
    if self.kind not in recognition.KINDS:
      raise ValueError(f"Unknown recognizer input kind {self.kind!r}; use one of {recognition.KINDS}")
    name = example.get("id", "?")
    if self.sr_input and (self.kind != "clip" or self.crop_size):
      raise ValueError(f"data.sr_input feeds clip recognizers on whole frames; got input kind {self.kind!r}, "
                       f"crop_size={self.crop_size}")
    hr = lr_frames_of(example, self.lr_size) if self.sr_input else frames_of(example)
    num_frames = hr.shape[0]
    out: dict[str, np.ndarray] = {}
    try:
      if self.kind in ("flow", "two_stream"):
        flow = example.get("flow")
        if flow is None:
          raise ValueError("it has no 'flow' feature (set data.flow_source='tvl1')")
        starts = tsn.segment_indices(flow.shape[0], self.num_segments, self.flow_stack,
                                     train=rng is not None, rng=rng)
        stacks = flow[starts[:, None] + np.arange(self.flow_stack)]  # (S, L, H, W, 2), stored dtype
        out["flow"] = tsn.stack_flow(stacks)
        if self.kind == "two_stream":
          out["rgb"] = hr[starts + self.flow_stack // 2]
      elif self.kind == "rgb":
        out["rgb"] = hr[tsn.segment_indices(num_frames, self.num_segments, 1, train=rng is not None, rng=rng)]
      else:
        # Short clips (TinyVIRAT) repeat their last frame, as TinyVIRAT's evaluation pads them.
        start = int(rng.integers(max(num_frames - self.clip_length, 0) + 1)) if rng is not None else (
            max(num_frames - self.clip_length, 0) // 2)
        out["clip"] = hr[np.minimum(np.arange(start, start + self.clip_length), num_frames - 1)]
    except ValueError as e:
      raise ValueError(f"Video {name}: {e}") from e
    if self.resize and not self.sr_input:  # sr_input: the step resizes the SR output instead
      out = {k: resize_frames(v, self.resize, flow=k == "flow") for k, v in out.items()}
    if rng is not None and self.scale_jitter and self.kind != "clip":
      out = multiscale_crop(out, self.scale_jitter, self.crop_size, rng)
    else:
      out = _crop(out, self.crop_size, rng)
    if rng is not None and self.flip and self.kind != "clip" and rng.random() < 0.5:
      out = {k: tsn.mirror(v, flow=k == "flow") for k, v in out.items()}  # TSN Sec. 3.3
    out = {k: np.ascontiguousarray(v if v.dtype in (np.uint8, np.float16) else v.astype(np.float32))
           for k, v in out.items()}
    out["label"] = label_of(example)
    return out


def frames_of(example: dict[str, Any]) -> np.ndarray:
  """The clip's (HR) frames: 'hr', or 'video' for datasets stored at native size (TinyVIRAT)."""
  if "hr" in example:
    return example["hr"]
  if "video" in example:
    return example["video"]
  raise ValueError(f"Example {example.get('id', '?')} has neither 'hr' nor 'video' frames")


def lr_frames_of(example: dict[str, Any], lr_size: int) -> np.ndarray:
  """A clip's LR frames (T, h, w, 3): the stored 'lr' (resized to lr_size when given), or, for natively
  small video without 'lr' (TinyVIRAT), its frames resized to lr_size x lr_size (required then)."""
  if "lr" in example:
    lr = example["lr"]
  elif lr_size:
    lr = frames_of(example)
  else:
    raise ValueError(f"Example {example.get('id', '?')} has no 'lr' frames; set data.lr_size (the LR side "
                     "its frames are resized to before SR)")
  return resize_frames(lr, lr_size) if lr_size else lr


def resize_frames(frames: np.ndarray, size: int, flow: bool = False) -> np.ndarray:
  """(..., H, W, C) -> (..., size, size, C), bicubic (PIL-like, antialiased); flow vectors rescaled."""
  h, w = frames.shape[-3:-1]
  if (h, w) == (size, size):
    return frames
  if flow:
    return np.asarray(degrade.resize_flow(np.asarray(frames, np.float32), size, size))
  return np.asarray(degrade.resize(frames, size, size))


def label_of(example: dict[str, Any]) -> np.ndarray:
  """int32 class index, or float32 multi-hot for multi-label data ('labels')."""
  if "labels" in example:
    return np.asarray(example["labels"], np.float32)
  return np.asarray(example["label"], np.int32)


def _crop(out: dict[str, np.ndarray], size: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
  """The same random (train) or centre (eval) square crop of every input."""
  if not size:
    return out
  h, w = next(iter(out.values())).shape[-3:-1]
  if size > min(h, w):
    raise ValueError(f"data.crop_size={size} exceeds the {h}x{w} frames")
  y = int(rng.integers(h - size + 1)) if rng is not None else (h - size) // 2
  x = int(rng.integers(w - size + 1)) if rng is not None else (w - size) // 2
  return {k: v[..., y:y + size, x:x + size, :] for k, v in out.items()}


def crop_offsets(h: int, w: int, ch: int, cw: int) -> list[tuple[int, int]]:
  """(y, x) of TSN's 13 fixed crop positions: 4 corners, centre, 4 edge centres, 4 quarter points
  (tsn-pytorch GroupMultiScaleCrop.fill_fix_offset(more_fix_crop=True), steps (size - crop) // 4)."""
  ys, xs = (h - ch) // 4, (w - cw) // 4
  grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
  return [(a * ys, b * xs) for a, b in grid]


def multiscale_crop(out: dict[str, np.ndarray], scales: tuple[float, ...], size: int,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
  """TSN's corner cropping and scale jittering (Sec. 3.3) of every input alike.

  tsn-pytorch GroupMultiScaleCrop: crop sides int(short side * scale), each snapped to ``size``
  when within 2 px; height and width drawn as a pair of scale indices at most 1 apart (aspect
  jitter, max_distort=1); the crop at one of the 13 fixed positions (:func:`crop_offsets`), then
  resized to size x size (bilinear). Flow is resized as the images TSN stores it in: its values are
  not rescaled.
  """
  if not size:
    raise ValueError("data.scale_jitter needs data.crop_size, the network's input side")
  h, w = next(iter(out.values())).shape[-3:-1]
  sides = [int(min(h, w) * s) for s in scales]
  sides = [size if abs(x - size) < 3 else x for x in sides]
  pairs = [(sides[i], sides[j]) for i in range(len(sides)) for j in range(len(sides)) if abs(i - j) <= 1]
  ch, cw = pairs[int(rng.integers(len(pairs)))]
  if ch > h or cw > w:
    raise ValueError(f"data.scale_jitter={tuple(scales)} crops {ch}x{cw} exceed the {h}x{w} frames")
  offsets = crop_offsets(h, w, ch, cw)
  y, x = offsets[int(rng.integers(len(offsets)))]
  res = {}
  for k, v in out.items():
    crop = v[..., y:y + ch, x:x + cw, :]
    if (ch, cw) == (size, size):
      res[k] = crop
    else:
      res[k] = _bilinear(crop, size)
  return res


def _bilinear(x: np.ndarray, size: int) -> np.ndarray:
  """(..., h, w, C) -> (..., size, size, C), bilinear with antialiasing (PIL's BILINEAR, which
  tsn-pytorch resizes with), keeping the dtype (uint8 rounded)."""
  y = jax.image.resize(np.asarray(x, np.float32), x.shape[:-3] + (size, size, x.shape[-1]), "linear", antialias=True)
  y = np.asarray(y)
  return np.clip(np.round(y), 0, 255).astype(np.uint8) if x.dtype == np.uint8 else y.astype(x.dtype)


def num_classes(d: ml_collections.ConfigDict) -> int:
  """Classes of the dataset's 'label' (or 'labels') feature (``d``: the config's data section)."""
  info = pipeline.get_builder(d.name, d.get("data_dir")).info
  feats = info.features
  if "label" in feats:
    return feats["label"].num_classes
  if "labels" in feats:
    return int(feats["labels"].shape[-1])
  raise ValueError(f"Dataset {d.name!r} has no 'label' or 'labels' feature to train a recognizer on")


def is_multilabel(d: ml_collections.ConfigDict) -> bool:
  info = pipeline.get_builder(d.name, d.get("data_dir")).info
  return "label" not in info.features and "labels" in info.features


# ---------------------------------------------------------------------------
# TV-L1 flow of a whole split, computed once on the accelerator.

class WithFlow:
  """A random-access source whose examples carry 'flow' from a (N, T-1, H, W, 2) array."""

  def __init__(self, source, flows: np.ndarray):
    self._source, self._flows = source, flows

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = dict(self._source[index])
    example["flow"] = self._flows[index]
    return example


def tvl1_flows(d: ml_collections.ConfigDict, split: str, source, batch_pairs: int = 64) -> np.ndarray:
  """TV-L1 flow (N, T-1, H, W, 2) float16 of every clip of ``split`` (fixed-size clips).

  Cached as ``tvl1/<split>-<params hash>.npy`` in the dataset directory, so
  the recognizers and the evaluation of one dataset share it. In a multi-process
  run each process computes a contiguous 1/P of the clips into a part file; process 0
  joins them into the cache while the others wait (the data_dir must be shared). ``d``: the
  config's data section.
  """
  params = tvl1.TVL1Params.from_config(d.tvl1)
  key = hashlib.sha1(json.dumps(dataclasses.asdict(params), sort_keys=True).encode()).hexdigest()[:10]
  builder = pipeline.get_builder(d.name, d.get("data_dir"))
  path = os.path.join(builder.data_dir, "tvl1", f"{split}-{key}.npy")
  done_key = f"arsr_jax/tvl1/{path}"
  flows = _cached_flows(path, len(source), warn=True)
  if flows is not None:
    sharding.mark_done(done_key)
    return flows
  n, i = jax.process_count(), jax.process_index()
  lo, hi = i * len(source) // n, (i + 1) * len(source) // n
  logging.info("TV-L1 flow of %s:%s (clips %d-%d of %d), once; cached in %s", d.name, split, lo, hi,
               len(source), path)
  if n == 1:
    _save(path, _compute_flows(d, split, source, range(lo, hi), params, batch_pairs))
    return np.load(path, mmap_mode="r")
  part = f"{path}.part{i}of{n}.npy"
  sharding.report(f"{done_key}/{i}", lambda: _save(part, _compute_flows(d, split, source, range(lo, hi),
                                                                           params, batch_pairs)))
  if i == 0:
    def join():
      for k in range(1, n):
        sharding.wait_for(f"{done_key}/{k}", f"process {k}'s TV-L1 flow of {split}")
      files = [f"{path}.part{k}of{n}.npy" for k in range(n)]
      parts = [np.load(f, mmap_mode="r") for f in files]
      tmp = path + f".tmp{os.getpid()}.npy"  # written part by part: never the whole split in memory
      joined = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(source), *parts[0].shape[1:]))
      for k, part in enumerate(parts):
        joined[k * len(source) // n:(k + 1) * len(source) // n] = part
      joined.flush()
      del joined, parts
      os.replace(tmp, path)
      for f in files:
        os.remove(f)
    sharding.report(done_key, join)
  else:
    sharding.wait_for(done_key, f"process 0 joining the TV-L1 flow of {split}")
  flows = _cached_flows(path, len(source))
  if flows is None:
    raise FileNotFoundError(f"Process 0 wrote {path}, but process {i} does not see it: the data_dir must be "
                            "shared by all processes")
  return flows


def _cached_flows(path: str, num_clips: int, warn: bool = False) -> np.ndarray | None:
  if not os.path.exists(path):
    return None
  flows = np.load(path, mmap_mode="r")
  if flows.shape[0] == num_clips:
    return flows
  if warn:
    logging.warning("Ignoring %s: %d clips cached, split has %d", path, flows.shape[0], num_clips)
  return None


def _compute_flows(d: ml_collections.ConfigDict, split: str, source, clips: range, params,
                   batch_pairs: int) -> np.ndarray:
  """TV-L1 flow (len(clips), T-1, H, W, 2) float16 of ``source[clips]``, on this process's default device."""
  first = source[0]["hr"]
  pairs_per_clip = first.shape[0] - 1
  flows = np.zeros((len(clips), pairs_per_clip, *first.shape[1:3], 2), np.float16)
  fn = jax.jit(lambda a, b: tvl1.tvl1_flow(a, b, params, compact=True))  # host arrays: one device
  clips_per_batch = max(1, batch_pairs // pairs_per_clip)
  bar = writers.ProgressBar(len(clips), desc=f"TV-L1 flow of {d.name}:{split}", unit="clips")
  for lo in range(0, len(clips), clips_per_batch):
    idx = list(clips[lo:lo + clips_per_batch])
    padded = idx + idx[-1:] * (clips_per_batch - len(idx))  # one batch shape: compiled once
    hr = np.stack([_fixed(source[i]["hr"], first.shape, i) for i in padded]).astype(np.float32) / 255.0
    a, b = hr[:, :-1].reshape((-1, *hr.shape[2:])), hr[:, 1:].reshape((-1, *hr.shape[2:]))
    out = np.asarray(fn(a, b)).reshape((len(padded), pairs_per_clip, *hr.shape[2:4], 2))
    flows[lo:lo + len(idx)] = out[:len(idx)]
    bar.update(len(idx))
  bar.close()
  return flows


def _save(path: str, array: np.ndarray) -> None:
  """np.save through a temporary name and a rename: readers see the whole file or none."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + f".tmp{os.getpid()}.npy"
  np.save(tmp, array)
  os.replace(tmp, path)


def _fixed(hr: np.ndarray, shape: tuple[int, ...], index: int) -> np.ndarray:
  if hr.shape != shape:
    raise ValueError(f"data.flow_source='tvl1' caches flow for fixed-size clips; clip {index} is "
                     f"{hr.shape}, the first is {shape}. Prepare the dataset with flow instead.")
  return hr


def recognition_source(d: ml_collections.ConfigDict, split: str, kind: str):
  """The split's source, with TV-L1 flow attached when the input needs flow and flow_source='tvl1'
  (``d``: the config's data section)."""
  source = pipeline.get_source(d.name, split, d.get("data_dir"))
  if kind in ("flow", "two_stream") and d.flow_source == "tvl1":
    source = WithFlow(source, tvl1_flows(d, split, source))
  return source


def sampler(d: ml_collections.ConfigDict, kind: str, train: bool, num_segments: int | None = None
            ) -> SampleRecognition:
  """The sampler of data section ``d``; ``num_segments`` (default data.num_segments): eval.num_segments
  when evaluating."""
  return SampleRecognition(kind=kind, num_segments=num_segments or d.num_segments,
                           flow_stack=d.flow_stack, clip_length=d.clip_length, crop_size=d.crop_size,
                           resize=d.resize, train=train, sr_input=bool(d.get("sr_input")),
                           lr_size=d.get("lr_size", 0), scale_jitter=tuple(d.get("scale_jitter", ())),
                           flip=bool(d.get("flip", False)))


def train_iterator(d: ml_collections.ConfigDict, kind: str, per_process_batch: int,
                   seed: int) -> grain.DatasetIterator:
  """Endless, checkpointable iterator of this process's recognizer training batches (data section ``d``)."""
  ds = grain.MapDataset.source(recognition_source(d, d.train_split, kind))
  ds = ds.repeat(None).shuffle(seed=seed)[jax.process_index()::jax.process_count()]
  ds = ds.random_map(sampler(d, kind, train=True), seed=seed + 1).batch(per_process_batch, drop_remainder=True)
  threads = d.get("read_threads", 4)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(threads, 2))))


def eval_count(config: ml_collections.ConfigDict) -> int:
  """How many items (videos) ``eval_items`` yields in this process."""
  d = config.data
  n = len(pipeline.get_source(d.name, d.eval_split, d.get("data_dir")))
  n = n if not config.eval.get("max_clips") else min(n, config.eval.max_clips)
  return len(range(jax.process_index(), n, jax.process_count()))


def eval_items(config: ml_collections.ConfigDict, kind: str) -> Iterator[dict[str, np.ndarray]]:
  """This process's share of the eval split with TSN test sampling: one item per video with its
  'label' and 'index' (batch them with ``evaluation.batched.padded_batches``). The source (and
  its TV-L1 flow, when computed) is ready on return, before the first item is asked for."""
  source = recognition_source(config.data, config.data.eval_split, kind)
  n = len(source) if not config.eval.get("max_clips") else min(len(source), config.eval.max_clips)
  take = sampler(config.data, kind, train=False, num_segments=config.eval.num_segments)
  return (dict(take.sample(source[i], None), index=np.int32(i))
          for i in range(jax.process_index(), n, jax.process_count()))
