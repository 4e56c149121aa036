"""Reading and writing videos with PyAV (FFmpeg).

``read_video`` / ``iter_frames`` decode the first video stream to RGB uint8
frames (H, W, 3). Problems are reported as exceptions that name the file:
``FileNotFoundError`` for a missing path, ``ValueError`` for an empty,
corrupt or stream-less file. ``write_video`` exists mainly to make test clips.
"""

from __future__ import annotations

import os
from typing import Iterator

import av
import numpy as np

__all__ = ["iter_frames", "read_video", "video_info", "write_video"]


def _open(path: str | os.PathLike):
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"video file not found: {path}")
  if os.path.isdir(path):
    raise ValueError(f"expected a video file, got a directory: {path}")
  if os.path.getsize(path) == 0:
    raise ValueError(f"video file is empty (0 bytes): {path}")
  try:
    container = av.open(path, mode="r")
  except (av.error.FFmpegError, UnicodeDecodeError) as e:
    raise ValueError(f"cannot open video {path}: not a readable video file ({e})") from e
  if not container.streams.video:
    container.close()
    raise ValueError(f"{path} contains no video stream")
  return path, container


def video_info(path: str | os.PathLike) -> dict:
  """{'frames': count from the header (0 if unknown), 'fps': float, 'height', 'width'}."""
  path, container = _open(path)
  with container:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.base_rate
    return {"frames": int(stream.frames or 0), "fps": float(rate) if rate else 0.0,
            "height": int(stream.codec_context.height), "width": int(stream.codec_context.width)}


def iter_frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
  """Yields the frames of the first video stream as uint8 RGB (H, W, 3), in order.

  Raises ``ValueError`` naming the file if it cannot be decoded or holds no
  frame at all (a decoding error after some frames also raises).
  """
  if max_frames is not None and max_frames < 1:
    raise ValueError(f"max_frames must be >= 1, got {max_frames}")
  path, container = _open(path)
  count = 0
  with container:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
      for frame in container.decode(stream):
        yield frame.to_ndarray(format="rgb24")
        count += 1
        if max_frames is not None and count >= max_frames:
          return
    except av.error.FFmpegError as e:
      raise ValueError(f"corrupt video {path}: decoding failed after {count} frames ({e})") from e
  if count == 0:
    raise ValueError(f"video {path} has no decodable frames (empty or corrupt)")


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
  """Decodes a whole video (or its first ``max_frames`` frames) to uint8 RGB (T, H, W, 3)."""
  return np.stack(list(iter_frames(path, max_frames)))


def write_video(path: str | os.PathLike, frames, fps: float = 25.0, *, lossless: bool = False) -> None:
  """Encodes uint8 RGB frames (T, H, W, 3) to ``path``.

  Args:
    path: output file; the container follows the extension (.mp4, .mkv, .avi).
    frames: (T, H, W, 3) uint8 (floats in [0, 1] are scaled and rounded).
    fps: frame rate.
    lossless: FFV1 in 8-bit RGB (bit-exact; use .mkv or .avi) instead of
      H.264 yuv420p (lossy, needs even H and W).
  """
  path = os.fspath(path)
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
    raise ValueError(f"write_video({path}): expected frames (T, H, W, 3) with T >= 1, got {frames.shape}")
  if frames.dtype != np.uint8:
    frames = np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)
  h, w = frames.shape[1:3]
  if not lossless and (h % 2 or w % 2):
    raise ValueError(f"write_video({path}): H.264 yuv420p needs even frame sizes, got {h}x{w}")
  with av.open(path, mode="w") as container:
    stream = container.add_stream("ffv1" if lossless else "libx264", rate=round(fps))
    stream.width, stream.height = w, h
    stream.pix_fmt = "bgr0" if lossless else "yuv420p"
    if not lossless:
      stream.options = {"crf": "12"}
    for image in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
