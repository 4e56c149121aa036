"""TV-L1 parameters (OpenCV ``DualTVL1OpticalFlow``'s defaults) and the pyramid they give a frame size."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

MIN_LEVEL_SIZE = 16  # OpenCV stops the pyramid before a level below 16 px.
STORAGE_DTYPES = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class TVL1Params:
  """TV-L1 parameters; defaults are OpenCV ``DualTVL1OpticalFlow``'s.

  Attributes:
    tau: primal-dual time step (< 0.25 for stability).
    lambda_: weight of the L1 data term (smaller = smoother flow).
    theta: coupling between the TV and data sub-problems.
    nscales: number of pyramid levels (fewer are used for small frames).
    warps: re-linearisations (image warps) per scale.
    epsilon: stopping threshold; a warp stops once the summed squared update
      of the flow (pixels^2) is <= epsilon^2 * H * W at that scale.
    inner_iterations: primal-dual steps between two median filterings.
    outer_iterations: median filterings per warp.
    scale_step: pyramid down-scaling factor in (0, 1).
    gamma: weight of the illumination-change term (0 = off, as in OpenCV).
    median_filtering: median window applied to the flow, 1 (off), 3 or 5.
    storage: dtype of the dual variable p and the linearised data term (I1x,
      I1y, rho_c) between primal-dual steps, 'float32' (OpenCV's) or
      'float16' (fewer bytes per step; the arithmetic and the flow stay
      float32). Not an OpenCV parameter.
  """
  tau: float = 0.25
  lambda_: float = 0.15
  theta: float = 0.3
  nscales: int = 5
  warps: int = 5
  epsilon: float = 0.01
  inner_iterations: int = 30
  outer_iterations: int = 10
  scale_step: float = 0.8
  gamma: float = 0.0
  median_filtering: int = 5
  storage: str = "float32"

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.type == "int" and int(value) != value:
        raise ValueError(f"TVL1Params: {field.name} must be an integer, got {value!r}")
      if field.type in ("int", "float"):
        object.__setattr__(self, field.name, int(value) if field.type == "int" else float(value))
    rules = [(self.tau > 0 and self.lambda_ > 0 and self.theta > 0, "tau, lambda, theta > 0"),
             (min(self.nscales, self.warps, self.inner_iterations, self.outer_iterations) >= 1,
              "nscales, warps, inner/outer iterations >= 1"),
             (self.epsilon >= 0 and self.gamma >= 0, "epsilon, gamma >= 0"),
             (0 < self.scale_step < 1, "0 < scale_step < 1"),
             (self.median_filtering in (0, 1, 3, 5), "median_filtering in {0, 1, 3, 5}"),
             (self.storage in STORAGE_DTYPES, f"storage in {STORAGE_DTYPES}")]
    broken = [rule for ok, rule in rules if not ok]
    if broken:
      raise ValueError(f"TVL1Params: need {'; '.join(broken)}; got {self}")

  @classmethod
  def from_config(cls, config: Mapping[str, Any] | Any) -> "TVL1Params":
    """Builds params from a dict or ``ml_collections.ConfigDict``.

    Keys are the field names; ``lambda`` is accepted for ``lambda_``. Unknown
    keys raise ``ValueError`` (a typo must not silently fall back to a default).
    """
    items = dict(config.items()) if hasattr(config, "items") else dict(config)
    if "lambda" in items:
      if "lambda_" in items:
        raise ValueError("TVL1Params.from_config: give 'lambda' or 'lambda_', not both")
      items["lambda_"] = items.pop("lambda")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(items) - known)
    if unknown:
      raise ValueError(f"TVL1Params.from_config: unknown keys {unknown}; known keys are "
                       f"{sorted(known | {'lambda'})}")
    return cls(**items)


def pyramid_shapes(height: int, width: int, params: TVL1Params = TVL1Params()) -> list[tuple[int, int]]:
  """(H, W) of each pyramid level used for a frame size, finest first.

  Like OpenCV, each level is ``round(previous * scale_step)`` and levels
  smaller than 16 px in either dimension are dropped. Raises ``ValueError`` if
  the frame itself is smaller than that minimum.
  """
  if height < MIN_LEVEL_SIZE or width < MIN_LEVEL_SIZE:
    raise ValueError(f"TV-L1 needs frames of at least {MIN_LEVEL_SIZE}x{MIN_LEVEL_SIZE} pixels "
                     f"(the smallest pyramid level OpenCV allows); got {height}x{width}")
  shapes = [(height, width)]
  for _ in range(1, params.nscales):
    h, w = shapes[-1]
    h, w = int(np.rint(h * params.scale_step)), int(np.rint(w * params.scale_step))
    if h < MIN_LEVEL_SIZE or w < MIN_LEVEL_SIZE:
      break
    shapes.append((h, w))
  return shapes
