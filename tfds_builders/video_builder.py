"""`VideoPrepBuilder`: the TFDS builder base of the data sets made from manually downloaded videos.

A subclass lists its videos from `manual_dir` (`_tasks`), says how one video is
turned into arrays (`_work_fn` in worker processes, `_post` in the main
process) and how cached arrays become examples (`_examples`). The base class
runs the two-phase preparation of `video_prep`, numbers the examples of each
split ('id', int32, in a fixed order) and records every skipped video with its
reason in `info.metadata` and in `skipped.json` next to the data:

  metadata['videos'][split] = {'listed': n, 'used': n_used, 'skipped': n_skipped}
  metadata['skipped'] = [{'split', 'video', 'reason'}, ...]

Builder keyword arguments (also through `tfds.builder(name, ...)`):
  workers: worker processes for decoding (default: min(8, CPUs - 1); 0 = in process).
  cache_dir: root of the per-video cache (default `<data_dir>/_prep_cache`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from typing import Any, Callable, Iterator, Mapping

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import paths, video_prep
from tfds_builders.video_prep import Task


def default_workers() -> int:
  return max(0, min(8, (os.cpu_count() or 1) - 1))


def require_path(path: str | os.PathLike, what: str, dataset: str, manual_dir: str) -> str:
  """`path` if it exists inside `manual_dir`; else FileNotFoundError, or ValueError if it
  resolves outside (see `paths`), saying what was expected where."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{dataset}: {what} not found: expected it at {path}")
  _, _, why = paths.resolve(manual_dir, path)
  if why:
    raise ValueError(f"{dataset}: {what} at {path}: {why}")
  return path


def spec_id(spec: Any) -> str:
  """A short stable name of a preparation spec (a frozen dataclass): the cache folder."""
  text = json.dumps(spec_dict(spec), sort_keys=True)
  return "spec-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def spec_dict(spec: Any) -> dict[str, Any]:
  def plain(value):
    if dataclasses.is_dataclass(value):
      return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return list(value) if isinstance(value, tuple) else value
  return plain(spec)


class VideoPrepBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the builders of real video data read from `manual_dir` (see the module doc)."""

  DEFAULT_FILE_FORMAT = "array_record"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.x's own lookup needs the `importlib_resources` backport; the file path is enough.
    return epath.Path(sys.modules[cls.__module__].__file__)

  def _log_download_bytes(self) -> None:
    # Instead of TFDS's "Downloading and preparing dataset Unknown size ..." (manual_dir is read).
    logging.info("%s/%s: preparing from the manual download into %s", self.name,
                 self.builder_config.name, self.data_dir)

  def __init__(self, *, file_format=None, workers: int | None = None, cache_dir: str | None = None,
               **kwargs):
    # array_record gives random access (tfds.data_source, grain) without TF.
    super().__init__(file_format=file_format or self.DEFAULT_FILE_FORMAT, **kwargs)
    self._workers = default_workers() if workers is None else workers
    self._cache_dir = cache_dir

  # ------------------------------------------------------------------ hooks

  def _tasks(self, manual_dir: str) -> dict[str, list[Task]]:
    """{split: videos}, from the files in `manual_dir`; raises for missing index files."""
    raise NotImplementedError

  def _prep_spec(self) -> Any:
    """A frozen dataclass of everything that changes a video's arrays (the cache identity)."""
    raise NotImplementedError

  def _work_fn(self) -> Callable[[Task], dict[str, np.ndarray]]:
    """A picklable Task -> arrays run in worker processes; raises SkipVideo."""
    raise NotImplementedError

  def _post(self, task: Task, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Main-process (accelerator) step on a worker's arrays; may raise SkipVideo."""
    del task
    return arrays

  def _examples(self, task: Task, arrays: dict[str, np.ndarray]
                ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, example without 'id') pairs of one prepared video."""
    raise NotImplementedError

  def _metadata(self) -> dict[str, Any]:
    """Extra entries of info.metadata (set once the tasks are listed)."""
    return {}

  # ------------------------------------------------------------ preparation

  @property
  def cache(self) -> video_prep.PrepCache:
    """The per-video cache of this config's preparation spec (configs with one spec share it)."""
    root = self._cache_dir or os.path.join(os.fspath(self.data_dir_root), "_prep_cache")
    return video_prep.PrepCache(os.path.join(root, self.name, spec_id(self._prep_spec())))

  def prepare_cache(self, manual_dir: str, *, num_shards: int = 1, shard_index: int = 0
                    ) -> video_prep.PrepStats:
    """Phase 1 only: prepares and caches shard `shard_index` of `num_shards` of the videos."""
    tasks = self._tasks(os.fspath(manual_dir))
    return self._run([t for split in tasks.values() for t in split], num_shards, shard_index)

  def _run(self, tasks: list[Task], num_shards: int = 1, shard_index: int = 0
           ) -> video_prep.PrepStats:
    cache = self.cache
    os.makedirs(cache.root, exist_ok=True)
    with open(os.path.join(cache.root, "spec.json"), "w") as f:
      json.dump({"builder": self.name, "spec": spec_dict(self._prep_spec())}, f, indent=1)
    return video_prep.run(tasks, cache, self._work_fn(), post_fn=self._post, workers=self._workers,
                          num_shards=num_shards, shard_index=shard_index,
                          name=f"{self.name}/{self.builder_config.name}")

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)  # TFDS raises if missing or empty
    tasks = self._tasks(manual_dir)
    self._run([t for split in tasks.values() for t in split])
    cache, skipped, counts = self.cache, [], {}
    for split, split_tasks in tasks.items():
      entries = [cache.lookup(t) for t in split_tasks]
      if any(e is None for e in entries):  # another process changed the files meanwhile
        raise RuntimeError(f"{self.name}: some videos of {split!r} are still not prepared")
      lost = [{"split": split, "video": t.key, "reason": e[1]}
              for t, e in zip(split_tasks, entries) if e[0] == "skip"]
      counts[split] = {"listed": len(split_tasks), "used": len(split_tasks) - len(lost),
                       "skipped": len(lost)}
      skipped += lost
      if counts[split]["used"] == 0:
        raise ValueError(f"{self.name}/{self.builder_config.name}: no usable video in split "
                         f"{split!r} ({len(lost)} skipped: {lost[:3]} ...)")
    report = {"num_skipped": len(skipped), "videos": counts, "skipped": skipped}
    self.info.metadata.update({**report, "prep": spec_dict(self._prep_spec()), **self._metadata()})
    with open(os.path.join(os.fspath(self.data_dir), "skipped.json"), "w") as f:
      json.dump(report, f, indent=1)
    if skipped:
      logging.warning("%s/%s: %d of %d videos skipped (reasons in skipped.json next to the data)",
                      self.name, self.builder_config.name, len(skipped),
                      sum(c["listed"] for c in counts.values()))
    return {split: self._generate_examples(split_tasks) for split, split_tasks in tasks.items()}

  def _generate_examples(self, tasks: list[Task]):
    cache, index = self.cache, 0
    for task in tasks:
      status, value = cache.lookup(task)
      if status != "ok":
        continue
      for key, example in self._examples(task, cache.load(value)):
        example["id"] = np.int32(index)
        index += 1
        yield key, example


def read_skipped(builder: tfds.core.DatasetBuilder) -> Mapping[str, Any]:
  """The skip report written next to a prepared data set (see the module doc)."""
  with open(os.path.join(os.fspath(builder.data_dir), "skipped.json")) as f:
    return json.load(f)
