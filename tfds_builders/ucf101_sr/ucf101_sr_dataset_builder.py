"""TFDS builder of `ucf101_sr`: UCF101 videos from manual_dir, with bicubic LR (and flow).

See `tfds_builders.action_videos` for the features. Layout expected in manual_dir
(as extracted from UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip):

  UCF-101/<Class>/v_<Class>_gXX_cYY.avi
  ucfTrainTestlist/classInd.txt                 "1 ApplyEyeMakeup"
  ucfTrainTestlist/trainlist0{1,2,3}.txt        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
  ucfTrainTestlist/testlist0{1,2,3}.txt         "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

Labels come from the class folder of each listed video, numbered as in classInd.txt (0-based).
"""

from __future__ import annotations

import os

from tfds_builders import action_videos
from tfds_builders.video_builder import require_path

VIDEOS_DIR = "UCF-101"
LISTS_DIR = "ucfTrainTestlist"


class Builder(action_videos.ActionVideoBuilder):
  """UCF101 (101 classes, 13,320 videos) for action-recognition-oriented SR."""

  BUILDER_CONFIGS = action_videos.make_configs(101, 240, 320, "UCF101")
  DEFAULT_BUILDER_CONFIG_NAME = "split1"
  DATASET_DESCRIPTION = "UCF101 action videos (official splits) with bicubic LR."
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip from
  https://www.crcv.ucf.edu/data/UCF101.php and extract both into manual_dir, giving
  manual_dir/{VIDEOS_DIR}/<Class>/*.avi and manual_dir/{LISTS_DIR}/{{classInd,trainlist01,...}}.txt.
  """

  def _class_names(self, manual_dir: str) -> list[str]:
    path = require_path(os.path.join(manual_dir, LISTS_DIR, "classInd.txt"),
                        "class index classInd.txt", self.name, manual_dir)
    names = {}
    for line_no, text in action_videos.read_lines(path):
      parts = text.split()
      if len(parts) != 2 or not parts[0].isdigit():
        raise ValueError(f"{path}:{line_no}: expected '<index> <ClassName>', got {text!r}")
      names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
      raise ValueError(f"{path}: class indices must be 1..{len(names)}, got {sorted(names)}")
    return [names[i] for i in sorted(names)]

  def _tasks(self, manual_dir: str):
    n = self.builder_config.split_number
    videos = require_path(os.path.join(manual_dir, VIDEOS_DIR), f"video folder {VIDEOS_DIR}/",
                          self.name, manual_dir)
    splits = {}
    for split, file in (("train", f"trainlist0{n}.txt"), ("test", f"testlist0{n}.txt")):
      path = require_path(os.path.join(manual_dir, LISTS_DIR, file), f"split file {file}",
                          self.name, manual_dir)
      entries = []
      for line_no, text in action_videos.read_lines(path):
        rel = text.split()[0].replace("\\", "/")
        if "/" not in rel:
          raise ValueError(f"{path}:{line_no}: expected '<Class>/<video>.avi', got {text!r}")
        entries.append((rel, rel.split("/")[0]))
      splits[split] = entries
    return self._tasks_with_labels(manual_dir, splits, videos)
