"""`synthetic_actions`: the embedded, procedurally generated action data set.

Importing this package registers the TFDS builder, so that
`tfds.builder('synthetic_actions/small', data_dir=...)` and
`tfds.data_source('synthetic_actions/small', split='train', data_dir=...)` work.
`prepare()` builds a config if it is missing and returns its builder.
"""

from __future__ import annotations

import time

from absl import logging

import tfds_builders
from tfds_builders.synthetic_actions import generator
from tfds_builders.synthetic_actions.synthetic_actions_dataset_builder import Builder
from tfds_builders.synthetic_actions.synthetic_actions_dataset_builder import SyntheticActionsConfig

__all__ = ["Builder", "SyntheticActionsConfig", "generator", "prepare"]


def prepare(config_name: str = "default", data_dir: str | None = None) -> Builder:
  """Returns the builder of `synthetic_actions/<config_name>`, generating it if needed.

  Args:
    config_name: 'default' (128x128, 16 frames) or 'small' (64x64, 8 frames).
    data_dir: TFDS data directory; None means TFDS's default (~/tensorflow_datasets).
  """
  builder = Builder(config=config_name, data_dir=data_dir)
  if not builder.is_prepared():
    start = time.perf_counter()
    tfds_builders.progress_bars_on_terminal_only()
    builder.download_and_prepare()
    logging.info("synthetic_actions/%s: generated %s in %.1f s at %s", config_name,
                 {s: builder.info.splits[s].num_examples for s in builder.info.splits},
                 time.perf_counter() - start, builder.data_dir)
  return builder
