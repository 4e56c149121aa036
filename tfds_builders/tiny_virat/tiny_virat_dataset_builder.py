"""TFDS builder of `tiny_virat`: TinyVIRAT (v1) and TinyVIRAT-v2 tiny action clips from manual_dir.

Natively low-resolution clips (10x10 to 128x128 px) of 26 multi-label actions,
kept at their own size:

  video        uint8  (T, H, W, 3)   all frames, H and W vary per clip
  lr           uint8  (T, H/s, W/s, 3)  only for configs with scale > 1: bicubic LR of
                                     `video` centre-cropped to multiples of s
  labels       uint8  (26,)          multi-hot over `info.metadata['class_names']`
                                     (all 0 where the split has no labels, e.g. v2 test)
  label_names  text sequence         the annotated action names
  size         int32  (2,)           (H, W) of `video`
  num_frames   int32  ()             T
  tube_id      text                  annotation 'id'
  video_id     text                  source VIRAT video ('video_id', if annotated)
  path         text                  annotation 'path'
  id           int32  ()             index in the split, in annotation order

Annotations (manual_dir, or a TinyVIRAT/ or TinyVIRAT_V2/ folder in it):
  v1: tiny_train.json, tiny_test.json ({"tubes": [...]} or a list); videos/{train,test}/<path>
  v2: tiny_{train,val}_v2.json, tiny_test_v2_public.json (lists), class_map.json
      ({name: index}); videos/{train,val,test}/<path>
Entries are {"id", "video_id", "path", "dim": [T, H, W], "label": [names]}. Class
names come from class_map.json when present (v1 may lack it: the v2 class map
is used). Entries whose file is missing or unreadable, or shorter than
`min_frames`, or whose path leads out of manual_dir (see `tfds_builders.paths`),
are skipped and counted. Malformed JSON, labels that are not names and bad class
maps are errors naming the file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import paths, video_prep
from tfds_builders.video_builder import VideoPrepBuilder, require_path
from tfds_builders.video_prep import Task

# TinyVIRAT-v2's class_map.json, in index order.
CLASS_NAMES = (
    "Opening", "Interacts", "Pull", "activity_carrying", "Entering", "vehicle_moving", "Exiting",
    "Loading", "Talking", "activity_running", "vehicle_turning_left", "vehicle_stopping", "Riding",
    "Closing", "activity_walking", "Push", "specialized_using_tool", "vehicle_starting",
    "specialized_miscellaneous", "activity_standing", "Transport_HeavyCarry", "activity_gesturing",
    "vehicle_turning_right", "specialized_talking_phone", "specialized_texting_phone", "Misc")

ANNOTATIONS = {
    "v1": {"train": "tiny_train.json", "test": "tiny_test.json"},
    "v2": {"train": "tiny_train_v2.json", "val": "tiny_val_v2.json",
           "test": "tiny_test_v2_public.json"},
}
ROOTS = ("", "TinyVIRAT", "TinyVIRAT_V2", "TinyVIRAT-v2")


@dataclasses.dataclass
class TinyViratConfig(tfds.core.BuilderConfig):
  """Annotation format and optional LR.

  release: 'v1' or 'v2'.
  scale: 1 = no LR; s > 1 adds 'lr' (clips centre-cropped to multiples of s).
  min_frames: shorter clips are skipped.
  max_frames: keep at most this many frames (0: all).
  num_classes: length of the multi-hot label vector.
  """
  release: str = "v2"
  scale: int = 1
  min_frames: int = 2
  max_frames: int = 0
  num_classes: int = 26


@dataclasses.dataclass(frozen=True)
class TinySpec:
  scale: int
  min_frames: int
  max_frames: int


def prepare_clip(spec: TinySpec, task: Task) -> dict[str, np.ndarray]:
  """Worker: decode a clip as it is (plus LR when spec.scale > 1). Raises SkipVideo."""
  video = video_prep.decode(task.path, max_frames=spec.max_frames)
  video_prep.require_frames(video, spec.min_frames)
  if spec.scale == 1:
    return {"video": video}
  s, (h, w) = spec.scale, video.shape[1:3]
  if h < s or w < s:
    raise video_prep.SkipVideo(f"clip of {h}x{w} px is smaller than the scale {s}")
  top, left = (h % s) // 2, (w % s) // 2
  video = video[:, top:top + h - h % s, left:left + w - w % s]
  return {"video": video, "lr": video_prep.bicubic_lr(video, s)}


def read_json(path: str) -> Any:
  """The contents of a JSON file; ValueError naming the file if it is not valid JSON."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_annotations(path: str) -> list[dict[str, Any]]:
  """The entries of a TinyVIRAT annotation file (a list, or {"tubes": [...]}), each with a
  string 'path' and 'label' a list of names (a single name, null or none becomes a list)."""
  data = read_json(path)
  if isinstance(data, dict):
    lists = [v for v in data.values() if isinstance(v, list)]
    data = data.get("tubes", lists[0] if len(lists) == 1 else None)
  if not isinstance(data, list) or not all(isinstance(e, dict) and "path" in e for e in data):
    raise ValueError(f"{path}: expected a list of entries with a 'path' (or {{'tubes': [...]}})")
  entries = []
  for n, entry in enumerate(data):
    labels = entry.get("label") or []
    labels = [labels] if isinstance(labels, str) else labels
    if not isinstance(entry["path"], str):
      raise ValueError(f"{path}: entry {n}: 'path' must be a string, got {entry['path']!r}")
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
      raise ValueError(f"{path}: entry {n} ({entry['path']}): 'label' must be a class name or a "
                       f"list of class names, got {entry.get('label')!r}")
    entries.append({**entry, "label": labels})
  return entries


class Builder(VideoPrepBuilder):
  """TinyVIRAT / TinyVIRAT-v2: natively tiny, multi-label action clips."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      TinyViratConfig(name="v2", release="v2", description="TinyVIRAT-v2 (train/val/test)."),
      TinyViratConfig(name="v1", release="v1", description="TinyVIRAT v1 (train/test)."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "v2"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Register for TinyVIRAT (https://www.crcv.ucf.edu/research/projects/tinyvirat/) or
  TinyVIRAT-v2 (https://www.crcv.ucf.edu/tiny-actions-challenge-cvpr2021/), and extract the
  archive into manual_dir: the annotation JSON files (and class_map.json) plus videos/<split>/.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    tensor, raw = tfds.features.Tensor, tfds.features.Encoding.BYTES
    features = {
        "video": tensor(shape=(None, None, None, 3), dtype=np.uint8, encoding=raw),
        "labels": tensor(shape=(cfg.num_classes,), dtype=np.uint8),
        "label_names": tfds.features.Sequence(tfds.features.Text()),
        "size": tensor(shape=(2,), dtype=np.int32),
        "num_frames": tensor(shape=(), dtype=np.int32),
        "tube_id": tfds.features.Text(),
        "video_id": tfds.features.Text(),
        "path": tfds.features.Text(),
        "id": tensor(shape=(), dtype=np.int32),
    }
    if cfg.scale > 1:
      features["lr"] = tensor(shape=(None, None, None, 3), dtype=np.uint8, encoding=raw)
    return tfds.core.DatasetInfo(builder=self, description=__doc__,
                                 features=tfds.features.FeaturesDict(features),
                                 metadata=tfds.core.MetadataDict())

  def _prep_spec(self) -> TinySpec:
    cfg = self.builder_config
    return TinySpec(cfg.scale, cfg.min_frames, cfg.max_frames)

  def _work_fn(self):
    return functools.partial(prepare_clip, self._prep_spec())

  def _root(self, manual_dir: str) -> str:
    first = ANNOTATIONS[self.builder_config.release]["train"]
    for sub in ROOTS:
      if os.path.exists(os.path.join(manual_dir, sub, first)):
        return os.path.join(manual_dir, sub)
    raise FileNotFoundError(
        f"{self.name}/{self.builder_config.name}: annotation file {first} not found: expected "
        f"it at {os.path.join(manual_dir, first)} (or in manual_dir/{{{','.join(ROOTS[1:])}}}/)")

  def _class_names(self, manual_dir: str, root: str) -> list[str]:
    path = os.path.join(root, "class_map.json")
    if not os.path.exists(path) and self.builder_config.release == "v1":
      names, path = list(CLASS_NAMES), "the built-in v2 class map"
    else:
      mapping = read_json(require_path(path, "class map class_map.json", self.name, manual_dir))
      try:
        order = {name: int(i) for name, i in mapping.items()}
      except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: expected {{class name: index}} ({e})") from None
      names = sorted(order, key=order.get)
      if sorted(order.values()) != list(range(len(names))):
        raise ValueError(f"{path}: class indices must be 0..{len(names) - 1}")
    if len(names) != self.builder_config.num_classes:
      raise ValueError(f"{self.name}: {path} lists {len(names)} class names, the config "
                       f"expects {self.builder_config.num_classes}")
    return names

  def _tasks(self, manual_dir: str):
    root = self._root(manual_dir)
    self._names = self._class_names(manual_dir, root)
    index = {name: i for i, name in enumerate(self._names)}
    tasks = {}
    for split, file in ANNOTATIONS[self.builder_config.release].items():
      path = require_path(os.path.join(root, file), f"annotation file {file}", self.name,
                          manual_dir)
      videos = os.path.join(root, "videos", split)
      tasks[split] = []
      for n, entry in enumerate(read_annotations(path)):
        labels = entry["label"]
        unknown = [name for name in labels if name not in index]
        if unknown:
          raise ValueError(f"{path}: entry {n} ({entry['path']}) has labels {unknown} that are not "
                           "among the class names (add the right class_map.json to manual_dir)")
        rel = entry["path"].replace("\\", "/")
        meta = {"labels": [index[name] for name in labels], "label_names": labels,
                "tube_id": str(entry.get("id", n)), "video_id": str(entry.get("video_id", "")),
                "path": rel}
        tasks[split].append(paths.video_task(manual_dir, os.path.join(videos, rel),
                                             key=f"{split}/{rel}", split=split, meta=meta))
    return tasks

  def _metadata(self) -> dict[str, Any]:
    return {"class_names": self._names}

  def _examples(self, task: Task, arrays: dict[str, np.ndarray]):
    video, meta = arrays["video"], task.meta
    labels = np.zeros(self.builder_config.num_classes, np.uint8)
    labels[meta["labels"]] = 1
    example = {
        "video": video, "labels": labels, "label_names": meta["label_names"],
        "size": np.asarray(video.shape[1:3], np.int32), "num_frames": np.int32(len(video)),
        "tube_id": meta["tube_id"], "video_id": meta["video_id"], "path": meta["path"]}
    if self.builder_config.scale > 1:
      example["lr"] = arrays["lr"]
    yield task.key, example
