"""Tests of the manual-download video builders (cdvl_sr, ucf101_sr, hmdb51_sr, tiny_virat).

Each test writes a tiny fake manual_dir (videos with PyAV, split files, JSON
annotations), builds a small config into a temporary data_dir and reads it back
with `tfds.data_source` / grain, without TensorFlow.
"""

import json
import os
import subprocess
import sys
import time

import av
import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from arsr_jax.media.degrade import bicubic_downsample
from arsr_jax.media.video import write_video
from arsr_jax.flow.tvl1 import TVL1Params
from arsr_jax.flow.warp import warp
from tfds_builders import prepare, video_builder, video_prep
from tfds_builders.action_videos import ActionVideoConfig
from tfds_builders.cdvl_sr import cdvl_sr_dataset_builder as cdvl
from tfds_builders.hmdb51_sr import hmdb51_sr_dataset_builder as hmdb
from tfds_builders.tiny_virat import tiny_virat_dataset_builder as tiny
from tfds_builders.ucf101_sr import ucf101_sr_dataset_builder as ucf

from conftest import SHARED_DATA

LIGHT_TVL1 = TVL1Params(nscales=2, warps=1, inner_iterations=10, outer_iterations=2,
                        median_filtering=3)


# ---------------------------------------------------------------- fake videos


def moving_clip(num_frames, height, width, seed=0, speed=2):
  """A static textured background with a textured square moving right by `speed` px a frame."""
  rng = np.random.default_rng(seed)
  ys, xs = np.mgrid[:height, :width]
  background = 128 + 60 * np.sin(xs / 3.0 + rng.uniform(0, 6)) * np.cos(ys / 4.0)
  frames = []
  for t in range(num_frames):
    frame = background.copy()
    x0 = 4 + speed * t
    inside = (ys >= height // 4) & (ys < height // 4 + 16) & (xs >= x0) & (xs < x0 + 16)
    frame[inside] = 128 + 100 * np.sign(np.sin((xs[inside] - x0) / 2.0 + ys[inside] / 2.0))
    color = np.stack([frame, 0.8 * frame + 20, 255 - frame], axis=-1)
    frames.append(np.clip(color, 0, 255).astype(np.uint8))
  return np.stack(frames)


def write(path, frames):
  """.mp4 (H.264, even sizes) or lossless FFV1 for .avi / .mkv (any size)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  write_video(path, frames, lossless=not str(path).endswith(".mp4"))


def write_gray(path, frames):
  """A true single-channel video (FFV1, pix_fmt gray)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(str(path), mode="w") as container:
    stream = container.add_stream("ffv1", rate=25)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "gray"
    for image in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(image[..., 0], format="gray")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def write_corrupt(path, size=4000):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())


def records(source):
  return {int(ex["id"]): ex for ex in grain.MapDataset.source(source)}


def build(builder, manual_dir):
  config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  builder.download_and_prepare(download_config=config)
  return builder


# ------------------------------------------------------------------- helpers


def test_decode_grayscale_odd_size_and_bad_files(tmp_path):
  frames = moving_clip(5, 47, 63)
  write_gray(tmp_path / "gray.mkv", frames)
  gray = video_prep.decode(str(tmp_path / "gray.mkv"))
  assert gray.shape == (5, 47, 63, 3) and gray.dtype == np.uint8
  np.testing.assert_array_equal(gray[..., 0], frames[..., 0])  # lossless, grey copied to RGB
  assert (gray == gray[..., :1]).all()
  resized = video_prep.decode(str(tmp_path / "gray.mkv"), size=lambda h, w: (
      video_prep.round_to(h, 4), video_prep.round_to(w, 4)), max_frames=3)
  assert resized.shape == (3, 48, 64, 3)
  assert video_prep.fit_short_side(256, 340, 240) == (240, 318)
  assert video_prep.fit_short_side(1080, 1920, 240) == (240, 426)
  (tmp_path / "empty.mp4").write_bytes(b"")
  write_corrupt(tmp_path / "bad.avi")
  for name, message in (("empty.mp4", "empty"), ("bad.avi", "bad.avi"), ("none.mp4", "not found")):
    with pytest.raises(video_prep.SkipVideo, match=message):
      video_prep.decode(str(tmp_path / name))


def test_bicubic_lr_chunks_match_whole_clip():
  clip = moving_clip(21, 32, 48)
  np.testing.assert_array_equal(video_prep.bicubic_lr(clip, 4), bicubic_downsample(clip, 4))


# ------------------------------------------------------------------- UCF101

UCF_CLASSES = ["ApplyEyeMakeup", "Biking", "HandstandPushups"]
UCF_TINY = ActionVideoConfig(name="tiny", split_number=1, frame_height=32, frame_width=48, scale=4,
                             min_frames=6, num_classes=3)


@pytest.fixture(scope="module")
def ucf_manual(tmp_path_factory):
  root = tmp_path_factory.mktemp("ucf_manual")
  videos, lists = root / ucf.VIDEOS_DIR, root / ucf.LISTS_DIR
  train, test = [], []
  for c, name in enumerate(UCF_CLASSES):
    stem = "HandStandPushups" if name == "HandstandPushups" else name  # UCF101's own spelling
    for g in (1, 2):
      rel = f"{name}/v_{stem}_g0{g}_c01.avi"
      write(str(videos / rel), moving_clip(8 + g, 48, 64, seed=10 * c + g))
      # The lists spell one file with another case, as UCF101's do.
      listed = rel.replace("HandStand", "Handstand") if g == 2 else rel
      (train if g == 1 else test).append(f"{listed} {c + 1}" if g == 1 else listed)
  write_corrupt(str(videos / "Biking/v_Biking_g03_c01.avi"))
  os.makedirs(videos / "Biking", exist_ok=True)
  (videos / "Biking/v_Biking_g04_c01.avi").write_bytes(b"")
  write(str(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi"), moving_clip(3, 48, 64))
  write(str(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g04_c01.avi"), moving_clip(7, 47, 63))
  write_gray(str(videos / "Biking/v_Biking_g05_c01.avi"), moving_clip(7, 48, 64))
  train += ["Biking/v_Biking_g03_c01.avi 2", "ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi 1",
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g04_c01.avi 1", "Biking/v_Biking_g05_c01.avi 2"]
  test += ["Biking/v_Biking_g04_c01.avi", "Biking/v_Biking_g09_c01.avi"]  # empty, missing
  os.makedirs(lists)
  (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(UCF_CLASSES)))
  for n in (1, 2):
    (lists / f"trainlist0{n}.txt").write_text("\n".join(train) + "\n")
  (lists / "testlist01.txt").write_text("\n".join(test) + "\n")  # no testlist02.txt
  return root


@pytest.fixture(scope="module")
def ucf_built(ucf_manual, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("ucf_data")
  builder = ucf.Builder(config=UCF_TINY, data_dir=str(data_dir), workers=0)
  return build(builder, ucf_manual)


def test_ucf101_examples_labels_and_lr(ucf_built):
  assert ucf_built.info.features["label"].names == UCF_CLASSES
  assert ucf_built.info.splits["train"].num_examples == 5  # 3 + odd-sized + greyscale
  assert ucf_built.info.splits["test"].num_examples == 3  # incl. the case-mismatched name
  train = records(ucf_built.as_data_source("train"))
  assert sorted(train) == list(range(5))
  by_video = {ex["video"].decode(): ex for ex in train.values()}
  for video, ex in by_video.items():
    t = int(ex["num_frames"])
    assert ex["hr"].shape == (t, 32, 48, 3) and ex["hr"].dtype == np.uint8 and t >= 6
    assert ex["lr"].shape == (t, 8, 12, 3)
    np.testing.assert_array_equal(ex["lr"], bicubic_downsample(ex["hr"], 4))
    assert UCF_CLASSES[int(ex["label"])] == video.split("/")[0]
    assert "flow" not in ex
  grey = by_video["Biking/v_Biking_g05_c01.avi"]["hr"]
  assert (grey == grey[..., :1]).all()  # greyscale video -> equal RGB channels
  assert by_video["ApplyEyeMakeup/v_ApplyEyeMakeup_g04_c01.avi"]["hr"].shape[1:] == (32, 48, 3)


def test_ucf101_skips_are_counted_with_reasons(ucf_built):
  metadata = ucf_built.info.metadata
  reasons = {s["video"]: s["reason"] for s in metadata["skipped"]}
  assert metadata["num_skipped"] == 4 == len(reasons)
  assert "corrupt" in reasons["Biking/v_Biking_g03_c01.avi"] or "cannot open" in reasons[
      "Biking/v_Biking_g03_c01.avi"]
  assert "too short: 3 frames" in reasons["ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi"]
  assert "empty" in reasons["Biking/v_Biking_g04_c01.avi"]
  assert "not found" in reasons["Biking/v_Biking_g09_c01.avi"]
  assert metadata["videos"] == {"train": {"listed": 7, "used": 5, "skipped": 2},
                                "test": {"listed": 5, "used": 3, "skipped": 2}}
  assert video_builder.read_skipped(ucf_built)["skipped"] == metadata["skipped"]
  reread = ucf.Builder(config=UCF_TINY, data_dir=ucf_built.data_dir_root)
  assert reread.info.metadata["num_skipped"] == 4


def test_ucf101_missing_split_file_names_the_path(ucf_manual, tmp_path):
  cfg = ActionVideoConfig(name="tiny2", split_number=2, frame_height=32, frame_width=48,
                          num_classes=3)
  builder = ucf.Builder(config=cfg, data_dir=str(tmp_path), workers=0)
  expected = os.path.join(str(ucf_manual), "ucfTrainTestlist", "testlist02.txt")
  with pytest.raises(FileNotFoundError, match="split file testlist02.txt not found") as error:
    build(builder, ucf_manual)
  assert expected in str(error.value)


def test_missing_manual_dir_is_reported(tmp_path):
  builder = ucf.Builder(config=UCF_TINY, data_dir=str(tmp_path), workers=0)
  with pytest.raises(AssertionError, match="does not exist or is empty") as error:
    build(builder, tmp_path / "nowhere")
  assert str(tmp_path / "nowhere") in str(error.value) and "UCF101" in str(error.value)


def test_worker_processes_give_the_same_cache(ucf_manual, ucf_built, tmp_path):
  builder = ucf.Builder(config=UCF_TINY, data_dir=str(tmp_path), workers=1)
  stats = builder.prepare_cache(str(ucf_manual))
  assert (stats.total, stats.computed, stats.skipped) == (12, 12, 4)
  ours, theirs = builder.cache, ucf_built.cache
  for split, tasks in builder._tasks(str(ucf_manual)).items():
    for task in tasks:
      a, b = ours.lookup(task), theirs.lookup(task)
      assert a[0] == b[0]
      if a[0] == "ok":
        np.testing.assert_array_equal(ours.load(a[1])["hr"], theirs.load(b[1])["hr"])


# ------------------------------------------------------------------- HMDB51


@pytest.fixture(scope="module")
def hmdb_manual(tmp_path_factory):
  root = tmp_path_factory.mktemp("hmdb_manual")
  for c, name in enumerate(["brush_hair", "cartwheel"]):
    for v in range(3):
      write(str(root / hmdb.VIDEOS_DIR / name / f"{name}_{v}.avi"),
            moving_clip(6, 48, 64, seed=c + v))
    for n in (1, 2, 3):
      lines = [f"{name}_{v}.avi {(v + n) % 3} " for v in range(3)]  # trailing space as in HMDB
      if not (name == "cartwheel" and n == 3):
        (root / hmdb.SPLITS_DIR).mkdir(exist_ok=True)
        (root / hmdb.SPLITS_DIR / f"{name}_test_split{n}.txt").write_text("\n".join(lines) + "\n")
  return root


def test_hmdb51_split_ids_and_flow(hmdb_manual, tmp_path):
  cfg = ActionVideoConfig(name="tiny_flow", split_number=2, frame_height=48, frame_width=64,
                          min_frames=4, num_classes=2, flow=True, tvl1=LIGHT_TVL1)
  builder = build(hmdb.Builder(config=cfg, data_dir=str(tmp_path), workers=0), hmdb_manual)
  assert builder.info.features["label"].names == ["brush_hair", "cartwheel"]
  # split 2: video v has id (v + 2) % 3: v=2 -> 1 (train), v=0 -> 2 (test), v=1 -> 0 (unused).
  for split, v in (("train", 2), ("test", 0)):
    examples = list(records(builder.as_data_source(split)).values())
    assert sorted(ex["video"].decode() for ex in examples) == [
        f"brush_hair/brush_hair_{v}.avi", f"cartwheel/cartwheel_{v}.avi"]
    for ex in examples:
      assert ex["flow"].shape == (5, 48, 64, 2) and ex["flow"].dtype == np.float16
      hr = ex["hr"].astype(np.float32) / 255
      warped = np.asarray(warp(hr[1:], ex["flow"].astype(np.float32)))
      assert np.abs(warped - hr[:-1]).mean() < 0.6 * np.abs(hr[1:] - hr[:-1]).mean()
      assert 0.5 < np.median(ex["flow"][..., 0][np.abs(ex["flow"][..., 0]) > 1]) < 3  # 2 px right


def test_hmdb51_missing_split_file_names_the_path(hmdb_manual, tmp_path):
  cfg = ActionVideoConfig(name="tiny3", split_number=3, frame_height=48, frame_width=64,
                          num_classes=2)
  with pytest.raises(FileNotFoundError, match="cartwheel_test_split3.txt not found") as error:
    build(hmdb.Builder(config=cfg, data_dir=str(tmp_path), workers=0), hmdb_manual)
  expected = os.path.join(str(hmdb_manual), hmdb.SPLITS_DIR, "cartwheel_test_split3.txt")
  assert expected in str(error.value)


def test_hmdb51_x8_rounds_the_frame_size():
  cfg = hmdb.Builder.builder_configs["split1_x8"]
  assert (cfg.frame_height, cfg.frame_width, cfg.hr_size) == (256, 340, (256, 336))


# --------------------------------------------------------------- TinyVIRAT


def _tiny_tree(root, release):
  videos = root / "videos"
  sizes = [(13, 11), (24, 20), (10, 10), (31, 17)]
  entries = {}
  for split in tiny.ANNOTATIONS[release]:
    entries[split] = []
    for i, (h, w) in enumerate(sizes):
      rel = f"VIRAT_S_0001/{split}_{i:02d}.mkv"
      write(str(videos / split / rel), moving_clip(5 + i, h, w, seed=i))
      labels = [tiny.CLASS_NAMES[i], tiny.CLASS_NAMES[25 - i]][:1 + i % 2]
      entry = {"id": f"{i:06d}", "video_id": "VIRAT_S_0001", "path": rel, "dim": [5 + i, h, w]}
      unlabelled = split == "test" and release == "v2"  # like tiny_test_v2_public.json
      entries[split].append(entry if unlabelled else {**entry, "label": labels})
    entries[split].append({"id": "000099", "path": "VIRAT_S_0002/missing.mp4", "label": ["Pull"]})
  write(str(videos / "train/VIRAT_S_0001/short.mkv"), moving_clip(1, 12, 12))
  entries["train"].append({"id": "000098", "path": "VIRAT_S_0001/short.mkv", "label": ["Push"]})
  for split, file in tiny.ANNOTATIONS[release].items():
    data = entries[split] if release == "v2" else {"tubes": entries[split]}
    (root / file).write_text(json.dumps(data))
  if release == "v2":
    (root / "class_map.json").write_text(json.dumps({n: i for i, n in enumerate(tiny.CLASS_NAMES)}))


def test_tiny_virat_v2_through_the_cli_in_shards(tmp_path):
  manual = tmp_path / "manual"
  _tiny_tree(manual / "TinyVIRAT_V2", "v2")
  args = ["--dataset", "tiny_virat/v2", "--manual_dir", str(manual), "--data_dir",
          str(tmp_path / "data"), "--workers", "0"]
  for shard in (0, 1):
    assert prepare.main(args + ["--num_shards", "2", "--shard_index", str(shard)]) == 0
  assert prepare.main(args) == 0
  builder = tfds.builder("tiny_virat/v2", data_dir=str(tmp_path / "data"))
  assert builder.info.metadata["class_names"] == list(tiny.CLASS_NAMES)
  assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
      "train": 4, "val": 4, "test": 4}
  reasons = {s["video"]: s["reason"] for s in builder.info.metadata["skipped"]}
  assert len(reasons) == 4 and "too short: 1 frames" in reasons["train/VIRAT_S_0001/short.mkv"]
  for split in ("train", "val", "test"):
    assert "not found" in reasons[f"{split}/VIRAT_S_0002/missing.mp4"]
  for split in ("train", "test"):
    source = tfds.data_source("tiny_virat/v2", split=split, data_dir=str(tmp_path / "data"))
    for ex in records(source).values():
      i = int(ex["tube_id"])
      h, w = [(13, 11), (24, 20), (10, 10), (31, 17)][i]
      assert ex["video"].shape == (5 + i, h, w, 3) and list(ex["size"]) == [h, w]
      assert int(ex["num_frames"]) == 5 + i and "lr" not in ex
      names = [n.decode() for n in ex["label_names"]]
      assert [tiny.CLASS_NAMES[k] for k in np.flatnonzero(ex["labels"])] == sorted(
          names, key=tiny.CLASS_NAMES.index)
      assert (names == []) == (split == "test")


def test_tiny_virat_v1_with_lr_crops_to_the_scale(tmp_path):
  _tiny_tree(tmp_path / "manual", "v1")
  cfg = tiny.TinyViratConfig(name="v1_x2", release="v1", scale=2)
  builder = build(tiny.Builder(config=cfg, data_dir=str(tmp_path / "data"), workers=0),
                  tmp_path / "manual")
  assert set(builder.info.splits) == {"train", "test"}
  for ex in records(builder.as_data_source("test")).values():
    h, w = [(13, 11), (24, 20), (10, 10), (31, 17)][int(ex["tube_id"])]
    assert ex["video"].shape[1:3] == (h - h % 2, w - w % 2) == tuple(ex["size"])
    np.testing.assert_array_equal(ex["lr"], bicubic_downsample(ex["video"], 2))
    assert ex["labels"].sum() >= 1


def test_tiny_virat_missing_annotations_names_the_file(tmp_path):
  (tmp_path / "manual").mkdir()
  (tmp_path / "manual" / "readme.txt").write_text("x")
  with pytest.raises(FileNotFoundError, match="tiny_train_v2.json not found") as error:
    build(tiny.Builder(config="v2", data_dir=str(tmp_path / "data"), workers=0),
          tmp_path / "manual")
  assert os.path.join(str(tmp_path / "manual"), "tiny_train_v2.json") in str(error.value)


# -------------------------------------------------------------------- CDVL


def test_cdvl_clips_sharded_then_built_from_cache(tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  for i in range(3):
    write(str(manual / f"scene_{i}.mp4"), moving_clip(14, 48, 64, seed=i, speed=1 + i))
  (manual / "broken.mp4").write_bytes(b"")
  write(str(manual / "sub" / "short.mp4"), moving_clip(4, 48, 64))
  (manual / "raw.yuv").write_bytes(b"\0" * 100)
  (manual / "notes.txt").write_text("not a video")
  cfg = cdvl.CdvlConfig(name="test", scale=4, patch_size=32, clip_frames=5, num_positions=4,
                        top_k=2, short_side=48, crop_stride=16, tvl1=LIGHT_TVL1, test_fraction=0.3)
  builder = cdvl.Builder(config=cfg, data_dir=str(tmp_path / "data"), workers=0)
  first = builder.prepare_cache(str(manual), num_shards=2, shard_index=0)
  second = builder.prepare_cache(str(manual), num_shards=2, shard_index=1)
  assert (first.total + second.total, first.skipped + second.skipped) == (6, 3)

  def fail(*args):
    raise AssertionError("a cached video was prepared again")
  monkeypatch.setattr(cdvl, "decode_windows", fail)
  build(builder, manual)
  metadata = builder.info.metadata
  reasons = {s["video"]: s["reason"] for s in metadata["skipped"]}
  assert set(reasons) == {"broken.mp4", "sub/short.mp4", "raw.yuv"}
  assert "too short: 4 frames" in reasons["sub/short.mp4"] and "raw video" in reasons["raw.yuv"]
  examples = [ex for s in builder.info.splits for ex in records(builder.as_data_source(s)).values()]
  assert len(examples) == 6 and set(builder.info.splits) == {"train", "test"}
  for ex in examples:
    assert ex["hr"].shape == (5, 32, 32, 3) and ex["lr"].shape == (5, 8, 8, 3)
    assert ex["flow"].shape == (4, 32, 32, 2) and ex["flow"].dtype == np.float16
    np.testing.assert_array_equal(ex["lr"], bicubic_downsample(ex["hr"], 4))
    assert ex["video"].decode().startswith("scene_") and 0 < float(ex["moving_fraction"]) <= 1
    y, x = ex["crop_yx"]
    assert 0 <= y <= 16 and 0 <= x <= 32 and 0 <= int(ex["start_frame"]) <= 9
  # The crop with the most motion holds the moving square (rows 12..28).
  best = max(examples, key=lambda ex: float(ex["moving_fraction"]))
  assert abs(int(best["crop_yx"][0]) - 8) <= 8


def test_cdvl_splits_by_name_hash():
  names = [f"video_{i:03d}.mp4" for i in range(200)]
  splits = cdvl.assign_splits(names, 0.1)
  assert 10 <= len(splits["test"]) <= 30 and len(splits["train"]) + len(splits["test"]) == 200
  assert cdvl.assign_splits(names[:1], 0.1) == {"train": names[:1]}
  assert len(cdvl.assign_splits(names[:3], 0.01)["test"]) == 1
  assert set(cdvl.assign_splits(names[::-1], 0.1)["test"]) == set(splits["test"])  # order-free


def test_cdvl_validation_split_and_corpus_configs_share_one_cache():
  names = [f"video_{i:03d}.mp4" for i in range(200)]
  splits = cdvl.assign_splits(names, 0.15, 0.1)
  assert sorted(sum(splits.values(), [])) == names  # every video on exactly one side
  assert 15 <= len(splits["validation"]) <= 30 and set(splits["test"]) == set(cdvl.assign_splits(names, 0.15)["test"])
  assert set(cdvl.assign_splits(names[:2], 0.15, 0.1)) == {"train", "test"}  # too few videos for three
  x4, x8 = (tfds_builder_for(c) for c in ("corpus_x4", "corpus_x8"))
  assert x4._prep_spec() == x8._prep_spec() and x4._prep_spec().scale == 0  # noqa: SLF001
  hr = np.random.default_rng(0).integers(0, 256, (2, 16, 128, 128, 3), np.uint8)
  assert cdvl.lr_clips(hr, 8).shape == (2, 16, 16, 16, 3)


def tfds_builder_for(config: str):
  return cdvl.Builder(config=config, data_dir="/tmp/unused_tfds")


def test_builders_register_and_resolve_by_name(tmp_path):
  import tfds_builders
  for name in ("cdvl_sr/demo", "ucf101_sr/split2_x8", "hmdb51_sr/split3", "tiny_virat/v1"):
    tfds_builders.load(name)
    builder = tfds.builder(name, data_dir=str(tmp_path), file_format="array_record")
    assert builder.info.file_format.value == "array_record" and not builder.is_prepared()
  assert tfds.builder("ucf101_sr/split2_x8", data_dir=str(tmp_path)).builder_config.scale == 8


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "clips").is_dir(), reason="needs ../shared/data/clips")
def test_cdvl_demo_builds_from_the_shared_clips(tmp_path):
  """The CPU demo config on the 7 real clips, through the CLI (its own process, plain XLA flags)."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
  start = time.perf_counter()
  subprocess.run([sys.executable, "-m", "tfds_builders.prepare", "--dataset", "cdvl_sr/demo",
                  "--manual_dir", str(SHARED_DATA / "clips"), "--data_dir", str(tmp_path),
                  "--workers", "1"], check=True, env=env, cwd=repo)
  seconds = time.perf_counter() - start
  import tfds_builders
  tfds_builders.load("cdvl_sr")
  builder = tfds.builder("cdvl_sr/demo", data_dir=str(tmp_path))
  counts = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
  print(f"cdvl_sr/demo from 7 clips: {counts} in {seconds:.0f} s")
  assert builder.info.metadata["num_skipped"] == 0
  assert sum(counts.values()) == 7 * 4 and counts.get("test", 0) >= 4
