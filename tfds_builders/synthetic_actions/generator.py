"""Procedural rendering of `synthetic_actions` clips (pure NumPy, no TFDS).

A clip shows 1-3 small textured actors moving rigidly over a static, textured
background. The class is the product of the actors' texture (appearance) and
their motion pattern:

  textures: stripes, checker, rings -- smooth square waves whose dominant
      spatial period is 8-10 HR pixels, i.e. just below the Nyquist frequency
      of 4x-downsampled LR frames (period 8 HR px). Bicubic 4x down/up blurs
      them strongly; they are still (weakly) present in the LR signal.
  motions: translate_right / translate_left (about 1-1.6 px per frame),
      rotate (clockwise on screen, 10-15 degrees per frame about the actor's
      centre), oscillate (vertical sinusoidal translation).

So some classes differ only in motion and others only in appearance. The
background is a static sum of coloured gratings at similar periods (8-16 px):
high-frequency clutter with zero flow.

Rendering is analytic: every pixel centre (x = column, y = row, integer
coordinates) is mapped through the inverse rigid transform of each actor and
the continuous texture is evaluated there; actor edges are anti-aliased over
about 1 px. The exact forward optical flow between consecutive frames follows
from the transforms: with M_t the local-to-image transform of an actor at
frame t, flow[t](x) = M_{t+1} M_t^{-1} x - x.

Conventions (see ``arsr_jax/__init__.py``): clips are THWC (NTHWC batched),
flow is (..., H, W, 2) in HR pixels, channel 0 = u (x / column displacement),
channel 1 = v (y / row displacement).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

TEXTURES = ("stripes", "checker", "rings")
MOTIONS = ("translate_right", "translate_left", "rotate", "oscillate")
# label = texture_index * len(MOTIONS) + motion_index.
CLASS_NAMES = tuple(f"{t}_{m}" for t, m in itertools.product(TEXTURES, MOTIONS))
NUM_CLASSES = len(CLASS_NAMES)

# Design constants (HR pixels / frames). See the module docstring.
TEXTURE_PERIOD = (8.0, 10.0)       # dominant period of the actor texture
TEXTURE_SHARPNESS = 2.5            # tanh gain of the smooth square wave
ACTOR_CONTRAST = (0.25, 0.4)       # half the colour distance of the 2 texture colours
ACTOR_SIZE = (20.0, 32.0)          # length of the actor's long axis
ACTOR_ASPECT = (0.6, 0.9)          # short axis / long axis
ACTOR_EXPONENT = (2.0, 4.0)        # superellipse exponent: ellipse .. rounded box
TRANSLATE_SPEED = (1.0, 1.6)       # px / frame along x; plus a small y drift
TRANSLATE_DRIFT = 0.15             # |y speed| in px / frame
ROTATE_SPEED = (10.0, 15.0)        # degrees / frame, clockwise on screen
OSCILLATE_AMPLITUDE = (3.0, 5.0)   # px
OSCILLATE_PERIOD = (6.0, 10.0)     # frames
BACKGROUND_PERIOD = (8.0, 16.0)
BACKGROUND_AMPLITUDE = (0.02, 0.045)
BACKGROUND_GRATINGS = 5
MARGIN = 1.0                       # px kept free between actors and the frame border


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """Clip geometry: square frames of `frame_size` px, `num_frames` frames.

  Any object with these two attributes (e.g. the TFDS builder config) works
  wherever a spec is expected.
  """
  frame_size: int = 128
  num_frames: int = 16


def class_name(label: int) -> str:
  return CLASS_NAMES[label]


def split_label(label: int) -> tuple[str, str]:
  """label -> (texture name, motion name)."""
  return TEXTURES[label // len(MOTIONS)], MOTIONS[label % len(MOTIONS)]


def render_clip(rng: np.random.Generator, cfg, label: int | None = None) -> dict[str, np.ndarray]:
  """Renders one clip.

  Args:
    rng: the source of all randomness of this clip (the same generator state
      gives the same clip).
    cfg: anything with `frame_size` (H = W, px) and `num_frames` (T).
    label: class index in [0, NUM_CLASSES); drawn from `rng` when None.

  Returns:
    dict with
      hr: (T, H, W, 3) uint8 frames;
      flow: (T-1, H, W, 2) float32 exact forward flow in pixels, (u, v) =
        (x, y) displacement from frame t to t+1 of the front-most actor, 0 on
        the background;
      mask: (T, H, W) uint8, 1 where an actor covers the pixel (alpha > 0.5);
      actor_id: (T, H, W) uint8, 1 + index of the front-most actor with
        alpha > 0.5, 0 on the background (for tests; not stored by TFDS);
      label: int, the class index.
  """
  size, num_frames = int(cfg.frame_size), int(cfg.num_frames)
  if label is None:
    label = int(rng.integers(NUM_CLASSES))
  texture, motion = split_label(label)
  num_actors = int(rng.integers(1, 4))

  background = _background(rng, size)                                   # (H, W, 3)
  actors = [_sample_actor(rng, texture, motion, size, num_frames) for _ in range(num_actors)]

  frames = np.broadcast_to(background, (num_frames, size, size, 3)).copy()
  flow = np.zeros((num_frames - 1, size, size, 2), np.float64)
  actor_id = np.zeros((num_frames, size, size), np.uint8)
  for k, actor in enumerate(actors):  # back to front
    # Work on a per-frame box around the actor: (T, B, B) index arrays.
    frame_idx, ys, xs = _actor_box(actor, size)
    u, v = _to_local(actor, xs, ys)                                     # (T, B, B) each
    alpha = _alpha(actor, u, v)[..., None]                              # (T, B, B, 1)
    value = _texture(actor, u, v)[..., None]                            # (T, B, B, 1)
    colour = actor["colour_b"] + value * (actor["colour_a"] - actor["colour_b"])
    box = (frame_idx, ys, xs)
    frames[box] = frames[box] * (1.0 - alpha) + colour * alpha
    covered = alpha[..., 0] > 0.5
    actor_id[box] = np.where(covered, k + 1, actor_id[box])
    box = (frame_idx[:-1], ys[:-1], xs[:-1])
    actor_flow = _rigid_flow(actor, xs[:-1], ys[:-1])                   # (T-1, B, B, 2)
    flow[box] = np.where(covered[:-1, ..., None], actor_flow, flow[box])

  hr = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
  return dict(hr=hr, flow=flow.astype(np.float32), mask=(actor_id > 0).astype(np.uint8),
              actor_id=actor_id, label=label)


# --------------------------------------------------------------------------- actors


def _sample_actor(rng, texture: str, motion: str, size: int, num_frames: int) -> dict:
  """Draws shape, texture, colours and the per-frame pose (centre, angle)."""
  long_axis = rng.uniform(*ACTOR_SIZE)
  semi_a = long_axis / 2
  semi_b = semi_a * rng.uniform(*ACTOR_ASPECT)
  t = np.arange(num_frames, dtype=np.float64)
  angle0 = rng.uniform(0, 2 * np.pi)
  offset = np.zeros((num_frames, 2))                                    # centre - start, (x, y)
  angle = np.full(num_frames, angle0)
  if motion.startswith("translate"):
    sign = 1.0 if motion == "translate_right" else -1.0
    offset[:, 0] = sign * rng.uniform(*TRANSLATE_SPEED) * t
    offset[:, 1] = rng.uniform(-TRANSLATE_DRIFT, TRANSLATE_DRIFT) * t
  elif motion == "rotate":
    angle = angle0 + np.deg2rad(rng.uniform(*ROTATE_SPEED)) * t
  elif motion == "oscillate":
    amplitude, period = rng.uniform(*OSCILLATE_AMPLITUDE), rng.uniform(*OSCILLATE_PERIOD)
    phase = rng.uniform(0, 2 * np.pi)
    offset[:, 1] = amplitude * (np.sin(2 * np.pi * t / period + phase) - np.sin(phase))
  else:
    raise ValueError(f"unknown motion {motion!r}")

  # Keep the bounding circle inside the frame for every frame.
  radius = np.hypot(semi_a, semi_b) + MARGIN
  low = radius - offset.min(axis=0)
  high = (size - 1) - radius - offset.max(axis=0)
  if np.any(high < low):
    raise ValueError(f"frame_size {size} is too small for {num_frames} frames of {motion}")
  start = rng.uniform(low, high)

  mean = rng.uniform(0.3, 0.7, size=3)
  direction = rng.normal(size=3)
  direction = direction / np.linalg.norm(direction) + np.full(3, 1.0 / np.sqrt(3))
  direction = direction / np.linalg.norm(direction)   # biased to carry luminance contrast
  half = rng.uniform(*ACTOR_CONTRAST) * direction
  return dict(
      texture=texture, centre=start + offset, angle=angle,
      semi_a=semi_a, semi_b=semi_b, exponent=rng.uniform(*ACTOR_EXPONENT),
      period=rng.uniform(*TEXTURE_PERIOD), orientation=rng.uniform(0, np.pi),
      phase=rng.uniform(0, 2 * np.pi, size=2),
      # Eccentric rings, so that rotating them is visible.
      ring_centre=rng.uniform(0.4, 0.7) * semi_b * _unit(rng.uniform(0, 2 * np.pi)),
      colour_a=np.clip(mean + half, 0, 1), colour_b=np.clip(mean - half, 0, 1))


def _actor_box(actor, size: int):
  """Integer index arrays (t (T,1,1), y (T,B,1), x (T,1,B)) of a box holding the actor.

  The box (side B = 2 h + 1 px, h = bounding radius + 2) contains every pixel
  with non-zero coverage, so rendering outside it would add nothing.
  """
  half = int(np.ceil(np.hypot(actor["semi_a"], actor["semi_b"]) + 2.0))
  side = min(2 * half + 1, size)
  origin = np.clip(np.floor(actor["centre"]).astype(np.int64) - half, 0, size - side)  # (T, 2)
  offsets = np.arange(side)
  num_frames = origin.shape[0]
  frame_idx = np.arange(num_frames)[:, None, None]
  ys = (origin[:, 1, None] + offsets)[:, :, None]
  xs = (origin[:, 0, None] + offsets)[:, None, :]
  return frame_idx, ys, xs


def _unit(angle):
  return np.array([np.cos(angle), np.sin(angle)])


def _to_local(actor, xs, ys):
  """Image coordinates (T, B|1, B|1) -> actor coordinates (T, B, B) (inverse pose)."""
  cx, cy = (actor["centre"][:, i, None, None] for i in (0, 1))
  cos, sin = (f(actor["angle"])[:, None, None] for f in (np.cos, np.sin))
  dx, dy = xs - cx, ys - cy
  return cos * dx + sin * dy, -sin * dx + cos * dy


def _alpha(actor, u, v):
  """Coverage in [0, 1] of a superellipse with a ~1 px linear edge ramp."""
  p = actor["exponent"]
  au, av = np.abs(u) / actor["semi_a"], np.abs(v) / actor["semi_b"]
  s = np.maximum(au ** p + av ** p, 1e-12)
  rho = s ** (1.0 / p)
  grad = s ** (1.0 / p - 1.0) * np.hypot(au ** (p - 1) / actor["semi_a"],
                                         av ** (p - 1) / actor["semi_b"])
  signed_distance = (rho - 1.0) / np.maximum(grad, 1e-6)   # first order, in px
  return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _texture(actor, u, v):
  """Texture value in [0, 1] at actor coordinates (u, v); dominant period `period` px."""
  period, phase = actor["period"], actor["phase"]
  c, s = np.cos(actor["orientation"]), np.sin(actor["orientation"])
  a, b = c * u + s * v, -s * u + c * v
  kind = actor["texture"]
  if kind == "stripes":
    wave = np.sin(2 * np.pi * a / period + phase[0])
  elif kind == "checker":
    # sin(a k) sin(b k) = diagonal gratings of frequency sqrt(2) k: keep period `period`.
    k = 2 * np.pi / (period * np.sqrt(2))
    wave = np.sin(k * a + phase[0]) * np.sin(k * b + phase[1])
  elif kind == "rings":
    r = np.hypot(u - actor["ring_centre"][0], v - actor["ring_centre"][1])
    wave = np.sin(2 * np.pi * r / period + phase[0])
  else:
    raise ValueError(f"unknown texture {kind!r}")
  return 0.5 + 0.5 * np.tanh(TEXTURE_SHARPNESS * wave) / np.tanh(TEXTURE_SHARPNESS)


def _rigid_flow(actor, xs, ys):
  """Exact forward flow (T-1, B, B, 2) at pixels (xs, ys) of frames 0..T-2, in px (u, v).

  x' = c_{t+1} + R(angle_{t+1} - angle_t) (x - c_t), flow = x' - x.
  """
  centre, angle = actor["centre"], actor["angle"]
  d_angle = np.diff(angle)[:, None, None]
  cos, sin = np.cos(d_angle), np.sin(d_angle)
  dx = xs - centre[:-1, 0, None, None]
  dy = ys - centre[:-1, 1, None, None]
  new_x = centre[1:, 0, None, None] + cos * dx - sin * dy
  new_y = centre[1:, 1, None, None] + sin * dx + cos * dy
  return np.stack(np.broadcast_arrays(new_x - xs, new_y - ys), axis=-1)


# ----------------------------------------------------------------------- background


def _background(rng, size: int):
  """Static clutter (H, W, 3) in [0, 1]: a base colour plus coloured gratings."""
  ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64),
                       indexing="ij")
  image = np.broadcast_to(rng.uniform(0.25, 0.75, size=3), (size, size, 3)).copy()
  for _ in range(BACKGROUND_GRATINGS):
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(*BACKGROUND_PERIOD)
    wave = np.sin(2 * np.pi * (np.cos(theta) * xs + np.sin(theta) * ys) / period
                  + rng.uniform(0, 2 * np.pi))
    colour = rng.normal(size=3) * 0.3 + 1.0
    image += rng.uniform(*BACKGROUND_AMPLITUDE) * wave[..., None] * colour
  return np.clip(image, 0.0, 1.0)
