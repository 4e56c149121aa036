"""TFDS builder of `cdvl_sr`: training clips of natural videos chosen by moving area (CDVL-134).

Any folder of videos in manual_dir (recursively, not into linked folders; files linked
to outside manual_dir are skipped; the paper uses 134 CDVL videos).
Each video is resized to a shorter side of `short_side` px (aspect kept: 320x240
for 4:3), `num_positions` clip starts are spread over it, and the `top_k`
p x p crops with the largest moving area (pixels with |TV-L1 flow| > 0.5 px on
the clip's middle frame pair; see `motion_crops`) are kept as clips:

  hr               uint8   (T, p, p, 3)      HR crop of T consecutive frames
  lr               uint8   (T, p/s, p/s, 3)  `arsr_jax.media.degrade.bicubic_downsample(hr, s)`
  flow             float16 (T-1, p, p, 2)    TV-L1 forward flow t -> t+1 in HR pixels, (u, v),
                                             computed on the whole frames, then cropped; zlib
  moving_fraction  float32 ()                moving fraction of the crop that chose it
  start_frame      int32   ()                first frame of the clip in the video
  crop_yx          int32   (2,)              crop corner in the resized frame
  video            text                      file path relative to manual_dir
  id               int32   ()                index in the split (videos sorted by path)

With T = 7 a clip is the 7-frame LR window of VSR-DUF around its middle frame,
and holds ToSR's frame pairs (t, t+1) and (t, t+2). Videos go to 'test' when a
hash of their file name falls below `test_fraction` (at least one video when
there are several; a single video goes to 'train').
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os

import numpy as np
import tensorflow_datasets as tfds

from arsr_jax.flow.tvl1 import TVL1Params
from tfds_builders import paths, video_prep
from tfds_builders.cdvl_sr import motion_crops
from tfds_builders.video_builder import VideoPrepBuilder
from tfds_builders.video_prep import SkipVideo, Task

DEMO_TVL1 = TVL1Params(nscales=3, warps=1, inner_iterations=10, outer_iterations=2,
                       median_filtering=3)


# The real-video corpus (../shared/data/corpus, 48 clips): 16-frame clips (I3D windows for the
# consistency objective), about 70 TV-L1 pairs per video at 240 px, cache shared by both scales.
CORPUS = dict(scale=4, patch_size=128, clip_frames=16, num_positions=12, top_k=4, tvl1=DEMO_TVL1,
              flow_batch=8, test_fraction=0.15, validation_fraction=0.1, shared_cache=True)


@dataclasses.dataclass
class CdvlConfig(tfds.core.BuilderConfig):
  """Crop selection and degradation of one variant.

  scale: HR / LR size ratio (patch_size must be divisible by it).
  patch_size: HR crop side p in pixels.
  clip_frames: frames per clip (T).
  num_positions: clip starts sampled per video (paper: 120).
  top_k: clips kept per video (paper: 10).
  short_side: resized frame's shorter side in px (0: native size, made even).
  crop_stride: stride of the candidate crop grid (0: patch_size // 2).
  motion_threshold: a pixel moves when |flow| > this (px).
  max_iou: kept clips overlapping in time may share at most this crop IoU.
  min_moving_fraction: crops moving less are never kept.
  test_fraction: share of the videos (by file-name hash) in 'test'.
  validation_fraction: share of the videos (by file-name hash) in 'validation' (0: no such split).
  shared_cache: the cache holds HR and flow only (LR made when examples are written), so configs
    that differ only in scale (corpus_x4 / corpus_x8) share one TV-L1 preparation.
  tvl1: TV-L1 parameters.
  flow_batch: frame pairs per TV-L1 call.
  """
  scale: int = 4
  patch_size: int = 128
  clip_frames: int = 7
  num_positions: int = 120
  top_k: int = 10
  short_side: int = 240
  crop_stride: int = 0
  motion_threshold: float = 0.5
  max_iou: float = 0.25
  min_moving_fraction: float = 0.0
  test_fraction: float = 0.1
  validation_fraction: float = 0.0
  shared_cache: bool = False
  tvl1: TVL1Params = TVL1Params()
  flow_batch: int = 16


@dataclasses.dataclass(frozen=True)
class CropSpec:
  """Everything in CdvlConfig that changes a video's clips (the cache identity)."""
  scale: int
  patch_size: int
  clip_frames: int
  num_positions: int
  top_k: int
  short_side: int
  crop_stride: int
  motion_threshold: float
  max_iou: float
  min_moving_fraction: float
  tvl1: TVL1Params
  flow_batch: int


def decode_windows(spec: CropSpec, task: Task) -> dict[str, np.ndarray]:
  """Worker: decode + resize, keep the frames of the sampled clip windows. Raises SkipVideo."""
  if task.meta.get("raw"):
    raise SkipVideo("raw video without a header (size, format): convert it first, e.g. "
                    "ffmpeg -f rawvideo -pix_fmt yuv420p -s WxH -i in.yuv -c:v ffv1 out.mkv")
  if spec.short_side:
    size = functools.partial(video_prep.fit_short_side, short_side=spec.short_side)
  else:
    size = lambda h, w: (video_prep.round_to(h, 2), video_prep.round_to(w, 2))  # noqa: E731
  frames = video_prep.decode(task.path, size=size)
  video_prep.require_frames(frames, spec.clip_frames)
  h, w = frames.shape[1:3]
  if min(h, w) < spec.patch_size:
    raise SkipVideo(f"frames of {h}x{w} px (after resizing) are smaller than a "
                    f"{spec.patch_size} px patch")
  starts = motion_crops.window_starts(len(frames), spec.clip_frames, spec.num_positions)
  index = np.unique(starts[:, None] + np.arange(spec.clip_frames)[None])
  return {"frames": frames[index], "index": index, "starts": starts}


def select_clips(spec: CropSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Main process: scoring flow, crop selection, clip flow and LR (see motion_crops)."""
  frames, starts, t_len, p = arrays["frames"], arrays["starts"], spec.clip_frames, spec.patch_size
  row = {int(f): i for i, f in enumerate(arrays["index"])}
  flows: dict[int, np.ndarray] = {}  # frame t -> flow t -> t+1 (H, W, 2)

  def compute(firsts):
    firsts = [t for t in dict.fromkeys(firsts) if t not in flows]
    if firsts:
      f0 = frames[[row[t] for t in firsts]]
      f1 = frames[[row[t + 1] for t in firsts]]
      flows.update(zip(firsts, video_prep.flow_pairs(f0, f1, spec.tvl1, spec.flow_batch)))

  c = motion_crops.score_pair(t_len)
  compute([int(t) + c for t in starts])
  moving = np.stack([np.linalg.norm(flows[int(t) + c], axis=-1) > spec.motion_threshold
                     for t in starts])
  ys = motion_crops.grid(frames.shape[1], p, spec.crop_stride or p // 2)
  xs = motion_crops.grid(frames.shape[2], p, spec.crop_stride or p // 2)
  chosen = motion_crops.select(
      motion_crops.moving_fractions(moving, p, ys, xs), starts, ys, xs, patch=p,
      clip_frames=t_len, top_k=spec.top_k, max_iou=spec.max_iou,
      min_fraction=spec.min_moving_fraction)
  if not chosen:
    raise SkipVideo(f"no crop moves on at least {spec.min_moving_fraction:.0%} of its pixels")
  compute([t + j for _, t, _, _ in chosen for j in range(t_len - 1)])
  hr = np.stack([frames[[row[t + j] for j in range(t_len)], y:y + p, x:x + p]
                 for _, t, y, x in chosen])
  flow = np.stack([[flows[t + j][y:y + p, x:x + p] for j in range(t_len - 1)]
                   for _, t, y, x in chosen])
  out = {"hr": hr, "lr": lr_clips(hr, spec.scale)} if spec.scale else {"hr": hr}
  return {**out, "flow": flow.astype(np.float16),
          "moving_fraction": np.float32([s for s, _, _, _ in chosen]),
          "start_frame": np.int32([t for _, t, _, _ in chosen]),
          "crop_yx": np.int32([(y, x) for _, _, y, x in chosen])}


def lr_clips(hr: np.ndarray, scale: int) -> np.ndarray:
  """(N, T, p, p, 3) uint8 HR clips -> (N, T, p/s, p/s, 3) uint8 bicubic LR clips."""
  lr = video_prep.bicubic_lr(hr.reshape((-1,) + hr.shape[2:]), scale)
  return lr.reshape(hr.shape[:2] + lr.shape[1:])


def name_hash(path: str) -> float:
  """A stable number in [0, 1) from a video's file name."""
  digest = hashlib.sha1(os.path.basename(path).encode("utf-8")).hexdigest()
  return int(digest[:12], 16) / float(1 << 48)


def assign_splits(paths: list[str], test_fraction: float, validation_fraction: float = 0.0
                  ) -> dict[str, list[str]]:
  """{'train', 'test'[, 'validation']: [...]} by file-name hash, whole videos only.

  A video goes to 'test' when its hash is below test_fraction, to 'validation' when it is in
  [test_fraction, test_fraction + validation_fraction); splits are never empty (see the module doc).
  """
  if len(paths) <= 1 or test_fraction <= 0:
    return {"train": list(paths)}
  test = [p for p in paths if name_hash(p) < test_fraction]
  if not test:
    test = [min(paths, key=name_hash)]
  if len(test) == len(paths):
    test.remove(max(paths, key=name_hash))
  out = {"train": [p for p in paths if p not in test], "test": test}
  if validation_fraction > 0 and len(out["train"]) > 1:
    val = [p for p in out["train"] if name_hash(p) < test_fraction + validation_fraction]
    val = val or [min(out["train"], key=name_hash)]
    if len(val) == len(out["train"]):
      val.remove(max(val, key=name_hash))
    out["train"] = [p for p in out["train"] if p not in val]
    out["validation"] = val
  return out


class Builder(VideoPrepBuilder):
  """Natural-video SR training clips chosen by moving area (HR, LR, TV-L1 flow)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      CdvlConfig(name="x4", scale=4,
                 description="Paper protocol: 128 px, 4x, 120 positions, top 10."),
      CdvlConfig(name="x8", scale=8,
                 description="Paper protocol at 8x (128 px patches, 16 px LR)."),
      CdvlConfig(name="demo", scale=4, num_positions=16, top_k=4, tvl1=DEMO_TVL1, flow_batch=8,
                 test_fraction=0.25,
                 description="CPU demo: 16 positions, top 4 crops, light TV-L1."),
      CdvlConfig(name="demo_x8", scale=8, num_positions=16, top_k=4, tvl1=DEMO_TVL1, flow_batch=8,
                 test_fraction=0.25,
                 description="CPU demo at 8x: 16 positions, top 4 crops, light TV-L1."),
      CdvlConfig(name="corpus_x4", **CORPUS,
                 description="../shared/data/corpus (48 clips) at 4x: 16-frame 128 px clips, 12 "
                             "positions, top 4, light TV-L1; split by clip 15% test, 10% validation."),
      CdvlConfig(name="corpus_x8", **dict(CORPUS, scale=8),
                 description="corpus_x4 at 8x (same crops and flow: one shared preparation)."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "x4"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the videos (any FFmpeg-readable container: .mp4, .avi, .mkv, ...) into manual_dir, in
  any folder structure; for the paper's CDVL-134, the 134 videos from https://www.cdvl.org/
  (free registration). Raw .yuv files must be converted to a container first.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    if cfg.patch_size % cfg.scale:
      raise ValueError(f"cdvl_sr/{cfg.name}: patch_size {cfg.patch_size} is not divisible by "
                       f"scale {cfg.scale}")
    t, p, q = cfg.clip_frames, cfg.patch_size, cfg.patch_size // cfg.scale
    tensor = tfds.features.Tensor
    raw, zlib = tfds.features.Encoding.BYTES, tfds.features.Encoding.ZLIB
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__, metadata=tfds.core.MetadataDict(),
        features=tfds.features.FeaturesDict({
            "hr": tensor(shape=(t, p, p, 3), dtype=np.uint8, encoding=raw),
            "lr": tensor(shape=(t, q, q, 3), dtype=np.uint8, encoding=raw),
            "flow": tensor(shape=(t - 1, p, p, 2), dtype=np.float16, encoding=zlib),
            "moving_fraction": tensor(shape=(), dtype=np.float32),
            "start_frame": tensor(shape=(), dtype=np.int32),
            "crop_yx": tensor(shape=(2,), dtype=np.int32),
            "video": tfds.features.Text(),
            "id": tensor(shape=(), dtype=np.int32),
        }))

  def _prep_spec(self) -> CropSpec:
    cfg = self.builder_config
    spec = CropSpec(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(CropSpec)})
    return dataclasses.replace(spec, scale=0) if cfg.shared_cache else spec

  def _work_fn(self):
    return functools.partial(decode_windows, self._prep_spec())

  def _post(self, task: Task, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return select_clips(self._prep_spec(), arrays)

  def _tasks(self, manual_dir: str):
    videos, raw = video_prep.list_videos(manual_dir)
    if not videos and not raw:
      raise FileNotFoundError(f"{self.name}: no video files found in manual_dir {manual_dir} "
                              f"(extensions {', '.join(video_prep.VIDEO_EXTENSIONS)})")
    is_raw = set(raw)
    cfg = self.builder_config
    splits = assign_splits(sorted(videos + raw), cfg.test_fraction, cfg.validation_fraction)
    return {split: [paths.video_task(manual_dir, os.path.join(manual_dir, rel), key=rel,
                                     split=split, meta={"raw": rel in is_raw}) for rel in rels]
            for split, rels in splits.items()}

  def _examples(self, task: Task, arrays: dict[str, np.ndarray]):
    if "lr" not in arrays:  # shared cache: HR and flow only
      arrays = dict(arrays, lr=lr_clips(arrays["hr"], self.builder_config.scale))
    for k in range(len(arrays["hr"])):
      yield f"{task.key}#{k}", {
          "hr": arrays["hr"][k], "lr": arrays["lr"][k], "flow": arrays["flow"][k],
          "moving_fraction": arrays["moving_fraction"][k], "start_frame": arrays["start_frame"][k],
          "crop_yx": arrays["crop_yx"][k], "video": task.key}
