"""TFDS builder of `synthetic_actions`: a procedural action data set, no download.

Each example is one clip rendered by `generator.render_clip` (see there for the
classes and the design), with its 4x bicubic LR version, exact optical flow and
actor mask:

  hr     uint8   (T, H, W, 3)      HR frames
  lr     uint8   (T, H/s, W/s, 3)  `arsr_jax.media.degrade.bicubic_downsample(hr, s)`
  flow   float16 (T-1, H, W, 2)    exact forward flow frame t -> t+1 in HR pixels,
                                   (u, v) = (x, y) displacement; 0 on the background
  mask   uint8   (T, H, W)         1 where an actor covers the pixel
  label  int64   ()                ClassLabel over `generator.CLASS_NAMES`
  id     int32   ()                index of the example within its split

Example i of split s (train = 0, test = 1) is rendered from
`np.random.default_rng([seed, s, i])`, with label i % 12, so the data does not
depend on generation order and rebuilding gives identical records. Files are
written as array_record, readable without TensorFlow through
`tfds.data_source(...)` / `builder.as_data_source()` (in key-hash order, not id
order: use the `id` feature to identify an example).
"""

from __future__ import annotations

import dataclasses

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from arsr_jax.media.degrade import bicubic_downsample
from tfds_builders.synthetic_actions import generator

SPLITS = ("train", "test")


@dataclasses.dataclass
class SyntheticActionsConfig(tfds.core.BuilderConfig):
  """Clip geometry, LR scale, split sizes and seed of one variant.

  frame_size: HR frame height = width in pixels (divisible by `scale`).
  num_frames: frames per clip (T).
  scale: HR / LR size ratio.
  num_train, num_test: number of clips per split.
  seed: root seed of the generator.
  """
  frame_size: int = 128
  num_frames: int = 16
  scale: int = 4
  num_train: int = 384
  num_test: int = 96
  seed: int = 0


class Builder(tfds.core.GeneratorBasedBuilder):
  """Procedurally rendered action clips (HR, LR, exact flow, actor masks)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SyntheticActionsConfig(
          name="default", description="128x128 HR, 16 frames, 4x LR; 384 train / 96 test clips.",
          frame_size=128, num_frames=16, scale=4, num_train=384, num_test=96),
      SyntheticActionsConfig(
          name="small", description="64x64 HR, 8 frames, 4x LR; 64 train / 32 test (tests, smoke).",
          frame_size=64, num_frames=8, scale=4, num_train=64, num_test=32),
      SyntheticActionsConfig(
          name="study", description="64x64 HR, 12 frames, 4x LR; 960 train / 480 test (CPU-size study).",
          frame_size=64, num_frames=12, scale=4, num_train=960, num_test=480),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"
  DEFAULT_FILE_FORMAT = "array_record"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.x's own lookup touches the `importlib_resources` backport, which
    # is not installed on Python >= 3.9; the file path is all it needs.
    return epath.Path(__file__)

  def __init__(self, *, file_format=None, **kwargs):
    # array_record gives random access (tfds.data_source, grain) without TF.
    super().__init__(file_format=file_format or self.DEFAULT_FILE_FORMAT, **kwargs)

  def _log_download_bytes(self) -> None:
    # Instead of TFDS's "Downloading and preparing dataset Unknown size ..." (nothing is downloaded).
    c = self.builder_config
    logging.info("synthetic_actions/%s: rendering %d train + %d test clips locally into %s", c.name,
                 c.num_train, c.num_test, self.data_dir)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    t, size, lr_size = cfg.num_frames, cfg.frame_size, cfg.frame_size // cfg.scale
    zlib, raw = tfds.features.Encoding.ZLIB, tfds.features.Encoding.BYTES
    tensor = tfds.features.Tensor
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "hr": tensor(shape=(t, size, size, 3), dtype=np.uint8, encoding=raw),
            "lr": tensor(shape=(t, lr_size, lr_size, 3), dtype=np.uint8, encoding=raw),
            "flow": tensor(shape=(t - 1, size, size, 2), dtype=np.float16, encoding=zlib),
            "mask": tensor(shape=(t, size, size), dtype=np.uint8, encoding=zlib),
            "label": tfds.features.ClassLabel(names=list(generator.CLASS_NAMES)),
            "id": tensor(shape=(), dtype=np.int32),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.builder_config
    sizes = {"train": cfg.num_train, "test": cfg.num_test}
    return {split: self._generate_examples(split, sizes[split]) for split in SPLITS}

  def _generate_examples(self, split: str, num_examples: int):
    for index in range(num_examples):
      yield index, make_example(self.builder_config, split, index)


def make_example(cfg: SyntheticActionsConfig, split: str, index: int) -> dict[str, np.ndarray]:
  """The stored example `index` of `split` under `cfg` (deterministic, order-free)."""
  rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index])
  clip = generator.render_clip(rng, cfg, label=index % generator.NUM_CLASSES)
  return {
      "hr": clip["hr"],
      "lr": bicubic_downsample(clip["hr"], cfg.scale),
      "flow": clip["flow"].astype(np.float16),
      "mask": clip["mask"],
      "label": clip["label"],
      "id": np.int32(index),
  }
