"""The project's TFDS builders; `load(name)` imports (and so registers) the one a name needs.

  synthetic_actions  procedural clips, generated on the fly
  cdvl_sr            natural videos from manual_dir: clips chosen by moving area
  ucf101_sr          UCF101 official splits from manual_dir
  hmdb51_sr          HMDB51 official splits from manual_dir
  tiny_virat         TinyVIRAT v1 / v2 from manual_dir

Prepare the manual ones with `python -m tfds_builders.prepare` (see README.md).
"""

from __future__ import annotations

import difflib
import importlib
import sys

import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import gcs_utils

# TFDS looks for precomputed metadata of every dataset it has not prepared yet on gs://tfds-data.
# The project's datasets are never there, and offline (compute nodes) with some gcsfs versions
# (2024.2, constraints/lowest.txt) the failed lookup imports TensorFlow and crashes.
gcs_utils._is_gcs_disabled = True  # pylint: disable=protected-access

BUILDERS = ("synthetic_actions", "cdvl_sr", "ucf101_sr", "hmdb51_sr", "tiny_virat")


def progress_bars_on_terminal_only() -> None:
  """TFDS's tqdm bars only when stderr is a terminal: redirected to a file they leave escape codes
  and one line per refresh. The project's own lines (what is generated where, in how long) stay."""
  tfds.display_progress_bar(sys.stderr.isatty())


def load(name: str) -> None:
  """Registers the builder of 'dataset[/config]' if it is one of `BUILDERS` (else a no-op)."""
  dataset = name.split("/")[0].split(":")[0]
  if dataset in BUILDERS:
    importlib.import_module(f"tfds_builders.{dataset}")


def check_name(name: str) -> None:
  """Raises ValueError (one line naming the known ones) for an unknown config of a project dataset.

  Names of other TFDS datasets are left to TFDS. Checked before any builder is made, so a
  misspelled name leaves no empty dataset folder behind.
  """
  dataset, _, config = name.split(":")[0].partition("/")
  if dataset not in BUILDERS:
    return
  load(dataset)
  configs = [c.name for c in tfds.builder_cls(dataset).BUILDER_CONFIGS]
  if config and configs and config not in configs:
    close = difflib.get_close_matches(config, configs, n=1)
    raise ValueError(f"Unknown dataset config {name!r}: {dataset} has {', '.join(configs)}"
                     + (f" (did you mean {dataset}/{close[0]}?)" if close else ""))
