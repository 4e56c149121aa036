"""`ucf101_sr`: UCF101 with bicubic LR; importing this package registers the TFDS builder."""

from __future__ import annotations

from tfds_builders.ucf101_sr.ucf101_sr_dataset_builder import Builder

__all__ = ["Builder"]
