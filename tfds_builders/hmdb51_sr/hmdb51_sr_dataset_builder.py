"""TFDS builder of `hmdb51_sr`: HMDB51 videos from manual_dir, with bicubic LR (and flow).

See `tfds_builders.action_videos` for the features. Layout expected in manual_dir
(hmdb51_org.rar with its per-class .rar files extracted, and test_train_splits.rar):

  hmdb51/<class>/<video>.avi
  testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt   "<video>.avi <0|1|2>"

In the split files 1 = train, 2 = test, 0 = not used. The 51 classes are the
sorted class names of the split files (label = index in that order).
"""

from __future__ import annotations

import os
import re

from tfds_builders import action_videos
from tfds_builders.video_builder import require_path

VIDEOS_DIR = "hmdb51"
SPLITS_DIR = "testTrainMulti_7030_splits"
_SPLIT_FILE = re.compile(r"^(.+)_test_split([123])\.txt$")


class Builder(action_videos.ActionVideoBuilder):
  """HMDB51 (51 classes, 6,766 videos) for action-recognition-oriented SR."""

  BUILDER_CONFIGS = action_videos.make_configs(51, 256, 340, "HMDB51")
  DEFAULT_BUILDER_CONFIG_NAME = "split1"
  DATASET_DESCRIPTION = "HMDB51 action videos (official 70/30 splits) with bicubic LR."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download hmdb51_org.rar and test_train_splits.rar from
  https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/ and extract
  them (and the per-class .rar files inside) into manual_dir, giving
  manual_dir/{VIDEOS_DIR}/<class>/*.avi and manual_dir/{SPLITS_DIR}/<class>_test_split1.txt.
  """

  def _class_names(self, manual_dir: str) -> list[str]:
    folder = require_path(os.path.join(manual_dir, SPLITS_DIR), f"split folder {SPLITS_DIR}/",
                          self.name, manual_dir)
    names = sorted({m.group(1) for f in os.listdir(folder) if (m := _SPLIT_FILE.match(f))})
    if not names:
      raise FileNotFoundError(
          f"{self.name}: no split files <class>_test_split<1|2|3>.txt in {folder}")
    return names

  def _tasks(self, manual_dir: str):
    n = self.builder_config.split_number
    videos = require_path(os.path.join(manual_dir, VIDEOS_DIR), f"video folder {VIDEOS_DIR}/",
                          self.name, manual_dir)
    splits = {"train": [], "test": []}
    for name in self._class_names(manual_dir):
      file = f"{name}_test_split{n}.txt"
      path = require_path(os.path.join(manual_dir, SPLITS_DIR, file), f"split file {file}",
                          self.name, manual_dir)
      for line_no, text in action_videos.read_lines(path):
        parts = text.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
          raise ValueError(f"{path}:{line_no}: expected '<video>.avi <0|1|2>', got {text!r}")
        if parts[1] != "0":
          splits["train" if parts[1] == "1" else "test"].append((f"{name}/{parts[0]}", name))
    return self._tasks_with_labels(manual_dir, splits, videos)
