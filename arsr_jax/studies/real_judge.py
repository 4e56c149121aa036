"""Judging SR methods on real videos with the frozen Kinetics-400 I3D, window by window.

A video gives ``num_windows`` 16-frame windows with starts spread evenly over it (overlapping
when the video is short), each resized to a short side of 256 and centre-cropped to 224 px
(DeepMind's protocol) = HR; LR = bicubic 1/s of HR (uint8); every method brings LR back to
224 px (uint8). Per window and method: I3D logits, PSNR/SSIM-Y (mean over frames, ``scale`` px
border shaved). ``summarize`` turns that into agreement with the HR prediction, KL(HR || method),
ground-truth top-1 where a clip's class maps to Kinetics-400, and paired differences to bicubic
with 95% intervals from a bootstrap over clips (metrics/paired.py).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from arsr_jax import fileio, writers
from arsr_jax.evaluation import plots
from arsr_jax.media import degrade, video
from arsr_jax.metrics import image as image_metrics
from arsr_jax.metrics import paired
from arsr_jax.metrics import recognition as recognition_metrics
from arsr_jax.recognition import i3d
from arsr_jax.steps import protocol as protocol_steps
from tfds_builders import video_prep
from tfds_builders.cdvl_sr import cdvl_sr_dataset_builder as cdvl

CLIP, SIZE = 16, 224
BASELINE = "bicubic"
PIXEL_BASELINE = "vdsr"  # the pixel-loss network the other objectives are compared with (issue 13)
# Kinetics-400 class of a held-out clip, by file-name prefix (UCF101 names: v_<Class>_...); UCF101
# "Basketball" is the shooting class; Fencing has no Kinetics-400 class (no ground truth).
KINETICS_CLASS = {
    "kinetics_arm_wrestling": "arm wrestling", "kinetics_cleaning_pool": "cleaning pool",
    "v_Basketball": "shooting basketball", "v_Biking": "riding a bike",
    "v_HorseRiding": "riding or walking with horse", "v_SalsaSpin": "salsa dancing",
}


def window_starts(num_frames: int, num_windows: int) -> np.ndarray:
  """``num_windows`` distinct-as-possible starts of 16-frame windows spread over a video."""
  return np.unique(np.round(np.linspace(0, max(0, num_frames - CLIP), num_windows)).astype(int))


def hr_windows(path: str, num_windows: int, consecutive: bool = False) -> np.ndarray:
  """(W, 16, 224, 224, 3) uint8 HR windows of a video (see the module doc); ``consecutive``: the
  first ``num_windows`` back-to-back windows instead of starts spread over the video."""
  frames = video.read_video(path)
  if frames.shape[0] < CLIP:
    raise ValueError(f"{path}: {frames.shape[0]} frames, fewer than the {CLIP} of one I3D window")
  starts = ([a for a, _ in recognition_metrics.clip_windows(frames.shape[0], CLIP)[:num_windows]] if consecutive
            else window_starts(frames.shape[0], num_windows))
  clips = [frames[s:s + CLIP] for s in starts]
  x = np.stack([np.asarray(i3d.preprocess(c, size=SIZE, num_frames=None))[0] for c in clips])
  lo, hi = i3d.I3D.INPUT_RANGE  # back to 8-bit levels: (x + 1) * 127.5
  return np.round((x - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)


def videos(folder: str, dataset: str | None = None, split: str = "test") -> list[str]:
  """Sorted video files of ``folder``; with ``dataset`` (a ``cdvl_sr/...`` name) only those of its
  ``split`` (default: test, the videos SR training never saw; split by file-name hash)."""
  paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if not f.startswith(".") and f.lower().endswith(video_prep.VIDEO_EXTENSIONS))
  if dataset is None:
    return paths
  cfg = next(c for c in cdvl.Builder.BUILDER_CONFIGS if c.name == dataset.split("/")[1])
  return cdvl.assign_splits(paths, cfg.test_fraction, cfg.validation_fraction).get(split, [])


def gt_class(path: str) -> str | None:
  name = os.path.basename(path)
  return next((c for k, c in KINETICS_CLASS.items() if name.startswith(k)), None)


def super_resolver(sr) -> Callable[[np.ndarray, int], np.ndarray]:
  """``run(lr, scale)``: uint8 (W, T, h, w, 3) LR windows -> uint8 (W, T, h*s, w*s, 3), one window at
  a time (bounded memory) through ``steps/protocol.super_resolve_clips``; ``sr`` 'bicubic' or a
  FrozenSR frame or clip model; jitted once per method."""
  fn = jax.jit(lambda x, s: protocol_steps.super_resolve_clips(sr, x[None], s)[0], static_argnums=1)

  def run(lr: np.ndarray, scale: int) -> np.ndarray:
    return np.stack([np.round(np.asarray(fn(w, scale)) * 255.0).astype(np.uint8) for w in lr])
  return run


class Judge:
  """The frozen Kinetics-400 I3D (DeepMind's weights) and the per-window measurements."""

  def __init__(self, sharding: jax.sharding.Sharding | None = None):
    model, variables = i3d.frozen_kinetics400()
    self.variables = jax.device_put(variables, sharding) if sharding is not None else variables
    self._classify = jax.jit(lambda v, x: model.apply(v, i3d.from_uint8(x), train=False))
    self._hr: dict[tuple[str, int], np.ndarray] = {}  # (path, windows) -> HR windows (shared by scales)
    self._quality = jax.jit(lambda a, b, border: (
        image_metrics.psnr_y(a.astype(jnp.float32) / 255, b.astype(jnp.float32) / 255, border=border),
        image_metrics.ssim_y(a.astype(jnp.float32) / 255, b.astype(jnp.float32) / 255, border=border)), static_argnums=2)

  def logits(self, windows: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(self._classify(self.variables, w[None])) for w in windows])

  def quality(self, out: np.ndarray, hr: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-window mean PSNR-Y (dB) and SSIM-Y over the window's frames."""
    p, s = zip(*(self._quality(o, h, border) for o, h in zip(out, hr)))
    return np.asarray([float(x.mean()) for x in p]), np.asarray([float(x.mean()) for x in s])

  def judge(self, methods: dict[str, Any], paths: list[str], scale: int, num_windows: int,
            log: Callable[[str], None] = print, with_hr: bool = True) -> dict[str, Any]:
    """Per-window records of every method on every video: {'clips', 'videos', 'gt', 'hr',
    method: {'logits', 'psnr', 'ssim'}} (lists, JSON-able); ``with_hr=False`` leaves 'hr' empty
    (adding methods to an earlier record, see ``merge``)."""
    rec: dict[str, Any] = {"clips": [], "videos": [], "gt": [], "hr": [],
                           **{m: {"logits": [], "psnr": [], "ssim": []} for m in methods}}
    resolvers = {m: super_resolver(sr) for m, sr in methods.items()}
    for k, path in enumerate(paths):
      if (path, num_windows) not in self._hr:
        self._hr[(path, num_windows)] = hr_windows(path, num_windows)
      hr = self._hr[(path, num_windows)]
      lr = np.asarray(degrade.bicubic_downsample(hr, scale))
      rec["clips"] += [k] * len(hr)
      rec["videos"].append(os.path.basename(path))
      rec["gt"] += [gt_class(path)] * len(hr)
      if with_hr:
        rec["hr"] += self.logits(hr).tolist()
      for m, run in resolvers.items():
        out = run(lr, scale)
        rec[m]["logits"] += self.logits(out).tolist()
        p, s = self.quality(out, hr, scale)
        rec[m]["psnr"] += p.tolist()
        rec[m]["ssim"] += s.tolist()
      log(f"x{scale}: judged {os.path.basename(path)} ({len(hr)} windows; {k + 1}/{len(paths)} videos)")
    return rec


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
  """``old`` record plus the methods of ``new`` (judged later on the same videos and windows)."""
  if old["videos"] != new["videos"] or old["clips"] != new["clips"]:
    raise ValueError(f"records of different videos/windows: {old['videos']} vs {new['videos']}")
  return {**old, **{m: v for m, v in new.items() if isinstance(v, dict) and "logits" in v}}


def summarize(rec: dict[str, Any], seed: int = 0) -> dict[str, Any]:
  """Per method: top-1/top-5 agreement with HR, KL(HR||method), ground-truth top-1 (windows of
  clips with a Kinetics class), PSNR/SSIM-Y, and for learned methods paired differences to
  bicubic ({'mean', 'low', 'high'}, clip bootstrap) of KL, top-1 agreement and PSNR-Y, and the
  same to the pixel-loss VDSR ('vs_vdsr') for the other learned methods."""
  ref, clips = np.asarray(rec["hr"]), np.asarray(rec["clips"])
  labels = list(i3d.KINETICS400_LABELS)
  gt = np.asarray([labels.index(g) if g in labels else -1 for g in rec["gt"]])
  has_gt = gt >= 0
  per_window, out = {}, {}
  for m in [k for k in rec if isinstance(rec[k], dict) and "logits" in rec[k]]:
    x = np.asarray(rec[m]["logits"])
    per_window[m] = {"kl": paired.per_window_kl(ref, x), "top1": (x.argmax(-1) == ref.argmax(-1)).astype(float),
                     "psnr": np.asarray(rec[m]["psnr"]), "ssim": np.asarray(rec[m]["ssim"])}
    out[m] = {"top1_agreement": recognition_metrics.topk_agreement(x, ref, 1), "top5_agreement": recognition_metrics.topk_agreement(x, ref, 5),
              "kl_from_hr": float(per_window[m]["kl"].mean()), "psnr_y": float(per_window[m]["psnr"].mean()),
              "ssim_y": float(per_window[m]["ssim"].mean()),
              "gt_top1": float(np.mean(x[has_gt].argmax(-1) == gt[has_gt])) if has_gt.any() else None}
  for m in out:
    for base in (BASELINE, PIXEL_BASELINE):
      if m not in (BASELINE, base) and base in per_window:
        out[m][f"vs_{base}"] = {k: paired.clip_bootstrap(per_window[m][k] - per_window[base][k], clips, seed=seed)
                                for k in ("kl", "top1", "psnr")}
  hr_gt = float(np.mean(ref[has_gt].argmax(-1) == gt[has_gt])) if has_gt.any() else None
  return {"methods": out, "hr_gt_top1": hr_gt, "windows": int(len(ref)), "clips": int(len(set(clips.tolist()))),
          "gt_windows": int(has_gt.sum()), "per_window_kl": {m: v["kl"].tolist() for m, v in per_window.items()}}


def kl_figure(path: str, rec: dict[str, Any], summary: dict[str, Any], title: str) -> None:
  """PNG: per learned method, KL(HR||bicubic) (x) vs KL(HR||method) (y) per window, coloured by clip."""
  kl = summary["per_window_kl"]
  hi = float(np.ceil(max(max(v) for v in kl.values()) + 1e-9))
  panels, captions = [], []
  for m in [k for k in kl if k != BASELINE]:
    panels.append(plots.scatter_png(None, kl[BASELINE], kl[m], title=f"{title}: {m}", xlabel="KL(HR||bicubic)",
                                    ylabel=f"KL(HR||{m})", limits=(0.0, hi), groups=rec["clips"]))
    captions.append(f"{m}: below the diagonal = closer to HR than bicubic")
  fileio.write_bytes(fileio.path(path), plots.encode_png(plots.image_grid(panels, captions)))


def table(results: dict[str, Any]) -> str:
  """Markdown table of ``{set: {scale: summary}}``."""
  ci = lambda d, f: f"{f(d['mean'])} [{f(d['low'])}, {f(d['high'])}]"  # noqa: E731
  kl, top1, psnr = (lambda v: f"{v:+.3f}"), (lambda v: f"{100 * v:+.1f}"), (lambda v: f"{v:+.2f}")  # noqa: E731
  rows, paired_rows = [], []
  for name, scales in results.items():
    for scale, s in scales.items():
      for m, r in s["methods"].items():
        d = r.get("vs_bicubic")
        rows.append([name, scale, m, f"{100 * r['top1_agreement']:.1f}", f"{100 * r['top5_agreement']:.1f}",
                     f"{r['kl_from_hr']:.3f}", ci(d["kl"], kl) if d else "-", ci(d["top1"], top1) if d else "-",
                     "-" if r["gt_top1"] is None else f"{100 * r['gt_top1']:.0f}", f"{r['psnr_y']:.2f}",
                     ci(d["psnr"], psnr) if d else "-", f"{r['ssim_y']:.3f}"])
        d = r.get(f"vs_{PIXEL_BASELINE}")
        if d:
          paired_rows.append([name, scale, m, ci(d["kl"], kl), ci(d["top1"], top1), ci(d["psnr"], psnr)])
  return "\n".join([
      writers.markdown_table(["set", "scale", "method", "top-1 agree", "top-5 agree", "KL(HR‖m)",
                              "ΔKL vs bicubic [95% CI]", "Δtop-1 vs bicubic [95% CI]", "GT top-1", "PSNR-Y",
                              "ΔPSNR-Y [95% CI]", "SSIM-Y"], rows),
      "", f"Paired differences to the pixel-loss {PIXEL_BASELINE.upper()} (method - {PIXEL_BASELINE}, 95% CI over clips):",
      "", writers.markdown_table(["set", "scale", "method", "ΔKL [95% CI]", "Δtop-1 [95% CI]", "ΔPSNR-Y [95% CI]"],
                                 paired_rows)])
