"""Temporal profiles of SR clips: one image row followed over time, per method (flicker made visible).

``temporal_profiles`` stacks several clips' profiles in one image; ``draw_profiles``
renders HR, bicubic and each SR network for the first videos of a split into
labelled panels (``plots/profile_<i>.png`` and TensorBoard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from arsr_jax import fileio
from arsr_jax.data import pipeline
from arsr_jax.evaluation import plots
from arsr_jax.flow import vis
from arsr_jax.steps import protocol as protocol_steps
from arsr_jax.writers import EventWriter


def temporal_profiles(clips: Mapping[str, np.ndarray], row: int, *, gap: int = 4,
                      vertical: bool = False, background: int = 255) -> np.ndarray:
  """Several methods' temporal profiles (``flow.vis.temporal_profile``) in one uint8 image.

  Args:
    clips: name -> (T, H, W, 3) clip, uint8 or float in [0, 1]; stacked in the
      mapping's order (names are not drawn; see ``plots.image_grid`` for captions).
    row: the image row, in each clip's own coordinates.
    gap: pixels of ``background`` between profiles.
    vertical: stack top to bottom instead of left to right.

  Returns:
    (T, sum of W + gaps, 3) uint8 (or (sum of T + gaps, W, 3) when vertical);
    profiles of different sizes are padded with ``background`` at the end.
  """
  if not clips:
    raise ValueError("temporal_profiles: no clips")
  profiles = [plots.to_uint8(vis.temporal_profile(clip, row)) for clip in clips.values()]
  axis = 0 if vertical else 1
  across = max(p.shape[1 - axis] for p in profiles)
  parts = []
  for i, p in enumerate(profiles):
    pad = [(0, 0), (0, 0), (0, 0)]
    pad[1 - axis] = (0, across - p.shape[1 - axis])
    parts.append(np.pad(p, pad, constant_values=background))
    if i < len(profiles) - 1 and gap:
      shape = [0, 0, 3]
      shape[axis], shape[1 - axis] = gap, across
      parts.append(np.full(shape, background, np.uint8))
  return np.concatenate(parts, axis=axis)


def draw_profiles(workdir: fileio.PathLike, source, methods: dict[str, Any], count: int,
                  writer: EventWriter | None = None) -> list[fileio.epath.Path]:
  """Temporal profiles (the middle row over time) of the first ``count`` videos with HR frames.

  ``methods``: name -> 'bicubic' or a FrozenSR (frame or K-window model). One
  labelled panel per method (HR first): time runs down, x runs right, enlarged 4x.
  Returns the PNG paths written under ``workdir/plots``.
  """
  # Jitted once per method (not per video): same-size videos reuse the compiled function.
  run = {name: jax.jit(lambda a, b, sr=sr: protocol_steps.super_resolve(sr, a, b)) for name, sr in methods.items()}
  paths = []
  for i in range(min(count, len(source))):
    example = source[i]
    if "hr" not in example or example["hr"].shape[0] < 2:  # natively small video: no HR to compare
      continue
    row, t = example["hr"].shape[1] // 2, example["hr"].shape[0]
    clips = {"hr": example["hr"]}
    for name, sr in methods.items():
      lr = example["lr"][pipeline.lr_window(t, np.arange(t), protocol_steps.input_frames(sr))]
      clips[name] = np.asarray(run[name](lr, example["hr"]))
    panels = [np.repeat(np.repeat(temporal_profiles({k: v}, row), 4, 0), 4, 1) for k, v in clips.items()]
    image = plots.image_grid(panels, list(clips), columns=len(panels))
    paths.append(fileio.write_bytes(fileio.path(workdir) / "plots" / f"profile_{i}.png", plots.encode_png(image)))
    if writer is not None:
      writer.images(0, {f"plots/profile_{i}": np.asarray(image)[None]})
  if writer is not None:
    writer.flush()
  return paths
