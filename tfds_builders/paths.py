"""Paths named by split lists, annotation files and folder listings: only manual_dir is read.

Every path a builder takes from the data (a video listed in a split or annotation
file, a file found in a folder) and every folder or index file it expects in
manual_dir goes through `resolve`: '..' is collapsed and symbolic links are
followed (manual_dir itself is resolved first, so manual_dir may be a link), and
the result must lie inside manual_dir.

* A video that leaves manual_dir ('..', an absolute path, a symbolic link to a
  file outside) becomes a refused `Task` (`video_task`): it is never opened,
  not cached, and is counted as skipped with the reason.
* A symbolic link inside manual_dir is followed when its target lies inside
  manual_dir too (the video is then cached under the target's path: two entries
  naming one file share one cache entry).
* An expected folder or index file that leaves manual_dir is an error naming it
  (`video_builder.require_path`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from tfds_builders.video_prep import Task


def resolve(manual_dir: str, path: str) -> tuple[str, str, str]:
  """(resolved path, its '/'-separated path relative to manual_dir, '') or ('', '', why not).

  `path` is manual_dir joined with what an index file names (an absolute name
  replaces manual_dir, and is refused unless it lies inside).
  """
  root = os.path.realpath(manual_dir)
  try:
    real = os.path.realpath(path)
  except (ValueError, OSError) as e:  # e.g. an embedded NUL byte
    return "", "", f"not a usable path ({e})"
  if os.path.commonpath([root, real]) != root:
    return "", "", (f"path leaves manual_dir: resolves to {real}, outside {root} ('..', an "
                    "absolute path or a symbolic link leads out; see tfds_builders/README.md)")
  return real, os.path.relpath(real, root).replace(os.sep, "/"), ""


def video_task(manual_dir: str, path: str, *, key: str, split: str,
               meta: Mapping[str, Any] | None = None) -> Task:
  """The Task of the listed video at `path`: resolved inside manual_dir, or refused (module doc)."""
  real, rel, why = resolve(manual_dir, path)
  return Task(key=key, path=real, split=split, meta=dict(meta or {}), source=rel, refused=why)
