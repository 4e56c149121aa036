"""Flow files and flow images: Middlebury ``.flo`` and TSN-style uint8 quantisation.

``.flo`` layout (Middlebury / FlyingChairs / Sintel): float32 magic 202021.25
(the bytes 'PIEH'), int32 width, int32 height, then height x width x 2 float32
(u, v interleaved, row-major), all little-endian.

TSN / mmaction2 store flow as two greyscale images per frame pair, each
component clipped to +-``bound`` pixels and mapped linearly to [0, 255]:
``q = round((f + bound) * 255 / (2 * bound))``.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax.media.degrade import resize_flow

__all__ = ["read_flo", "write_flo", "quantize_flow", "dequantize_flow", "resize_flow",
           "FLO_MAGIC", "TSN_BOUND"]

FLO_MAGIC = 202021.25
TSN_BOUND = 20.0
_MAX_FLO_SIDE = 1 << 16  # larger widths/heights are treated as a corrupt header
_HEADER_BYTES = 12


def read_flo(path: str | os.PathLike) -> np.ndarray:
  """Reads a Middlebury ``.flo`` file.

  Returns:
    float32 array (H, W, 2) in pixels, channel 0 = u (x), channel 1 = v (y).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError (naming the file): wrong magic number, absurd width/height,
      truncated data or trailing bytes.
  """
  path = os.fspath(path)
  with open(path, "rb") as f:
    data = f.read()
  if len(data) < _HEADER_BYTES:
    raise ValueError(f"{path}: not a .flo file (only {len(data)} bytes, header needs 12)")
  magic = np.frombuffer(data, "<f4", 1, 0)[0]
  if magic != np.float32(FLO_MAGIC):
    raise ValueError(f"{path}: bad .flo magic {data[:4]!r} (expected b'PIEH' = {FLO_MAGIC})")
  width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, 4))
  if not (0 < width <= _MAX_FLO_SIDE and 0 < height <= _MAX_FLO_SIDE):
    raise ValueError(f"{path}: implausible .flo size {width}x{height} (corrupt header?)")
  expected = _HEADER_BYTES + 8 * width * height
  if len(data) < expected:
    raise ValueError(f"{path}: truncated .flo file: {len(data)} bytes, expected {expected} "
                     f"for {width}x{height}")
  if len(data) > expected:
    raise ValueError(f"{path}: {len(data) - expected} unexpected trailing bytes after "
                     f"{width}x{height} flow")
  flow = np.frombuffer(data, "<f4", 2 * width * height, _HEADER_BYTES)
  return flow.reshape(height, width, 2).astype(np.float32)


def write_flo(path: str | os.PathLike, flow) -> None:
  """Writes flow (H, W, 2) in pixels (u, v) as a Middlebury ``.flo`` file."""
  flow = np.asarray(flow, dtype=np.float32)
  if flow.ndim != 3 or flow.shape[-1] != 2 or flow.shape[0] == 0 or flow.shape[1] == 0:
    raise ValueError(f"write_flo({os.fspath(path)}): expected flow (H, W, 2), got {flow.shape}")
  height, width = flow.shape[:2]
  with open(path, "wb") as f:
    f.write(np.float32(FLO_MAGIC).astype("<f4").tobytes())
    f.write(np.asarray([width, height], "<i4").tobytes())
    f.write(np.ascontiguousarray(flow, "<f4").tobytes())


def _xp(x):
  return jnp if isinstance(x, jax.Array) else np


def quantize_flow(flow, bound: float = TSN_BOUND):
  """Flow (..., H, W[, 2]) in pixels -> uint8, ``round((clip(f) + bound) * 255 / (2 bound))``.

  Works elementwise (any shape); NumPy in, NumPy out; JAX in, JAX out (so it
  can run on the accelerator before the transfer). 0 px maps to 128 (127.5
  rounded half to even: 128).
  """
  xp = _xp(flow)
  f = xp.clip(xp.asarray(flow, dtype=xp.float32), -bound, bound)
  return xp.round((f + bound) * (255.0 / (2 * bound))).astype(xp.uint8)


def dequantize_flow(quantized, bound: float = TSN_BOUND):
  """Inverse of ``quantize_flow``: uint8 (...) -> float32 pixels; error <= bound / 255 inside +-bound."""
  xp = _xp(quantized)
  return xp.asarray(quantized, dtype=xp.float32) * (2 * bound / 255.0) - bound
