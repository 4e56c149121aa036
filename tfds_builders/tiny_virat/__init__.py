"""`tiny_virat`: TinyVIRAT v1 / v2 tiny action clips; importing this registers the builder."""

from __future__ import annotations

from tfds_builders.tiny_virat.tiny_virat_dataset_builder import Builder, TinyViratConfig

__all__ = ["Builder", "TinyViratConfig"]
