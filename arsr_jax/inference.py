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
Frames that do not fit the device memory budget (or larger than a given ``tile``) are cut into
tiles of ``tile`` LR pixels overlapping by ``overlap`` LR pixels; the tiles go to the devices in
batches and come back to the host one batch at a time, where each tile fills its part of the
output frame up to the middle of its overlaps. Tiled output equals untiled output when overlap / 2
covers the network's receptive radius in LR pixels.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax import sharding
from arsr_jax.media import degrade
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


def tile_crops(starts: list[int], tile: int, size: int) -> list[tuple[int, int]]:
  """[lo, hi) along one axis that each tile contributes (LR pixels): up to the middle of its overlaps."""
  cuts = [0] + [(s + prev + tile) // 2 for prev, s in zip(starts, starts[1:])] + [size]
  return list(zip(cuts[:-1], cuts[1:]))


def memory_budget(device: jax.Device | None = None) -> int:
  """Bytes one device call may use: ``ARSR_MEMORY_BUDGET`` (e.g. '2G', '512M', bytes) if set, else
  90% of the device's free memory (``memory_stats``), else (CPU) half the host's available RAM."""
  env = os.environ.get("ARSR_MEMORY_BUDGET")
  if env:
    return parse_bytes(env, "ARSR_MEMORY_BUDGET")
  stats = (device or jax.devices()[0]).memory_stats() or {}
  if "bytes_limit" in stats:
    return int(0.9 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
  try:
    with open("/proc/meminfo") as f:
      available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
  except (OSError, StopIteration):
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  return available // 2


def parse_bytes(text: str, what: str = "memory budget") -> int:
  """'2G' / '512M' / '64K' / '123' (bytes; powers of 1024) -> bytes > 0; ValueError naming ``what``."""
  t = str(text).strip().upper().removesuffix("B").removesuffix("I")
  unit = 1024 ** "KMGT".index(t[-1]) * 1024 if t and t[-1] in "KMGT" else 1
  try:
    value = float(t[:-1] if unit > 1 else t) * unit
  except ValueError:
    value = 0
  if value < 1:
    raise ValueError(f"{what} {text!r}: expected a size such as 2G, 512M or a number of bytes")
  return int(value)


def gigabytes(n: float) -> str:
  return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


@dataclasses.dataclass(frozen=True)
class Plan:
  """How frames of one size go to the devices: tiles of ``tile`` LR pixels (0 = whole frames),
  ``batch`` windows or tiles per call, estimated to need ``bytes`` per device of ``budget``."""
  tile: int
  batch: int
  bytes: int
  budget: int

  def describe(self, height: int, width: int) -> str:
    what = f"whole {width}x{height} frames" if not self.tile else f"{self.tile}x{self.tile} tiles"
    return (f"{what}, {self.batch} per call (about {gigabytes(self.bytes)} of the "
            f"{gigabytes(self.budget)} memory budget)")


AUTO_TILES = (256, 192, 128, 96, 64, 48, 32)  # LR pixels, tried largest first when whole frames do not fit
RADIUS_PROBE = 96  # LR pixels: side of the window on which the receptive radius is measured


class Upscaler:
  """Turns a stream of uint8 LR frames (h, w, 3) into (SR, bicubic or None) uint8 frames
  (h*s, w*s, 3), in order. Windows (or their tiles) go to the devices in batches; a batch is
  computed while the previous one is assembled on the host, so device memory is bounded by the
  batch and tile size, never by the frame size.

  Args:
    fn: the window function; ``variables`` its first argument (replicated on the mesh).
    spec: how the network consumes the video.
    scale: the SR factor.
    batch: output frames per device call: that many windows of frame and K-frame models, batch // T
      (at least one) clip windows, or that many tiles; rounded up to a multiple of the device count.
      The batch of a video shorter than one batch is only padded to the device count.
    tile: tile side in LR pixels; 0 = whole frames; None = automatic (``plan``): whole frames when
      they fit ``memory_budget``, else the largest of AUTO_TILES that does.
    overlap: tile overlap in LR pixels; each tile contributes up to the middle of its overlaps, so
      tiled output equals whole-frame output when overlap / 2 covers the network's receptive radius.
      None = twice the radius measured on the network itself (``receptive_radius``), when it tiles.
    bicubic: also return the bicubic upsampling of each output frame's LR frame.
    mesh: device mesh (default: all devices, data-parallel over windows).
    memory_budget: bytes a device call may use (default: ``memory_budget()`` of the first device).
  """

  def __init__(self, fn: WindowFn, variables: Any, spec: WindowSpec, scale: int, *, batch: int = 8,
               tile: int | None = 0, overlap: int | None = None, bicubic: bool = False,
               mesh: jax.sharding.Mesh | None = None, memory_budget: int | None = None):
    if tile is not None and tile < 0:
      raise ValueError(f"tile side must be >= 0 (0 = whole frames), got {tile}")
    if tile and overlap is not None and not 0 <= 2 * overlap < tile:
      raise ValueError(f"tile overlap {overlap} must be >= 0 and less than half the tile side {tile}")
    if overlap is not None and overlap < 0:
      raise ValueError(f"tile overlap must be >= 0, got {overlap}")
    self.spec, self.scale, self.tile, self._overlap = spec, scale, tile, overlap
    self.mesh = mesh or sharding.make_mesh()
    self._devices = self.mesh.devices.size
    self.batch = self._round(max(1, batch // spec.out_length))  # windows (or tiles) per call
    self._budget = memory_budget
    self._variables, self._bicubic = variables, bicubic
    self._run = jax.jit(self._forward, in_shardings=(sharding.replicated(self.mesh), sharding.batch_sharded(self.mesh)),
                        out_shardings=sharding.batch_sharded(self.mesh))
    self._fn = fn
    self._plans, self._per_pixel = {}, None

  def _round(self, n: int) -> int:
    return -(-n // self._devices) * self._devices

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

  @property
  def overlap(self) -> int:
    """Tile overlap in LR pixels: the one given, else twice the measured receptive radius."""
    if self._overlap is None:
      self._overlap = 2 * self.receptive_radius()
    return self._overlap

  def receptive_radius(self, tolerance: float = 1e-3) -> int:
    """LR pixels around a pixel that its output depends on: the farthest input pixel of a random
    RADIUS_PROBE-px window whose gradient on the centre output pixel exceeds ``tolerance`` x the
    largest one (measured, so it holds for any network; the shipped SRVGGNetCompact 64 x 16, whose
    17 3x3 convs reach 17 pixels, measures 10). At most RADIUS_PROBE // 2 - 1 (a wider field is
    capped there)."""
    p, s = RADIUS_PROBE, self.scale
    x = jax.random.uniform(jax.random.key(0), (1, self.spec.length, p, p, 3))
    c = p // 2

    def centre(x):
      out = self._fn(self._variables, x).astype(jnp.float32)
      return out[:, :, c * s:(c + 1) * s, c * s:(c + 1) * s].sum()
    g = np.asarray(jnp.abs(jax.grad(centre)(x)).max(axis=(0, 1, 4)))
    ys, xs = np.nonzero(g > tolerance * g.max())
    return int(min(max(np.abs(ys - c).max(), np.abs(xs - c).max(), 1), p // 2 - 1))

  def call_bytes(self, n: int, height: int, width: int) -> int:
    """Estimated bytes per device of one call on ``n`` windows of (height, width) LR frames: XLA's
    memory analysis of two small compiled probes, extrapolated linearly in pixels."""
    if self._per_pixel is None:
      sizes = []
      for side in (32, 64):
        x = jax.ShapeDtypeStruct((self._devices, self.spec.length, side, side, 3), jnp.uint8)
        m = self._run.lower(self._variables, x).compile().memory_analysis()
        sizes.append(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
                     - m.alias_size_in_bytes)
      per_pixel = (sizes[1] - sizes[0]) / (64 * 64 - 32 * 32)
      self._per_pixel = (max(sizes[0] - per_pixel * 32 * 32, 0), per_pixel)
    fixed, per_pixel = self._per_pixel
    return int(fixed + per_pixel * (n // self._devices) * height * width)

  def plan(self, height: int, width: int) -> Plan:
    """The tile and batch for (height, width) frames (see the class doc); raises MemoryError when
    even the smallest allowed call exceeds the memory budget."""
    if (height, width) in self._plans:
      return self._plans[height, width]
    budget = self._budget or memory_budget(self.mesh.devices.flat[0])
    batches = list(range(self.batch, 0, -self._devices))
    if self.tile is None:  # the overlap (a measurement) only when whole frames do not fit
      tiles = itertools.chain([0], (t for t in AUTO_TILES if t < max(height, width) and 2 * self.overlap < t))
    else:
      tiles = [self.tile if self.tile < max(height, width) else 0]
      if tiles[0] and 2 * self.overlap >= tiles[0]:  # a given overlap was checked in __init__: a measured one
        raise ValueError(f"the network's receptive radius ({self.overlap // 2} LR pixels) needs a tile overlap "
                         f"of {self.overlap}, more than half the tile side {self.tile}: pass a larger --tile")
    need, tile = None, 0
    for tile in tiles:
      th, tw = (min(tile, height), min(tile, width)) if tile else (height, width)
      for n in batches:
        need = self.call_bytes(n, th, tw)
        if need <= budget:
          self._plans[height, width] = Plan(tile, n, need, budget)
          return self._plans[height, width]
    shown = f"{tile}x{tile} tiles" if tile else "whole frames"
    hint = ("pass --tile auto (or a smaller --tile)" if self.tile is not None else
            "raise the memory budget (--memory_budget / ARSR_MEMORY_BUDGET) or lower --tile_overlap")
    raise MemoryError(f"{width}x{height} frames need about {gigabytes(need)} per device call in {shown}, "
                      f"1 per call, over the memory budget of {gigabytes(budget)}; {hint}")

  def _forward(self, variables, x):
    """uint8 (N, L, h, w, 3) -> uint8 SR (N, L_out, H, W, 3) [and bicubic of the same frames]."""
    x = x.astype(jnp.float32) / 255.0
    out = (self._fn(variables, x).astype(jnp.float32),)
    if self._bicubic:
      lr = x if self.spec.kind == "clip" else x[:, self.spec.length // 2][:, None]
      out += (degrade.bicubic_upsample(lr, self.scale),)
    return tuple(jnp.round(jnp.clip(o, 0.0, 1.0) * 255.0).astype(jnp.uint8) for o in out)

  def __call__(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    pending, pieces, full = None, [], False
    assembler = _Assembler(self.scale, self._bicubic)
    for window, start, stop in windows(frames, self.spec):
      h, w = window.shape[1:3]
      plan = self.plan(h, w)
      assembler.add_window(start, stop, h, w)
      th, tw = (min(plan.tile, h), min(plan.tile, w)) if plan.tile else (h, w)
      overlap = self.overlap if plan.tile else 0
      ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
      for (y0, (ya, yb)) in zip(ys, tile_crops(ys, th, h)):
        for (x0, (xa, xb)) in zip(xs, tile_crops(xs, tw, w)):
          pieces.append((window[:, y0:y0 + th, x0:x0 + tw], (start, stop, y0, x0, ya, yb, xa, xb)))
          if len(pieces) == plan.batch:
            running, pieces, full = (self._dispatch(pieces, plan.batch), pieces), [], True
            if pending is not None:
              yield from assembler.collect(*pending)
            pending = running
    if pending is not None:
      yield from assembler.collect(*pending)
    if pieces:
      size = plan.batch if full else self._round(len(pieces))  # a short video: no padding to a full batch
      yield from assembler.collect(self._dispatch(pieces, size), pieces)

  def _dispatch(self, pieces, size):
    x = np.stack([p for p, _ in pieces] + [pieces[-1][0]] * (size - len(pieces)))
    return self._run(self._variables, jax.device_put(x, sharding.batch_sharded(self.mesh)))


class _Assembler:
  """Output frames of the windows, pieced together on the host from the tiles' crops, in order."""

  def __init__(self, scale: int, bicubic: bool):
    self.scale, self.bicubic, self._windows = scale, bicubic, collections.deque()

  def add_window(self, start: int, stop: int, h: int, w: int) -> None:
    """A window whose output frames [start, stop) come next; its tiles follow in order."""
    s, n = self.scale, stop - start
    out = [np.empty((n, h * s, w * s, 3), np.uint8) for _ in range(2 if self.bicubic else 1)]
    self._windows.append([out, h * w, 0])  # [frames, LR pixels to fill, filled]

  def collect(self, out, pieces) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Copies each piece's crop from the device output ``out``; yields the windows completed."""
    s = self.scale
    out = jax.device_get(out)
    for k, (_, (start, stop, y0, x0, ya, yb, xa, xb)) in enumerate(pieces):
      entry = next(e for e in self._windows if e[2] < e[1])
      for dst, src in zip(entry[0], out):
        dst[:, ya * s:yb * s, xa * s:xb * s] = src[k, start:stop, (ya - y0) * s:(yb - y0) * s,
                                                   (xa - x0) * s:(xb - x0) * s]
      entry[2] += (yb - ya) * (xb - xa)
      while self._windows and self._windows[0][2] == self._windows[0][1]:
        frames, _, _ = self._windows.popleft()
        for t in range(len(frames[0])):
          yield frames[0][t], (frames[1][t] if self.bicubic else None)


def from_frozen(sr, clip_length: int, mesh: jax.sharding.Mesh | None = None, **kwargs) -> Upscaler:
  """An Upscaler for a ``frozen.FrozenSR`` (its variables already placed on ``mesh``)."""
  return Upscaler(window_fn(sr), sr.variables, spec_for(sr, clip_length), sr.scale, mesh=mesh, **kwargs)
