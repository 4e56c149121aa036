"""Super-resolving a stream of video frames with a frozen SR network: windows, batches, tiles.

Every SR network is used as a window function, run jitted and data-parallel over the devices:
uint8 LR windows (N, L, h, w, 3) -> uint8 SR frames (N, L_out, h*s, w*s, 3).
  frame models (VDSR, RCAN, ...) ('frame'): L = L_out = 1, one window per frame;
  K-frame window models (VSR-DUF) ('window'): L = K frames centred on the output frame (indices
    clamped at the ends of the video), L_out = 1;
  clip models (DVSR, progressive DVSR) ('clip'): L = L_out = T frames; consecutive windows
    overlap by 2 * (T // 4) frames and each output frame is taken from the window where it is
    most central (the video's first and last frames from the first and last windows; a video
    shorter than T is padded by repeating its last frame).
Frames larger than ``tile`` LR pixels are cut into tiles overlapping by ``overlap`` LR pixels.
Each tile's output is weighted by a ramp that is ~0 over the outer quarter of the overlap and
rises to 1 over its middle half; the weighted sum is normalized. Tiled output equals untiled
output (up to a 1e-3 weight) when overlap / 4 exceeds the network's receptive radius in LR pixels.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax import sharding
from arsr_jax.data import degrade
from arsr_jax.steps import sr as sr_steps

KINDS = ("frame", "window", "clip")
# (variables, LR windows (N, L, h, w, 3) float32 in [0, 1]) -> SR (N, L_out, h*s, w*s, 3)
WindowFn = Callable[[Any, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  """How a network consumes a video: ``kind`` in KINDS and window length L."""
  kind: str
  length: int = 1

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Unknown window kind {self.kind!r}; use one of {KINDS}")
    if self.length < 1 or (self.kind == "frame" and self.length != 1):
      raise ValueError(f"Window length {self.length} is invalid for {self.kind!r} models")

  @property
  def out_length(self) -> int:
    return self.length if self.kind == "clip" else 1

  @property
  def margin(self) -> int:
    """Frames dropped at each inner end of a clip window (the least temporal context)."""
    return self.length // 4 if self.kind == "clip" else 0


def spec_for(sr, clip_length: int) -> WindowSpec:
  """The WindowSpec of a ``frozen.FrozenSR``; clip models use ``clip_length`` frames."""
  if sr.is_clip_model:
    return WindowSpec("clip", clip_length)
  return WindowSpec("window", sr.input_frames) if sr.input_frames > 1 else WindowSpec("frame")


def window_fn(sr) -> WindowFn:
  """The window function of a ``frozen.FrozenSR`` (frame, K-window or clip network)."""
  def apply(variables, x):
    lr = x if sr.is_clip_model or sr.input_frames > 1 else x[:, 0]
    out, _ = sr_steps.split_output(sr_steps.apply_sr(sr.model, variables, lr, train=False, **sr.call_kwargs))
    return out if sr.is_clip_model else out[:, None]
  return apply


class _Lookahead:
  """Random access to the recent frames of an iterator: ``get(i)`` reads ahead as needed."""

  def __init__(self, frames: Iterable[np.ndarray]):
    self._it, self._buf, self._first, self.ended = iter(frames), collections.deque(), 0, False

  def get(self, i: int) -> np.ndarray | None:
    """Frame i, or None if the video ends before it."""
    while not self.ended and i >= self._first + len(self._buf):
      frame = next(self._it, None)
      if frame is None:
        self.ended = True
      else:
        self._buf.append(frame)
    k = i - self._first
    return self._buf[k] if 0 <= k < len(self._buf) else None

  def clamped(self, i: int) -> np.ndarray:
    """Frame min(max(i, 0), last); frame 0 must exist and frames before the window kept."""
    i = max(i, 0)
    frame = self.get(i)
    while frame is None:
      i -= 1
      frame = self.get(i)
    return frame

  def count(self) -> int:
    """Frames read so far (the video's length once ``ended``)."""
    return self._first + len(self._buf)

  def drop_before(self, i: int) -> None:
    while self._buf and self._first < i:
      self._buf.popleft()
      self._first += 1


def windows(frames: Iterable[np.ndarray], spec: WindowSpec) -> Iterator[tuple[np.ndarray, int, int]]:
  """(window (L, h, w, 3), start, stop): the window's output frames [start, stop) are the video's
  next frames, in order. Frames are read lazily; only about one window is held in memory."""
  video = _Lookahead(frames)
  if video.get(0) is None:
    return
  if spec.kind != "clip":
    offsets = np.arange(spec.length) - spec.length // 2
    t = 0
    while video.get(t) is not None:
      yield np.stack([video.clamped(t + o) for o in offsets]), 0, 1
      t += 1
      video.drop_before(t - spec.length // 2)
    return
  length, margin = spec.length, spec.margin
  stride, start, emitted = length - 2 * margin, 0, 0
  while True:
    if video.get(start + length) is None:  # the last window: ends at the video's last frame
      n = video.count()
      first = max(0, n - length)
      yield np.stack([video.clamped(first + i) for i in range(length)]), emitted - first, n - first
      return
    yield np.stack([video.get(start + i) for i in range(length)]), emitted - start, length - margin
    emitted = start + length - margin
    start += stride
    video.drop_before(start - length)  # the last window may start up to length - 1 frames earlier


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """Starts of tiles of side min(tile, size) covering [0, size), evenly spaced, overlapping >= overlap."""
  if tile <= 0 or size <= tile:
    return [0]
  n = math.ceil((size - tile) / (tile - overlap)) + 1
  return [int(round(s)) for s in np.linspace(0, size - tile, n)]


def tile_ramps(starts: list[int], tile: int, size: int, overlap: int, scale: int) -> np.ndarray:
  """(len(starts), tile * scale) blending weights along one axis, in output pixels."""
  n, o = tile * scale, max(overlap * scale, 1)
  d = np.arange(n) + 0.5
  ramp = lambda dist: np.clip((dist - o / 4) / (o / 2), 1e-3, 1.0)  # noqa: E731
  w = np.ones((len(starts), n), np.float32)
  for j, s in enumerate(starts):
    if s > 0:
      w[j] = np.minimum(w[j], ramp(d))
    if s + tile < size:
      w[j] = np.minimum(w[j], ramp(n - d))
  return w


def tiled(fn: Callable[[jax.Array], Any], x: jax.Array, tile: int, overlap: int, scale: int) -> Any:
  """``fn`` applied to (N, L, h, w, C) in spatial tiles and blended: fn maps (N, L, th, tw, C) to a
  pytree of (N, L', th*s, tw*s, C') arrays. Tiles run one after another (bounded memory)."""
  h, w = x.shape[2:4]
  th, tw = min(tile, h), min(tile, w)
  ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
  if len(ys) == 1 and len(xs) == 1:
    return fn(x)
  wy, wx = tile_ramps(ys, th, h, overlap, scale), tile_ramps(xs, tw, w, overlap, scale)
  norm_y, norm_x = np.zeros(h * scale, np.float32), np.zeros(w * scale, np.float32)
  for s, r in zip(ys, wy):
    norm_y[s * scale:(s + th) * scale] += r
  for s, r in zip(xs, wx):
    norm_x[s * scale:(s + tw) * scale] += r
  grid = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
  tiles = jnp.asarray([(ys[iy], xs[ix], iy, ix) for iy, ix in grid], jnp.int32)
  wy, wx = jnp.asarray(wy), jnp.asarray(wx)
  patch0 = jax.lax.dynamic_slice(x, (0, 0, 0, 0, 0), x.shape[:2] + (th, tw, x.shape[4]))
  shapes = jax.eval_shape(fn, patch0)
  init = jax.tree.map(lambda s: jnp.zeros(s.shape[:2] + (h * scale, w * scale, s.shape[4]), jnp.float32), shapes)

  def body(i, acc):
    y0, x0, iy, ix = tiles[i]
    patch = jax.lax.dynamic_slice(x, (0, 0, y0, x0, 0), x.shape[:2] + (th, tw, x.shape[4]))
    weight = (wy[iy][:, None] * wx[ix][None, :])[None, None, :, :, None]

    def add(a, o):
      at = (0, 0, y0 * scale, x0 * scale, 0)
      cur = jax.lax.dynamic_slice(a, at, o.shape)
      return jax.lax.dynamic_update_slice(a, cur + o.astype(jnp.float32) * weight, at)
    return jax.tree.map(add, acc, fn(patch))

  total = jax.lax.fori_loop(0, len(grid), body, init)
  norm = jnp.asarray(norm_y[:, None] * norm_x[None, :])[None, None, :, :, None]
  return jax.tree.map(lambda a: a / norm, total)


class Upscaler:
  """Turns a stream of uint8 LR frames (h, w, 3) into (SR, bicubic or None) uint8 frames
  (h*s, w*s, 3), in order. Windows go to the devices in batches of about ``batch`` output frames
  (the last batch padded, so each frame size compiles once); a batch is computed while the
  previous one is yielded.

  Args:
    fn: the window function; ``variables`` its first argument (replicated on the mesh).
    spec: how the network consumes the video.
    scale: the SR factor.
    batch: output frames per device call: that many windows of frame and K-frame models, batch // T
      (at least one) clip windows; rounded up to a multiple of the device count.
    tile: tile side in LR pixels (0 = whole frames); overlap: tile overlap in LR pixels.
    bicubic: also return the bicubic upsampling of each output frame's LR frame.
    mesh: device mesh (default: all devices, data-parallel over windows).
  """

  def __init__(self, fn: WindowFn, variables: Any, spec: WindowSpec, scale: int, *, batch: int = 8,
               tile: int = 0, overlap: int = 16, bicubic: bool = False, mesh: jax.sharding.Mesh | None = None):
    if tile and not 0 <= 2 * overlap < tile:
      raise ValueError(f"tile overlap {overlap} must be >= 0 and less than half the tile side {tile}")
    self.spec, self.scale, self.tile, self.overlap = spec, scale, tile, overlap
    self.mesh = mesh or sharding.make_mesh()
    n = self.mesh.devices.size
    self.batch = -(-max(1, batch // spec.out_length) // n) * n  # windows per call
    self._variables, self._bicubic = variables, bicubic
    self._run = jax.jit(self._forward, in_shardings=(sharding.replicated(self.mesh), sharding.batch_sharded(self.mesh)),
                        out_shardings=sharding.batch_sharded(self.mesh))
    self._fn = fn

  def output_shape(self, height: int, width: int) -> tuple[int, ...]:
    """Shape of the network's output for one window of (height, width) frames; raises if it is
    not (L_out, height * scale, width * scale, 3) (e.g. an intermediate progressive stage)."""
    x = jax.ShapeDtypeStruct((1, self.spec.length, height, width, 3), jnp.float32)
    shape = tuple(jax.eval_shape(self._fn, self._variables, x).shape[1:])
    want = (self.spec.out_length, height * self.scale, width * self.scale, 3)
    if shape != want:
      raise ValueError(f"the SR network maps {self.spec.length} frame(s) of {height}x{width} to {shape}, not "
                       f"{want}: it is not a full x{self.scale} model (an intermediate progressive stage?)")
    return shape

  def _forward(self, variables, x):
    """uint8 (N, L, h, w, 3) -> uint8 SR (N, L_out, H, W, 3) [and bicubic of the same frames]."""
    def both(patch):
      sr = self._fn(variables, patch).astype(jnp.float32)
      if not self._bicubic:
        return (sr,)
      lr = patch if self.spec.kind == "clip" else patch[:, self.spec.length // 2][:, None]
      return sr, degrade.bicubic_upsample(lr, self.scale)
    out = tiled(both, x.astype(jnp.float32) / 255.0, self.tile or max(x.shape[2:4]), self.overlap, self.scale)
    return tuple(jnp.round(jnp.clip(o, 0.0, 1.0) * 255.0).astype(jnp.uint8) for o in out)

  def __call__(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    pending, jobs = None, []
    for job in windows(frames, self.spec):
      jobs.append(job)
      if len(jobs) == self.batch:
        running = (self._dispatch(jobs), jobs)  # asynchronous: computes while the previous is encoded
        if pending is not None:
          yield from self._collect(*pending)
        pending, jobs = running, []
    if pending is not None:
      yield from self._collect(*pending)
    if jobs:
      yield from self._collect(self._dispatch(jobs), jobs)

  def _dispatch(self, jobs):
    x = np.stack([w for w, _, _ in jobs] + [jobs[-1][0]] * (self.batch - len(jobs)))
    return self._run(self._variables, jax.device_put(x, sharding.batch_sharded(self.mesh)))

  def _collect(self, out, jobs):
    out = jax.device_get(out)
    for k, (_, start, stop) in enumerate(jobs):
      for t in range(start, stop):
        yield out[0][k, t], (out[1][k, t] if self._bicubic else None)


def from_frozen(sr, clip_length: int, mesh: jax.sharding.Mesh | None = None, **kwargs) -> Upscaler:
  """An Upscaler for a ``frozen.FrozenSR`` (its variables already placed on ``mesh``)."""
  return Upscaler(window_fn(sr), sr.variables, spec_for(sr, clip_length), sr.scale, mesh=mesh, **kwargs)
