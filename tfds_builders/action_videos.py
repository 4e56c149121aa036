"""Shared parts of `ucf101_sr` and `hmdb51_sr`: whole labelled action videos at a fixed HR size.

One example per video of the official split lists:

  hr          uint8   (T, H, W, 3)      every frame (or every `frame_step`-th, at most
                                        `max_frames`), resized (PIL bicubic) to H x W
  lr          uint8   (T, H/s, W/s, 3)  `arsr_jax.media.degrade.bicubic_downsample(hr, s)`
  flow        float16 (T-1, H, W, 2)    only with `flow=True`: TV-L1 forward flow t -> t+1
                                        in HR pixels, (u, v); zlib
  label       int64   ()                ClassLabel, names from the official class index
  video       text                      path relative to the videos folder
  num_frames  int32   ()                T
  id          int32   ()                index in the split, in split-file order

H and W are the configured size rounded to multiples of lcm(2, s) (so e.g.
HMDB51's 340 px width becomes 336 px at 8x). Videos shorter than `min_frames`
(after `frame_step`), unreadable or missing are skipped and counted (see
`video_builder`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from arsr_jax.flow.tvl1 import TVL1Params
from tfds_builders import paths, video_prep
from tfds_builders.video_builder import VideoPrepBuilder
from tfds_builders.video_prep import Task


@dataclasses.dataclass
class ActionVideoConfig(tfds.core.BuilderConfig):
  """One official split at one HR size and scale.

  split_number: official split (1, 2 or 3).
  frame_height, frame_width: HR frame size in pixels (rounded to multiples of lcm(2, scale)).
  scale: HR / LR size ratio.
  min_frames: videos with fewer (kept) frames are skipped.
  max_frames: keep at most this many frames per video (0: all).
  frame_step: keep every `frame_step`-th frame.
  flow: store TV-L1 flow (large: 4 bytes per HR pixel and frame pair).
  tvl1: TV-L1 parameters when `flow` is on.
  num_classes: number of classes in the official class index.
  """
  split_number: int = 1
  frame_height: int = 240
  frame_width: int = 320
  scale: int = 4
  min_frames: int = 16
  max_frames: int = 0
  frame_step: int = 1
  flow: bool = False
  tvl1: TVL1Params = TVL1Params()
  num_classes: int = 101

  @property
  def hr_size(self) -> tuple[int, int]:
    multiple = math.lcm(2, self.scale)
    return (video_prep.round_to(self.frame_height, multiple),
            video_prep.round_to(self.frame_width, multiple))


def make_configs(num_classes: int, height: int, width: int,
                 dataset: str) -> list[ActionVideoConfig]:
  """split{1,2,3} (4x), split{1,2,3}_x8 and split1_flow (4x with TV-L1 flow)."""
  configs = []
  for n in (1, 2, 3):
    for scale, suffix in ((4, ""), (8, "_x8")):
      configs.append(ActionVideoConfig(
          name=f"split{n}{suffix}", split_number=n, scale=scale, frame_height=height,
          frame_width=width, num_classes=num_classes,
          description=f"{dataset} official split {n}, {width}x{height} HR, {scale}x bicubic LR."))
  configs.append(ActionVideoConfig(
      name="split1_flow", split_number=1, scale=4, frame_height=height, frame_width=width,
      num_classes=num_classes, flow=True,
      description=f"{dataset} official split 1, {width}x{height} HR, 4x LR, TV-L1 flow."))
  return configs


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """What changes a video's arrays (the cache identity; splits share it)."""
  height: int
  width: int
  scale: int
  min_frames: int
  max_frames: int
  frame_step: int
  flow: bool
  tvl1: TVL1Params | None


def prepare_video(spec: ClipSpec, task: Task) -> dict[str, np.ndarray]:
  """Worker: decode, resize to the HR size, bicubic LR. Raises SkipVideo."""
  hr = video_prep.decode(task.path, size=(spec.height, spec.width),
                         max_frames=spec.max_frames, frame_step=spec.frame_step)
  video_prep.require_frames(hr, max(spec.min_frames, 2 if spec.flow else 1))
  return {"hr": hr, "lr": video_prep.bicubic_lr(hr, spec.scale)}


class ActionVideoBuilder(VideoPrepBuilder, skip_registration=True):
  """UCF101 / HMDB51 style builders; subclasses parse the official split files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  DATASET_DESCRIPTION = ""

  def _class_names(self, manual_dir: str) -> list[str]:
    raise NotImplementedError

  def _prep_spec(self) -> ClipSpec:
    cfg = self.builder_config
    return ClipSpec(*cfg.hr_size, cfg.scale, cfg.min_frames, cfg.max_frames, cfg.frame_step,
                    cfg.flow, cfg.tvl1 if cfg.flow else None)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    (h, w), s = cfg.hr_size, cfg.scale
    raw, zlib = tfds.features.Encoding.BYTES, tfds.features.Encoding.ZLIB
    tensor = tfds.features.Tensor
    features = {
        "hr": tensor(shape=(None, h, w, 3), dtype=np.uint8, encoding=raw),
        "lr": tensor(shape=(None, h // s, w // s, 3), dtype=np.uint8, encoding=raw),
        "label": tfds.features.ClassLabel(num_classes=cfg.num_classes),
        "video": tfds.features.Text(),
        "num_frames": tensor(shape=(), dtype=np.int32),
        "id": tensor(shape=(), dtype=np.int32),
    }
    if cfg.flow:
      features["flow"] = tensor(shape=(None, h, w, 2), dtype=np.float16, encoding=zlib)
    return tfds.core.DatasetInfo(
        builder=self, description=self.DATASET_DESCRIPTION + "\n" + __doc__,
        features=tfds.features.FeaturesDict(features), metadata=tfds.core.MetadataDict())

  def _tasks_with_labels(self, manual_dir: str, splits: dict[str, list[tuple[str, str]]],
                         videos_dir: str) -> dict[str, list[Task]]:
    """Tasks from {split: [(video path relative to `videos_dir`, class name)]}; sets the ClassLabel
    names. Entries resolving outside manual_dir are refused (see `paths`)."""
    names = self._class_names(manual_dir)
    if len(names) != self.builder_config.num_classes:
      raise ValueError(f"{self.name}: the class index lists {len(names)} classes, the config "
                       f"{self.builder_config.name!r} expects {self.builder_config.num_classes}")
    self.info.features["label"].names = names
    index = {name: i for i, name in enumerate(names)}
    resolve = _CaseInsensitive(videos_dir)
    tasks = {}
    for split, entries in splits.items():
      tasks[split] = []
      for rel, class_name in entries:
        if class_name not in index:
          raise ValueError(f"{self.name}: video {rel} of split {split!r} has class "
                           f"{class_name!r}, which is not in the class index")
        tasks[split].append(paths.video_task(manual_dir, resolve(rel), key=rel, split=split,
                                             meta={"label": index[class_name]}))
    return tasks

  def _work_fn(self):
    return functools.partial(prepare_video, self._prep_spec())

  def _post(self, task: Task, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if self.builder_config.flow:
      hr = arrays["hr"]
      arrays["flow"] = video_prep.flow_pairs(hr[:-1], hr[1:], self.builder_config.tvl1
                                             ).astype(np.float16)
    return arrays

  def _examples(self, task: Task, arrays: dict[str, np.ndarray]):
    example: dict[str, Any] = {
        "hr": arrays["hr"], "lr": arrays["lr"], "label": task.meta["label"], "video": task.key,
        "num_frames": np.int32(len(arrays["hr"]))}
    if self.builder_config.flow:
      example["flow"] = arrays["flow"]
    yield task.key, example


class _CaseInsensitive:
  """Resolves relative paths under `root`, falling back to a case-insensitive match.

  UCF101's lists spell some names differently from the files (HandStandPushups /
  HandstandPushups); a path that matches nothing is returned as is (and skipped later).
  Folders linked into `root` are not walked; whether a path stays inside manual_dir is
  checked afterwards (`paths.video_task`).
  """

  def __init__(self, root: str):
    self.root, self._index = root, None

  def __call__(self, rel: str) -> str:
    path = os.path.join(self.root, rel)
    if os.path.exists(path):
      return path
    if self._index is None:
      self._index = {}
      for folder, _, files in os.walk(self.root):
        for file in files:
          full = os.path.join(folder, file)
          self._index[os.path.relpath(full, self.root).replace(os.sep, "/").lower()] = full
    return self._index.get(rel.replace("\\", "/").lower(), path)


def read_lines(path: str) -> list[tuple[int, str]]:
  """(line number, stripped text) of the non-empty lines of a text file."""
  with open(path, encoding="utf-8", errors="replace") as f:
    return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
