"""Preparing real video data sets: decode, resize, cache per video, in parallel, resumable.

The builders of manually downloaded video data (`cdvl_sr`, `ucf101_sr`, `hmdb51_sr`,
`tiny_virat`) prepare in two phases (see `video_builder.VideoPrepBuilder`):

  1. per video, `work_fn(task)` runs in a pool of worker processes (CPU: decode,
     resize, bicubic LR), then `post_fn(task, arrays)` in the main process
     (accelerator: TV-L1 flow). The result is cached as `<cache>/<name>.npz`, or as
     `<cache>/<name>.skip.json` holding the reason why the video cannot be used
     (`<name>`: the video's resolved path in manual_dir plus a hash of it, see `PrepCache`).
     Cached videos are not redone (a run can be resumed), and shard i of N takes
     every N-th video (one shard per machine);
  2. `download_and_prepare` reads the cache (preparing what is missing) and
     writes array_record files.

Frames are uint8 RGB (T, H, W, 3); flow is float32 (N, H, W, 2) in pixels, (u, v).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import time
import zipfile
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from absl import logging
from PIL import Image

from arsr_jax.media.degrade import bicubic_downsample
from arsr_jax.media.video import iter_frames

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv",
                    ".flv", ".ogv", ".3gp", ".ts", ".mts", ".y4m")
# Headerless raw video: listed so that such files are reported as skipped, not ignored.
RAW_VIDEO_EXTENSIONS = (".yuv", ".rgb", ".raw")


class SkipVideo(Exception):
  """A video that cannot be used; the message is the reason recorded in the metadata."""


@dataclasses.dataclass(frozen=True)
class Task:
  """One source video (made by `paths.video_task`).

  key: unique and stable: the entry as listed (relative to its folder in manual_dir).
  path: the resolved file that is read ('' when refused).
  source: `path` relative to manual_dir; names the cache entry.
  refused: why the entry is not read at all (its path leaves manual_dir); '' otherwise.
  """
  key: str
  path: str
  split: str
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
  source: str = ""
  refused: str = ""


# ---------------------------------------------------------------------------
# Frames.


def to_rgb(frame: np.ndarray) -> np.ndarray:
  """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8."""
  if frame.ndim == 2:
    frame = frame[..., None]
  if frame.shape[-1] == 1:
    return np.repeat(frame, 3, axis=-1)
  return frame[..., :3]


def resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bicubic (PIL, antialiased) resize of one uint8 (H, W, 3) frame; a no-op at the same size."""
  if frame.shape[:2] == (height, width):
    return frame
  return np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))


def round_to(value: float, multiple: int) -> int:
  """The positive multiple of `multiple` nearest to `value`."""
  return max(multiple, int(round(value / multiple)) * multiple)


def fit_short_side(height: int, width: int, short_side: int, multiple: int = 2) -> tuple[int, int]:
  """(H, W) with shorter side `short_side`, aspect ratio kept, both multiples of `multiple`."""
  factor = short_side / min(height, width)
  return round_to(height * factor, multiple), round_to(width * factor, multiple)


Size = tuple[int, int]


def decode(path: str, *, size: Size | Callable[[int, int], Size] | None = None,
           max_frames: int | None = None, frame_step: int = 1) -> np.ndarray:
  """Decodes a video to uint8 RGB (T, H, W, 3).

  Args:
    path: the video file.
    size: output (H, W), a function (h, w) -> (H, W) of the source size, or None (as is).
    max_frames: keep at most this many frames (None or 0: all).
    frame_step: keep every `frame_step`-th frame.

  Raises:
    SkipVideo: missing, empty, corrupt or undecodable file (the message says which).
  """
  if not os.path.exists(path):
    raise SkipVideo(f"file not found: {path}")
  frames, target = [], None
  try:
    for index, frame in enumerate(iter_frames(path)):
      if index % frame_step:
        continue
      frame = to_rgb(frame)
      if target is None:
        target = size(*frame.shape[:2]) if callable(size) else (size or frame.shape[:2])
      frames.append(resize(frame, *target))
      if max_frames and len(frames) >= max_frames:
        break
  except (ValueError, OSError) as e:  # arsr_jax.media.video names the file and the problem
    raise SkipVideo(str(e)) from e
  return np.stack(frames)


def require_frames(frames: np.ndarray, min_frames: int) -> None:
  """Raises SkipVideo if the video has fewer than `min_frames` frames."""
  if len(frames) < min_frames:
    raise SkipVideo(f"too short: {len(frames)} frames, fewer than the {min_frames} needed")


def bicubic_lr(frames: np.ndarray, scale: int, chunk: int = 16) -> np.ndarray:
  """`bicubic_downsample(frames, scale)` of (T, H, W, 3) uint8, in fixed chunks of frames.

  The fixed chunk (the last one padded) compiles once per frame size, whatever T.
  """
  pad = -len(frames) % chunk
  padded = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)]) if pad else frames
  lr = [bicubic_downsample(padded[i:i + chunk], scale) for i in range(0, len(padded), chunk)]
  return np.concatenate(lr)[:len(frames)]


def flow_pairs(frames0: np.ndarray, frames1: np.ndarray, params, batch: int = 16) -> np.ndarray:
  """TV-L1 flow frames0[i] -> frames1[i]: (N, H, W, 3) uint8 pairs -> float32 (N, H, W, 2) pixels.

  Runs on the default JAX backend (the accelerator when present) in batches of
  `batch` pairs (the last one padded, so each frame size compiles once),
  sharded over the devices when there are several accelerators.
  """
  import jax  # noqa: PLC0415
  from arsr_jax.flow import tvl1  # noqa: PLC0415
  sharded = jax.device_count() > 1 and jax.default_backend() != "cpu"
  fn = tvl1.tvl1_flow_sharded if sharded else tvl1.tvl1_flow
  out, pending = [], None
  for start in range(0, len(frames0), batch):
    f0, f1 = frames0[start:start + batch], frames1[start:start + batch]
    count, pad = len(f0), batch - len(f0)
    if pad:
      f0 = np.concatenate([f0, np.repeat(f0[-1:], pad, axis=0)])
      f1 = np.concatenate([f1, np.repeat(f1[-1:], pad, axis=0)])
    flow = fn(f0, f1, params)  # asynchronous: the next batch is prepared meanwhile
    if pending is not None:
      out.append(np.asarray(pending[0])[:pending[1]])
    pending = (flow, count)
  if pending is not None:
    out.append(np.asarray(pending[0])[:pending[1]])
  h, w = frames0.shape[1:3]
  return np.concatenate(out) if out else np.zeros((0, h, w, 2), np.float32)


# ---------------------------------------------------------------------------
# Per-video cache.


def source_size(path: str) -> int:
  """File size in bytes, -1 if missing: a changed source invalidates its cache entry."""
  try:
    return os.path.getsize(path)
  except OSError:
    return -1


class PrepCache:
  """Per-video results under `root`: `<name>.npz` (arrays) or `<name>.skip.json` (reason).

  `<name>` is the video's resolved path relative to manual_dir (`Task.source`)
  plus a hash of that whole path, so different files never share an entry.
  An entry is valid while its source file keeps the size it had (missing: -1).
  Writes are atomic (temporary file, then rename), so an interrupted run leaves
  no half-written entry. Refused tasks are never cached.
  """

  def __init__(self, root: str):
    self.root = os.fspath(root)

  def name(self, task: Task) -> str:
    """The entry's path without extension (inside `root` whatever the task names)."""
    rel = task.source or task.key
    digest = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".", "..")] or ["video"]
    return os.path.join(self.root, *parts[:-1], f"{parts[-1][:120]}.{digest}")

  def lookup(self, task: Task) -> tuple[str, str] | None:
    """('ok', npz path), ('skip', reason) or None when not cached (or stale)."""
    if task.refused:
      return "skip", task.refused
    base, size = self.name(task), source_size(task.path)
    if os.path.exists(base + ".npz"):
      try:
        with np.load(base + ".npz") as data:
          if int(data["__source_size__"]) == size:
            return "ok", base + ".npz"
      except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # e.g. a truncated copy
        logging.warning("unreadable cache entry %s.npz (%s): preparing the video again", base, e)
    if os.path.exists(base + ".skip.json"):
      with open(base + ".skip.json") as f:
        entry = json.load(f)
      if entry.get("source_size") == size:
        return "skip", entry["reason"]
    return None

  def load(self, path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
      return {k: data[k] for k in data.files if k != "__source_size__"}

  def put(self, task: Task, arrays: Mapping[str, np.ndarray]) -> None:
    base = self.name(task)
    self._remove(base + ".skip.json")
    self._atomic(base + ".npz", lambda f: np.savez(
        f, __source_size__=np.int64(source_size(task.path)), **arrays))

  def put_skip(self, task: Task, reason: str) -> None:
    base = self.name(task)
    self._remove(base + ".npz")
    entry = {"key": task.key, "reason": reason, "source_size": source_size(task.path)}
    self._atomic(base + ".skip.json", lambda f: f.write(json.dumps(entry, indent=1).encode()))

  @staticmethod
  def _remove(path: str) -> None:
    if os.path.exists(path):
      os.remove(path)

  @staticmethod
  def _atomic(path: str, write: Callable[[Any], Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
      write(f)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Running the preparation.


@dataclasses.dataclass
class PrepStats:
  """What one `run` did: videos of the shard, already cached, prepared now, skipped now."""
  total: int = 0
  cached: int = 0
  computed: int = 0
  skipped: int = 0
  seconds: float = 0.0


def _init_worker() -> None:
  """Workers run on the CPU (bicubic LR); only the main process uses the accelerator."""
  import jax  # noqa: PLC0415
  os.environ["JAX_PLATFORMS"] = "cpu"
  jax.config.update("jax_platforms", "cpu")


def _call(fn: Callable[..., dict], *args) -> tuple[str, Any]:
  """('ok', fn(*args)) or ('skip', reason)."""
  try:
    return "ok", fn(*args)
  except SkipVideo as e:
    return "skip", str(e)


def run(tasks: Iterable[Task], cache: PrepCache, work_fn: Callable[[Task], dict], *,
        post_fn: Callable[[Task, dict], dict] | None = None, workers: int = 0,
        num_shards: int = 1, shard_index: int = 0, name: str = "prep",
        log_interval: float = 10.0) -> PrepStats:
  """Prepares and caches the videos of shard `shard_index` of `num_shards` that are not cached.

  Args:
    tasks: the videos (deduplicated by key; sorted by key before sharding; entries naming
      one file are prepared once).
    cache: where results go.
    work_fn: Task -> dict of arrays, in a worker process (picklable: a
      module-level function or a functools.partial of one); raises SkipVideo.
    post_fn: (Task, arrays) -> arrays in this process (accelerator work); may raise SkipVideo.
    workers: worker processes; 0 runs everything in this process.
    num_shards, shard_index: take every `num_shards`-th video from `shard_index`.
    name: prefix of the progress lines.
    log_interval: seconds between progress lines.
  """
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index {shard_index} is not in [0, num_shards={num_shards})")
  unique = sorted({t.key: t for t in tasks}.values(), key=lambda t: t.key)
  shard = unique[shard_index::num_shards]
  todo = list({cache.name(t): t for t in shard if cache.lookup(t) is None}.values())
  stats = PrepStats(total=len(shard), cached=len(shard) - len(todo))
  start = last_log = time.perf_counter()
  logging.info("%s: %d videos in shard %d/%d, %d already cached, %d to prepare with %d workers",
               name, len(shard), shard_index, num_shards, stats.cached, len(todo), workers)

  def finish(task: Task, status: str, value: Any) -> None:
    nonlocal last_log
    if status == "ok" and post_fn is not None:
      status, value = _guarded(_call, functools.partial(post_fn, task, value), task=task)
    if status == "ok":
      cache.put(task, value)
    else:
      cache.put_skip(task, value)
      stats.skipped += 1
      logging.warning("%s: skipping %s: %s", name, task.key, value)
    stats.computed += 1
    now = time.perf_counter()
    if now - last_log >= log_interval or stats.computed == len(todo):
      last_log = now
      logging.info("%s", progress_line(name, stats, len(todo), now - start))

  try:
    if workers <= 0:
      for task in todo:
        finish(task, *_guarded(_call, work_fn, task, task=task))
    else:
      context = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                  initializer=_init_worker) as pool:
        queue, pending = list(reversed(todo)), {}
        while queue or pending:
          while queue and len(pending) < 2 * workers:
            task = queue.pop()
            pending[pool.submit(_call, work_fn, task)] = task
          done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
          for future in done:
            task = pending.pop(future)
            finish(task, *_guarded(future.result, task=task))
  finally:
    stats.seconds = time.perf_counter() - start
  return stats


def _guarded(fn, *args, task: Task):
  """fn(*args), re-raising unexpected errors with the video they happened on."""
  try:
    return fn(*args)
  except Exception as e:  # a bug or an unexpected failure: stop, naming the video
    raise RuntimeError(f"preparing {task.key} ({task.path}) failed: {e!r}") from e


def progress_line(name: str, stats: PrepStats, todo: int, elapsed: float) -> str:
  """'name: done/total videos (k skipped, c cached), r videos/s, ETA ...'."""
  done = stats.cached + stats.computed
  rate = stats.computed / elapsed if elapsed > 0 else 0.0
  eta = (todo - stats.computed) / rate if rate > 0 else math.inf
  return (f"{name}: {done}/{stats.total} videos ({stats.skipped} skipped, {stats.cached} were "
          f"cached), {rate:.2f} videos/s, elapsed {_duration(elapsed)}, ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def list_videos(root: str) -> tuple[list[str], list[str]]:
  """(video files, raw .yuv-like files) under `root`, recursively, as sorted relative paths."""
  videos, raw = [], []
  for folder, dirs, files in os.walk(root):
    dirs.sort()
    for file in sorted(files):
      rel = os.path.relpath(os.path.join(folder, file), root).replace(os.sep, "/")
      ext = os.path.splitext(file)[1].lower()
      if ext in VIDEO_EXTENSIONS:
        videos.append(rel)
      elif ext in RAW_VIDEO_EXTENSIONS:
        raw.append(rel)
  return videos, raw
