"""`cdvl_sr`: natural-video SR clips chosen by moving area; importing this registers the builder."""

from __future__ import annotations

from tfds_builders.cdvl_sr.cdvl_sr_dataset_builder import Builder, CdvlConfig

__all__ = ["Builder", "CdvlConfig"]
