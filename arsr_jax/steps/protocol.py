"""The per-method computations of the evaluation protocol: host sampling and jitted steps.

Two-stream path (the paper's Fig. 1), per video with TSN's test sampling:
  LR frames --spatial SR--> S frames --spatial stream--> (C,) scores
  LR frames --temporal SR--> S stacks of L+1 frames --TV-L1--> S x L flows
            --clip to +-bound, TSN uint8 storage--> (H, W, 2L) stacks --temporal stream--> (C,)
plus PSNR/SSIM (Y) of the spatial frames and the warping error of the temporal
SR frames under the HR flow. Clip path: consecutive clip_length windows of SR
frames --clip recognizer--> (W, C) scores. SR outputs are clipped to [0, 1]
and quantized to 8 bits, as saved SR frames would be. Everything after the
host's uint8 sampling runs in one jitted function on the accelerator.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax.data import pipeline
from arsr_jax.flow import io as flow_io
from arsr_jax.flow import tvl1
from arsr_jax.media import degrade
from arsr_jax.metrics import image as image_metrics
from arsr_jax.metrics import recognition as recognition_metrics
from arsr_jax.recognition import tsn
from arsr_jax.steps import recognition as rec_steps
from arsr_jax.steps import sr as sr_steps

BICUBIC, HR = "bicubic", "hr"


def input_frames(sr) -> int:
  """LR window size an SR source consumes (1 for bicubic / HR / frame models)."""
  return sr.input_frames if not isinstance(sr, str) else 1


def sample_two_stream(example: dict[str, Any], num_segments: int, flow_stack: int, k_spatial: int,
                      k_temporal: int, centre_rgb: bool) -> dict[str, np.ndarray]:
  """uint8 LR/HR frames of one video for both streams (TSN test sampling).

  sp_lr (S, K, h, w, 3), sp_hr (S, H, W, 3); tp_lr (S, L+1, K, h, w, 3), tp_hr (S, L+1, H, W, 3);
  'hr_flow' (S, L, H, W, 2) when the dataset stores flow. ``centre_rgb``: the spatial frame is the
  centre of each flow stack (ST-ResNet) instead of TSN's own 25 frames.
  """
  hr, lr = example["hr"], example["lr"]
  t = hr.shape[0]
  starts = tsn.segment_indices(t - 1, num_segments, flow_stack)
  tp_idx = starts[:, None] + np.arange(flow_stack + 1)
  sp_idx = starts + flow_stack // 2 if centre_rgb else tsn.segment_indices(t, num_segments, 1)
  out = {"sp_lr": lr[pipeline.lr_window(t, sp_idx, k_spatial)], "sp_hr": hr[sp_idx],
         "tp_lr": lr[pipeline.lr_window(t, tp_idx.ravel(), k_temporal)].reshape(
             (num_segments, flow_stack + 1, k_temporal) + lr.shape[1:]),
         "tp_hr": hr[tp_idx]}
  if "flow" in example:
    out["hr_flow"] = np.asarray(example["flow"])[starts[:, None] + np.arange(flow_stack)]
  return out


def super_resolve(sr, lr_windows: jax.Array, hr: jax.Array) -> jax.Array:
  """Frames (..., H, W, 3) in [0, 1], 8-bit levels, from uint8 LR windows (..., K, h, w, 3).

  ``sr`` is 'bicubic', 'hr' (returns ``hr``) or a FrozenSR (frame or K-window model).
  """
  if sr == HR:
    return hr.astype(jnp.float32) / 255.0
  lr = lr_windows.astype(jnp.float32) / 255.0
  centre = lr[..., lr.shape[-4] // 2, :, :, :]
  if sr == BICUBIC:
    out = degrade.bicubic_upsample(centre, hr.shape[-2] // centre.shape[-2])
  else:
    out = _apply(sr, lr if sr.input_frames > 1 else centre)
  return image_metrics.quantize(jnp.clip(out, 0.0, 1.0))


def super_resolve_clips(sr, lr: jax.Array, scale: int, size: int = 0) -> jax.Array:
  """SR clips (B, T, H, W, 3) in [0, 1], 8-bit levels, from LR clips (B, T, h, w, 3) (uint8 or [0, 1]).

  ``sr``: 'bicubic' (x ``scale``) or a FrozenSR clip or frame model (frame models run frame by frame).
  ``size`` > 0 resizes the output to size x size (bilinear, as the clip path's recognizer input).
  The one super-resolver of windows of frames (the protocol, classifiers on SR output, the studies);
  streams of frames go through ``inference.Upscaler``.
  """
  x = lr.astype(jnp.float32) / 255.0 if lr.dtype == jnp.uint8 else lr.astype(jnp.float32)
  if sr == BICUBIC:
    out = degrade.bicubic_upsample(x, scale)
  elif sr.is_clip_model or sr.input_frames == 1:
    out = _apply(sr, x)  # a frame model sees the clip's frames as extra leading axes
    if out.shape[:4] != x.shape[:2] + (x.shape[2] * scale, x.shape[3] * scale):
      raise ValueError(f"SR network {sr.name} maps clips {x.shape[1:4]} to {out.shape[1:4]}, not x{scale} "
                       "with every frame (an intermediate progressive stage?)")
  else:
    raise ValueError(f"SR network {sr.name} consumes {sr.input_frames}-frame windows; clip inputs take clip "
                     "or frame models")
  out = image_metrics.quantize(jnp.clip(out, 0.0, 1.0))
  if size and out.shape[-2] != size:
    out = jax.image.resize(out, out.shape[:-3] + (size, size, 3), "bilinear")
  return out


def _apply(sr, lr: jax.Array) -> jax.Array:
  """float32 SR output of a FrozenSR on ``lr`` (its input with any extra leading axes), unclipped."""
  out, _ = sr_steps.split_output(sr_steps.apply_sr(sr.model, sr.variables, lr, train=False, **sr.call_kwargs))
  return out.astype(jnp.float32)


def centre_crop(x: jax.Array, size: int) -> jax.Array:
  """(..., H, W, C) -> (..., size, size, C) centre crop (TSN's test crop); size 0 = unchanged."""
  if not size:
    return x
  h, w = x.shape[-3:-1]
  if size > min(h, w):
    raise ValueError(f"Recognizer crop {size} exceeds the {h}x{w} frames")
  top, left = (h - size) // 2, (w - size) // 2
  return x[..., top:top + size, left:left + size, :]


VIEWS = (1, 10)  # test views per segment: TSN's centre crop, or its 10 (protocol.views)


def tsn_views(x: jax.Array, size: int, views: int, flow: bool = False) -> jax.Array:
  """TSN's test views of snippets (B, S, H, W, C) -> (B, V * S, size, size, C), view-major.

  views=1: the centre crop (tsn-pytorch test_models.py --test_crops 1, GroupCenterCrop).
  views=10: the 4 corner crops and the centre crop, each also mirrored (--test_crops 10,
  GroupOverSample with fill_fix_offset's 5 offsets, w_step = (W - size) // 4); a mirrored flow
  stack negates u (channels 0, 2, ...), as GroupOverSample inverts the x images of a flipped
  flow crop. TSN averages the scores over views and segments: the recognizers' segment
  consensus (a mean over axis 1) over V * S snippets does exactly that. ``size`` 0 = whole frame.
  """
  if views not in VIEWS:
    raise ValueError(f"protocol.views={views}: use one of {VIEWS}")
  if views == 1:
    return centre_crop(x, size)
  h, w = x.shape[-3:-1]
  ch, cw = (size, size) if size else (h, w)
  if ch > h or cw > w:
    raise ValueError(f"Recognizer crop {size} exceeds the {h}x{w} frames")
  ws, hs = (w - cw) // 4, (h - ch) // 4
  out = []
  for ox, oy in ((0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)):
    crop = x[..., oy:oy + ch, ox:ox + cw, :]
    out += [crop, tsn.mirror(crop, flow)]
  return jnp.concatenate(out, axis=1)


def make_two_stream_step(spatial_sr, temporal_sr, recognizers: dict[str, Any], tvl1_params: tvl1.TVL1Params,
                         flow_bound: float, border: int, hr_flow_stored: bool, mesh=None,
                         views: int = 10) -> Callable:
  """``step(batch) -> dict`` of per-video outputs (B, ...) for one method.

  ``recognizers``: {'spatial': FrozenRecognizer, 'temporal': ...} or {'two_stream': ...}; each sees
  ``views`` test views (:func:`tsn_views`) of its crop of every segment.
  Outputs: 'spatial'/'temporal' logits (B, C) for the streams present, 'psnr', 'ssim'
  (spatial frames vs HR, mean over segments) and 'warp_error' (temporal SR frames). ``mesh``: the
  devices whose ``data`` axis TV-L1 splits the batch over (default: all, ``sharding.make_mesh``).
  """
  flow_fn = lambda a, b: tvl1.tvl1_flow_sharded(a, b, tvl1_params, mesh)  # noqa: E731  per device, compacting

  def flows_of(frames):  # (B, S, L+1, H, W, 3) -> (B, S, L, H, W, 2)
    lead = frames.shape[:3]
    a = frames[:, :, :-1].reshape((-1,) + frames.shape[3:])
    b = frames[:, :, 1:].reshape((-1,) + frames.shape[3:])
    return flow_fn(a, b).reshape(lead[:2] + (lead[2] - 1,) + frames.shape[3:5] + (2,))

  def step(batch):
    out = {}
    sp = super_resolve(spatial_sr, batch["sp_lr"], batch["sp_hr"])  # (B, S, H, W, 3)
    tp = super_resolve(temporal_sr, batch["tp_lr"], batch["tp_hr"])  # (B, S, L+1, H, W, 3)
    flow = flows_of(tp)
    # What a TSN-style pipeline stores: flow clipped to +-bound and quantized to uint8.
    flow = flow_io.dequantize_flow(flow_io.quantize_flow(flow, flow_bound), flow_bound)
    stacks = tsn.stack_flow(flow)  # (B, S, H, W, 2L)
    inputs = {"rgb": sp, "flow": stacks}
    for name, rec in recognizers.items():
      # flow: full frames, then cropped; the scores average over views and segments (TSN)
      seen = {k: tsn_views(v, rec.crop_size, views, flow=k == "flow") for k, v in inputs.items()}
      logits = rec_steps.apply(rec.model, rec.variables, rec.kind, seen, train=False)
      if "logits" in logits:
        out[name] = logits["logits"].astype(jnp.float32)
      else:
        out.update({k: v.astype(jnp.float32) for k, v in logits.items()})
    fold = lambda x: x.reshape((-1,) + x.shape[-3:])  # noqa: E731
    hr = batch["sp_hr"].astype(jnp.float32) / 255.0
    b, s = sp.shape[:2]
    out["psnr"] = image_metrics.psnr_y(fold(sp), fold(hr), border=border).reshape(b, s).mean(1)
    out["ssim"] = image_metrics.ssim_y(fold(sp), fold(hr), border=border).reshape(b, s).mean(1)
    hr_flow = batch["hr_flow"].astype(jnp.float32) if hr_flow_stored else flows_of(
        batch["tp_hr"].astype(jnp.float32) / 255.0)
    out["warp_error"] = recognition_metrics.warping_error(tp, hr_flow, border=border).mean(1)
    return out

  return step


def sample_clips(example: dict[str, Any], clip_length: int, k: int, scale: int,
                 lr_size: int = 0) -> dict[str, np.ndarray]:
  """Consecutive clip_length windows (W, L, ...) of one video (short videos repeat their last frame).

  'lr' (W, L, K, h, w, 3); 'hr' (W, L, h*s, w*s, 3), zeros for natively small video stored as
  'video' without HR (TinyVIRAT: the 'hr' method is then unavailable). ``lr_size`` resizes LR first.
  """
  if "hr" in example:
    hr, lr = example["hr"], example["lr"]
  else:
    lr = example["lr"] if "lr" in example else example["video"]
    hr = None
  if lr_size and lr.shape[1:3] != (lr_size, lr_size):
    lr = np.asarray(degrade.resize(lr, lr_size, lr_size))
  t = lr.shape[0]
  idx = recognition_metrics.clip_frame_indices(t, clip_length)
  lr_w = lr[pipeline.lr_window(t, idx.ravel(), k)].reshape(idx.shape + (k,) + lr.shape[1:])
  if hr is None:
    hr_w = np.zeros(idx.shape + (lr.shape[1] * scale, lr.shape[2] * scale, 3), np.uint8)
  else:
    hr_w = hr[idx]
  return {"lr": lr_w, "hr": hr_w}


def make_clip_step(sr, recognizer, input_size: int | None) -> Callable:
  """``step(batch) -> {'logits': (W, C)}`` for a batch of windows of one or more videos."""
  def step(batch):
    lr, hr = batch["lr"], batch["hr"]
    if sr not in (BICUBIC, HR) and sr.is_clip_model:
      frames = super_resolve_clips(sr, lr[:, :, lr.shape[2] // 2], sr.scale, input_size or 0)
    else:
      frames = super_resolve(sr, lr, hr)
      if input_size and frames.shape[-2] != input_size:
        frames = jax.image.resize(frames, frames.shape[:-3] + (input_size, input_size, 3), "bilinear")
    logits = rec_steps.apply(recognizer.model, recognizer.variables, "clip", {"clip": frames}, train=False)
    return {"logits": logits["logits"].astype(jnp.float32)}
  return step
