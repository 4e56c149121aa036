"""The project's TFDS builders; `load(name)` imports (and so registers) the one a name needs.

  synthetic_actions  procedural clips, generated on the fly
  cdvl_sr            natural videos from manual_dir: clips chosen by moving area
  ucf101_sr          UCF101 official splits from manual_dir
  hmdb51_sr          HMDB51 official splits from manual_dir
  tiny_virat         TinyVIRAT v1 / v2 from manual_dir

Prepare the manual ones with `python -m tfds_builders.prepare` (see README.md).
"""

from __future__ import annotations

import importlib

BUILDERS = ("synthetic_actions", "cdvl_sr", "ucf101_sr", "hmdb51_sr", "tiny_virat")


def load(name: str) -> None:
  """Registers the builder of 'dataset[/config]' if it is one of `BUILDERS` (else a no-op)."""
  dataset = name.split("/")[0].split(":")[0]
  if dataset in BUILDERS:
    importlib.import_module(f"tfds_builders.{dataset}")
