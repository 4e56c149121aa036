"""Reading and writing videos with PyAV (FFmpeg).

``read_video`` / ``iter_frames`` decode the first video stream to RGB uint8
frames (H, W, 3). Problems are reported as exceptions that name the file:
``FileNotFoundError`` for a missing path, ``ValueError`` for an empty,
corrupt or stream-less file. ``write_video`` exists mainly to make test clips;
``VideoEncoder`` streams frames into an H.264 file and copies a source's audio.
"""

from __future__ import annotations

import fractions
import os
from typing import Iterator

import av
import numpy as np

__all__ = ["VideoEncoder", "count_frames", "frame_properties", "iter_frames", "read_video", "time_base", "to_rgb",
           "upright", "video_info", "write_video"]
COLOR_TAGS = ("color_primaries", "color_trc", "colorspace", "color_range")  # VideoFrame / codec context names
# YUV -> RGB with exact rounding and chroma interpolated to full width: libswscale's default unscaled
# 4:2:0 -> RGB path darkens frames by about 1 level of 255 on average (measured: mean RGB -1.0, -1.1,
# -1.0 on a Kinetics clip; with these flags -0.2, +0.1, -0.1, as a float reference conversion).
try:
  from av.video.reformatter import Interpolation as _Interpolation
  TO_RGB = _Interpolation.BILINEAR | _Interpolation.ACCURATE_RND | _Interpolation.FULL_CHR_H_INT
except (ImportError, AttributeError, TypeError):  # older PyAV without swscale flags
  TO_RGB = None


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
  """{'frames': count from the header (0 if unknown), 'fps': float, 'rate': Fraction (0 if unknown),
  'duration': seconds (0.0 if unknown), 'height', 'width', 'audio': first audio codec name or None}."""
  path, container = _open(path)
  with container:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.base_rate
    if stream.duration is not None and stream.time_base:
      duration = float(stream.duration * stream.time_base)
    else:
      duration = container.duration / av.time_base if container.duration else 0.0
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    return {"frames": int(stream.frames or 0), "fps": float(rate) if rate else 0.0,
            "rate": fractions.Fraction(rate) if rate else fractions.Fraction(0), "duration": duration,
            "height": int(stream.codec_context.height), "width": int(stream.codec_context.width), "audio": audio}


def time_base(path: str | os.PathLike) -> fractions.Fraction | None:
  """The time base (seconds per timestamp unit) of the first video stream, None if it states none."""
  path, container = _open(path)
  with container:
    tb = container.streams.video[0].time_base
    return fractions.Fraction(tb) if tb else None


def count_frames(path: str | os.PathLike, info: dict | None = None) -> int:
  """Frames of the first video stream: the header's count, else duration x rate, else the number of
  its packets (demuxed, not decoded: raw MPEG-4 streams, e.g. UCF101 clips, state neither)."""
  info = info or video_info(path)
  if info["frames"] or (info["duration"] and info["fps"]):
    return info["frames"] or int(round(info["duration"] * info["fps"]))
  path, container = _open(path)
  with container:
    try:
      return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
    except av.error.FFmpegError as e:
      raise ValueError(f"corrupt video {path}: demuxing failed ({e})") from e


def frame_properties(path: str | os.PathLike) -> dict:
  """What the first decoded frame says beyond its pixels: {'display_matrix': 9 ints (FFmpeg's
  AV_PKT_DATA_DISPLAYMATRIX) or None, 'rotation': degrees counter-clockwise (0 if none),
  'color': {COLOR_TAGS name: int} (FFmpeg's AVCOL_* values), 'pix_fmt', 'bits': bits per sample}."""
  path, container = _open(path)
  with container:
    try:
      frame = next(container.decode(container.streams.video[0]), None)
    except av.error.FFmpegError as e:
      raise ValueError(f"corrupt video {path}: decoding failed ({e})") from e
  if frame is None:
    raise ValueError(f"video {path} has no decodable frames (empty or corrupt)")
  matrix = None
  # PyAV >= 18.1.1 maps type -> data; older releases yield the entries themselves.
  side_data = frame.side_data.values() if hasattr(frame.side_data, "values") else frame.side_data
  for data in side_data:
    if str(data.type).endswith("DISPLAYMATRIX"):
      matrix = [int(v) for v in np.frombuffer(bytes(data), np.int32)]
  return {"display_matrix": matrix, "rotation": int(frame.rotation or 0) if matrix else 0,
          "color": {k: int(getattr(frame, k)) for k in COLOR_TAGS}, "pix_fmt": frame.format.name,
          "bits": max(c.bits for c in frame.format.components)}


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
  """(H, W, C) frame as displayed under a display matrix of ``rotation`` degrees counter-clockwise."""
  return np.rot90(frame, k=round(rotation / 90) % 4) if rotation else frame


def iter_frames(path: str | os.PathLike, max_frames: int | None = None, *, times: bool = False
                ) -> Iterator[np.ndarray]:
  """Yields the frames of the first video stream as uint8 RGB (H, W, 3), in order (with ``times``:
  (frame, presentation time in seconds as a Fraction, or None where the file states none)).

  YUV is converted with the matrix and range the stream states. Raises ``ValueError`` naming the
  file if it cannot be decoded or holds no frame at all (a decoding error after some frames also raises).
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
        rgb = to_rgb(frame)
        if times:
          yield rgb, (None if frame.pts is None else fractions.Fraction(frame.pts) * frame.time_base)
        else:
          yield rgb
        count += 1
        if max_frames is not None and count >= max_frames:
          return
    except av.error.FFmpegError as e:
      raise ValueError(f"corrupt video {path}: decoding failed after {count} frames ({e})") from e
  if count == 0:
    raise ValueError(f"video {path} has no decodable frames (empty or corrupt)")


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
  """uint8 RGB (H, W, 3) of a decoded frame, converted with the matrix and range it states (TO_RGB)."""
  return frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None, interpolation=TO_RGB)


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


class VideoEncoder:
  """Streams uint8 RGB frames (H, W, 3) into a video file at ``rate`` frames/s (default H.264, yuv420p).

  With ``audio_from``, the first audio stream of that file is copied (packets unchanged, or
  re-encoded to AAC when the output container cannot hold its codec), interleaved with the video
  and cut where the video ends. Use as a context manager; ``close`` flushes the encoders.

  Args:
    path: output file; the container follows the extension (.mp4, .mkv, .mov).
    rate: frame rate (a Fraction keeps NTSC rates such as 30000/1001 exact).
    width, height: frame size in pixels; both must be even for yuv420p.
    crf: x264/x265 constant rate factor (0 lossless .. 51 worst; 18 is visually near-lossless); None
      for the encoder's default (FFV1 is lossless and takes none).
    codec: 'libx264', 'libx265' or 'ffv1' (lossless; .mkv); pix_fmt: 'yuv420p' or 'yuv444p'.
    preset: x264/x265 speed preset ('ultrafast' .. 'veryslow'), None for the encoder's default.
    audio_from: a media file whose first audio stream is copied (nothing if it has none).
    time_base: units of the times given to ``write`` (default 1 / rate; a source's time base keeps
      its timestamps, variable frame rates included).
    color: {COLOR_TAGS name: int} of the source (``frame_properties``): RGB is converted to YUV with
      its matrix and range, and all four are tagged in the stream (unspecified ones are left out).
    display_matrix: 9 ints (``frame_properties``) written as the stream's display matrix (rotation).
  """

  def __init__(self, path: str | os.PathLike, rate, width: int, height: int, *, crf: int | None = 18,
               audio_from: str | os.PathLike | None = None, time_base=None, color: dict | None = None,
               display_matrix=None, codec: str = "libx264", pix_fmt: str = "yuv420p", preset: str | None = None):
    self.path = os.fspath(path)
    if pix_fmt == "yuv420p" and (width % 2 or height % 2):
      raise ValueError(f"VideoEncoder({self.path}): yuv420p needs even frame sizes, got {height}x{width}")
    self.pix_fmt = pix_fmt
    self.rate = fractions.Fraction(rate).limit_denominator(1_000_000)
    if self.rate <= 0:
      raise ValueError(f"VideoEncoder({self.path}): frame rate must be positive, got {rate}")
    self.time_base = fractions.Fraction(time_base) if time_base else 1 / self.rate
    self.width, self.height, self.frames, self._pts = width, height, 0, -1
    self._color = {k: v for k, v in (color or {}).items()  # 0 / 2: unknown / AVCOL_{PRI,TRC,SPC}_UNSPECIFIED
                   if v and (k == "color_range" or v != 2)}
    self._container = av.open(self.path, mode="w")
    self._video = self._container.add_stream(codec, rate=self.rate)
    self._video.width, self._video.height, self._video.pix_fmt = width, height, pix_fmt
    self._video.time_base = self.time_base
    self._video.codec_context.time_base = self.time_base
    for name, value in self._color.items():
      setattr(self._video.codec_context, name, value)
    if display_matrix is not None:
      self._video.set_display_matrix(list(display_matrix))
    options = {"crf": str(crf)} if crf is not None else {}
    if preset:
      options["preset"] = preset
    if codec == "libx265":
      options["x265-params"] = "log-level=error"  # x265 prints its settings to stderr otherwise
    self._video.options = options
    self._audio = _AudioCopy(audio_from, self._container) if audio_from is not None else None

  def write(self, frame: np.ndarray, time=None) -> None:
    """Appends one uint8 RGB frame (height, width, 3), presented at ``time`` (in ``time_base`` units
    if an int, seconds if a Fraction/float; default: frame number / rate; kept increasing)."""
    if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
      raise ValueError(f"VideoEncoder({self.path}): expected uint8 frames ({self.height}, {self.width}, 3), "
                       f"got {frame.dtype} {frame.shape}")
    if time is None:
      pts = round(fractions.Fraction(self.frames) / self.rate / self.time_base)
    else:
      pts = time if isinstance(time, int) else round(fractions.Fraction(time) / self.time_base)
    self._pts = max(pts, self._pts + 1)
    video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    if self._color:
      video_frame = video_frame.reformat(
          format=self.pix_fmt, dst_colorspace=self._color.get("colorspace"),
          dst_color_range=self._color.get("color_range"), interpolation="BICUBIC")
      for name, value in self._color.items():
        setattr(video_frame, name, value)
    video_frame.pts = self._pts
    video_frame.time_base = self.time_base
    for packet in self._video.encode(video_frame):
      self._container.mux(packet)
    self.frames += 1
    if self._audio is not None:
      self._audio.mux_until(self._pts * self.time_base + 1 / self.rate)

  def close(self) -> None:
    """Flushes the encoders and closes the file (idempotent)."""
    if self._container is None:
      return
    try:
      for packet in self._video.encode():
        self._container.mux(packet)
      if self._audio is not None:
        self._audio.mux_until(self._pts * self.time_base + 1 / self.rate if self.frames else 0)
        self._audio.finish()
    finally:
      self._container.close()
      self._container = None

  def __enter__(self) -> VideoEncoder:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    elif self._container is not None:  # failed: release the file without flushing (caller deletes it)
      if self._audio is not None:
        self._audio.finish(flush=False)
      self._container.close()
      self._container = None


class _AudioCopy:
  """The first audio stream of ``source``, muxed into ``container`` up to a time (seconds).

  Timestamps are shifted by the source video stream's start time, so audio stays in sync with
  video frames numbered from 0.
  """

  def __init__(self, source: str | os.PathLike, container):
    self.source, self._container, self._out = os.fspath(source), container, None
    self._input = av.open(self.source, mode="r")
    if not self._input.streams.audio:
      self._input.close()
      self._input = None
      return
    stream = self._input.streams.audio[0]
    video = self._input.streams.video[0] if self._input.streams.video else None
    start = video.start_time * video.time_base if video is not None and video.start_time else 0
    self._offset = fractions.Fraction(start)
    self._copy = stream.codec_context.name in container.supported_codecs
    if self._copy:
      self._out = container.add_stream_from_template(stream)
    else:  # e.g. PCM into .mp4: re-encode
      self._out = container.add_stream("aac", rate=stream.codec_context.sample_rate)
    self._packets = self._input.demux(stream)
    self._pending = None

  def mux_until(self, seconds) -> None:
    """Muxes the source's audio that starts before ``seconds`` (of the output's timeline)."""
    if self._input is None:
      return
    while True:
      packet = self._pending if self._pending is not None else next(self._packets, None)
      self._pending = None
      if packet is None:
        self.finish()
        return
      if packet.dts is None:  # the demuxer's final flush packet
        continue
      shift = int(round(self._offset / packet.time_base))
      if (packet.pts - shift) * packet.time_base >= seconds:
        self._pending = packet
        return
      packet.pts -= shift
      packet.dts -= shift
      self._mux(packet)

  def _mux(self, packet) -> None:
    try:
      if self._copy:
        packet.stream = self._out
        self._container.mux(packet)
      else:
        for frame in packet.decode():
          frame.pts = None
          for out in self._out.encode(frame):
            self._container.mux(out)
    except av.error.FFmpegError as e:
      raise ValueError(f"cannot copy the audio of {self.source}: {e}") from e

  def finish(self, flush: bool = True) -> None:
    """Flushes a re-encoding encoder (``flush``) and closes the source."""
    if self._input is None:
      return
    if flush and not self._copy and self._out is not None:
      for out in self._out.encode():
        self._container.mux(out)
    self._input.close()
    self._input = None
