"""`hmdb51_sr`: HMDB51 with bicubic LR; importing this package registers the TFDS builder."""

from __future__ import annotations

from tfds_builders.hmdb51_sr.hmdb51_sr_dataset_builder import Builder

__all__ = ["Builder"]
