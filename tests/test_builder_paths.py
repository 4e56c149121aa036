"""The video builders read only inside manual_dir.

Entries of split lists, annotation files and folder listings that lead out of manual_dir
('..', absolute paths, symbolic links pointing out) are skipped and counted with the reason
and never opened; symbolic links whose target lies inside manual_dir are followed. Cache
entries of different files never collide. Malformed annotation files and class maps fail
with an error naming the file.
"""

import json
import os

import numpy as np
import pytest

from tfds_builders import paths, video_prep
from tfds_builders.action_videos import ActionVideoConfig
from tfds_builders.cdvl_sr import cdvl_sr_dataset_builder as cdvl
from tfds_builders.hmdb51_sr import hmdb51_sr_dataset_builder as hmdb
from tfds_builders.tiny_virat import tiny_virat_dataset_builder as tiny
from tfds_builders.ucf101_sr import ucf101_sr_dataset_builder as ucf

from test_real_video_builders import LIGHT_TVL1, build, moving_clip, records, write

DEEP_PASSWD = "../" * 12 + "etc/passwd"  # '..' past the file-system root stays at '/'
OUTSIDE = "leaves manual_dir"


@pytest.fixture(scope="module")
def opened():
  """Every file the builders try to decode (they run with workers=0, in this process)."""
  seen = []
  decode_frames = video_prep.iter_frames

  def recording(path, *args, **kwargs):
    seen.append(os.path.realpath(path))
    return decode_frames(path, *args, **kwargs)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(video_prep, "iter_frames", recording)
    yield seen


def _outside(root):
  """root/outside/secret.{avi,mkv}: valid videos next to root/manual, not in it."""
  write(str(root / "outside" / "secret.avi"), moving_clip(8, 48, 64, seed=7))
  write(str(root / "outside" / "secret.mkv"), moving_clip(6, 16, 16, seed=8))
  return root / "outside"


def _reasons(builder):
  return {(s["split"], s["video"]): s["reason"] for s in builder.info.metadata["skipped"]}


def _videos(builder, split, field="video"):
  return sorted(ex[field].decode() for ex in records(builder.as_data_source(split)).values())


def _assert_read_only_inside(opened, manual):
  root = os.path.realpath(manual)
  assert opened and all(p.startswith(root + os.sep) for p in opened), opened


# ------------------------------------------------------------------- UCF101

UCF_TINY = ActionVideoConfig(name="tiny", split_number=1, frame_height=32, frame_width=48, scale=4,
                             min_frames=4, num_classes=2)


@pytest.fixture(scope="module")
def ucf_attacked(tmp_path_factory, opened):
  root = tmp_path_factory.mktemp("ucf_paths")
  outside, manual = _outside(root), root / "manual"
  videos = manual / ucf.VIDEOS_DIR
  write(str(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"), moving_clip(8, 48, 64, seed=1))
  write(str(videos / "Biking/v_Biking_g01_c01.avi"), moving_clip(8, 48, 64, seed=2))
  write(str(manual / "extra/v_Biking_g04_c01.avi"), moving_clip(8, 48, 64, seed=3))
  os.symlink("../ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", videos / "Biking/v_Biking_g02_c01.avi")
  os.symlink(outside / "secret.avi", videos / "Biking/v_Biking_g03_c01.avi")
  lists = manual / ucf.LISTS_DIR
  lists.mkdir()
  (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Biking\n")
  (lists / "trainlist01.txt").write_text(
      "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n"
      "ApplyEyeMakeup/../../../outside/secret.avi 1\n"
      "Biking/v_Biking_g02_c01.avi 2\n"  # symlink to a video inside manual_dir
      "Biking/v_Biking_g03_c01.avi 2\n")  # symlink to a video outside
  (lists / "testlist01.txt").write_text(
      f"Biking/v_Biking_g01_c01.avi\nBiking/{DEEP_PASSWD}\n"
      "Biking/../../extra/v_Biking_g04_c01.avi\n")  # '..' that stays inside manual_dir
  builder = ucf.Builder(config=UCF_TINY, data_dir=str(root / "data"), workers=0)
  opened.clear()
  build(builder, manual)
  return builder, manual, list(opened)


def test_ucf101_dotdot_entry_to_an_outside_video_is_refused(ucf_attacked):
  builder, _, _ = ucf_attacked
  reason = _reasons(builder)[("train", "ApplyEyeMakeup/../../../outside/secret.avi")]
  assert OUTSIDE in reason and "outside/secret.avi" in reason
  assert "ApplyEyeMakeup/../../../outside/secret.avi" not in _videos(builder, "train")


def test_ucf101_etc_passwd_is_refused_unopened(ucf_attacked):
  builder, manual, opened = ucf_attacked
  assert OUTSIDE in _reasons(builder)[("test", f"Biking/{DEEP_PASSWD}")]
  _assert_read_only_inside(opened, manual)


def test_ucf101_symlinks_inside_followed_outside_refused(ucf_attacked):
  builder, _, _ = ucf_attacked
  assert _videos(builder, "train") == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                                       "Biking/v_Biking_g02_c01.avi"]
  assert OUTSIDE in _reasons(builder)[("train", "Biking/v_Biking_g03_c01.avi")]
  assert _videos(builder, "test") == ["Biking/../../extra/v_Biking_g04_c01.avi",
                                      "Biking/v_Biking_g01_c01.avi"]
  assert builder.info.metadata["videos"] == {"train": {"listed": 4, "used": 2, "skipped": 2},
                                             "test": {"listed": 3, "used": 2, "skipped": 1}}


@pytest.mark.parametrize("linked", [ucf.VIDEOS_DIR, f"{ucf.LISTS_DIR}/classInd.txt"])
def test_ucf101_folder_or_index_file_linked_outside_is_an_error(ucf_attacked, tmp_path, linked):
  _, manual, _ = ucf_attacked
  copy = tmp_path / "manual"
  os.makedirs(copy / ucf.LISTS_DIR)
  os.makedirs(copy / ucf.VIDEOS_DIR)
  for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
    (copy / ucf.LISTS_DIR / name).write_bytes((manual / ucf.LISTS_DIR / name).read_bytes())
  os.remove(copy / linked) if os.path.isfile(copy / linked) else os.rmdir(copy / linked)
  os.symlink(manual / linked, copy / linked)  # a link out of the copy
  builder = ucf.Builder(config=UCF_TINY, data_dir=str(tmp_path / "data"), workers=0)
  with pytest.raises(ValueError, match=OUTSIDE) as error:
    builder._tasks(str(copy))
  assert str(copy / linked) in str(error.value)


# ------------------------------------------------------------------- HMDB51


def test_hmdb51_dotdot_entry_is_refused(tmp_path, opened):
  outside, manual = _outside(tmp_path), tmp_path / "manual"
  for v in range(2):
    write(str(manual / hmdb.VIDEOS_DIR / "brush_hair" / f"brush_hair_{v}.avi"),
          moving_clip(6, 48, 64, seed=v))
  (manual / hmdb.SPLITS_DIR).mkdir()
  (manual / hmdb.SPLITS_DIR / "brush_hair_test_split1.txt").write_text(
      "brush_hair_0.avi 1\n../../../outside/secret.avi 1\nbrush_hair_1.avi 2\n")
  cfg = ActionVideoConfig(name="tiny", split_number=1, frame_height=32, frame_width=48,
                          min_frames=4, num_classes=1)
  builder = build(hmdb.Builder(config=cfg, data_dir=str(tmp_path / "data"), workers=0), manual)
  assert _videos(builder, "train") == ["brush_hair/brush_hair_0.avi"]
  assert OUTSIDE in _reasons(builder)[("train", "brush_hair/../../../outside/secret.avi")]
  assert str(outside / "secret.avi") not in opened


# --------------------------------------------------------------- TinyVIRAT


def _tiny_v1(manual, train_entries):
  for split in ("train", "test"):
    write(str(manual / "videos" / split / "VIRAT/ok.mkv"), moving_clip(5, 16, 16))
  ok = {"id": "0", "path": "VIRAT/ok.mkv", "label": ["Pull"]}
  (manual / "tiny_train.json").write_text(json.dumps({"tubes": [ok, *train_entries]}))
  (manual / "tiny_test.json").write_text(json.dumps({"tubes": [ok]}))


def test_tiny_virat_outside_paths_refused_unopened_and_uncached(tmp_path, opened):
  outside, manual = _outside(tmp_path), tmp_path / "manual"
  _tiny_v1(manual, [{"id": "1", "path": "/etc/passwd", "label": ["Push"]},
                    {"id": "2", "path": DEEP_PASSWD, "label": ["Push"]},
                    {"id": "3", "path": "../../../outside/secret.mkv", "label": ["Riding"]}])
  builder = tiny.Builder(config="v1", data_dir=str(tmp_path / "data"), workers=0)
  opened.clear()
  build(builder, manual)
  reasons = _reasons(builder)
  for path in ("/etc/passwd", DEEP_PASSWD, "../../../outside/secret.mkv"):
    assert OUTSIDE in reasons[("train", f"train/{path}")]
  assert _videos(builder, "train", "path") == ["VIRAT/ok.mkv"]
  _assert_read_only_inside(opened, manual)
  # The two spellings of /etc/passwd used to share the cache entry train/etc/passwd.skip.json.
  cached = [os.path.join(d, f) for d, _, files in os.walk(builder.cache.root) for f in files]
  assert not [f for f in cached if "passwd" in f or "secret" in f], cached
  assert len([f for f in cached if f.endswith(".npz")]) == 2  # train and test ok.mkv


def test_cache_entries_of_different_files_never_collide(tmp_path):
  manual = tmp_path / "manual"
  for rel in ("videos/ApplyEyeMakeup/x.avi", "videos/Biking/ApplyEyeMakeup/x.avi"):
    os.makedirs(manual / os.path.dirname(rel), exist_ok=True)
    (manual / rel).write_bytes(b"same size")
  os.symlink("../ApplyEyeMakeup/x.avi", manual / "videos/Biking/link.avi")
  cache = video_prep.PrepCache(str(tmp_path / "cache"))

  def task(entry):
    return paths.video_task(str(manual), str(manual / "videos" / entry), key=entry, split="train")
  dotdot, other = task("Biking/../ApplyEyeMakeup/x.avi"), task("Biking/ApplyEyeMakeup/x.avi")
  cache.put(dotdot, {"hr": np.zeros(2, np.uint8)})
  assert cache.lookup(other) is None  # the old names dropped '..': both were Biking/ApplyEyeMakeup/x
  for same in ("ApplyEyeMakeup/x.avi", "./ApplyEyeMakeup/x.avi", "Biking/link.avi"):
    assert cache.lookup(task(same))[0] == "ok"  # one file, one entry (decoded once)
  assert dotdot.source == "videos/ApplyEyeMakeup/x.avi"
  refused = task(DEEP_PASSWD)
  assert refused.refused and not refused.path and cache.lookup(refused) == ("skip", refused.refused)


@pytest.mark.parametrize("content, message", [
    ('{"tubes": [{"path": "a.mkv", "label": ["Pull"]', "not valid JSON"),
    ('{"tubes": [{"path": "a.mkv", "label": 3}]}', "'label' must be"),
    ('{"tubes": [{"path": "a.mkv", "label": [["Pull"]]}]}', "'label' must be"),
    ('{"tubes": [{"path": 5, "label": ["Pull"]}]}', "'path' must be"),
    ('[1, 2]', "expected a list of entries"),
])
def test_tiny_virat_malformed_annotations_name_the_file(tmp_path, content, message):
  manual = tmp_path / "manual"
  _tiny_v1(manual, [])
  (manual / "tiny_train.json").write_text(content)
  with pytest.raises(ValueError, match=message) as error:
    tiny.Builder(config="v1", data_dir=str(tmp_path / "data"), workers=0)._tasks(str(manual))
  assert str(manual / "tiny_train.json") in str(error.value)


@pytest.mark.parametrize("class_map, message", [
    (json.dumps({n: i for i, n in enumerate(tiny.CLASS_NAMES)})[:200], "not valid JSON"),
    (json.dumps({n: i for i, n in enumerate(tiny.CLASS_NAMES[:20])}), "20 class names"),
    (json.dumps(list(tiny.CLASS_NAMES)), "expected"),
    (json.dumps({n: "first" for n in tiny.CLASS_NAMES}), "expected"),
    (json.dumps({n: 2 * i for i, n in enumerate(tiny.CLASS_NAMES)}), "class indices"),
])
def test_tiny_virat_bad_class_map_names_the_file(tmp_path, class_map, message):
  manual = tmp_path / "manual"
  _tiny_v1(manual, [])
  (manual / "class_map.json").write_text(class_map)
  with pytest.raises(ValueError, match=message) as error:
    tiny.Builder(config="v1", data_dir=str(tmp_path / "data"), workers=0)._tasks(str(manual))
  assert str(manual / "class_map.json") in str(error.value)


# -------------------------------------------------------------------- CDVL


@pytest.mark.slow
def test_cdvl_symlinks_out_of_manual_dir_are_refused(tmp_path, opened):
  outside, manual = _outside(tmp_path), tmp_path / "manual"
  write(str(manual / "scene.mp4"), moving_clip(8, 48, 64, seed=1))
  os.symlink("scene.mp4", manual / "link_in.mp4")
  os.symlink(outside / "secret.avi", manual / "link_out.avi")
  os.symlink(outside, manual / "linked_folder")  # folders linked in are not walked
  cfg = cdvl.CdvlConfig(name="test", scale=4, patch_size=32, clip_frames=5, num_positions=2,
                        top_k=1, short_side=48, crop_stride=16, tvl1=LIGHT_TVL1, test_fraction=0)
  builder = cdvl.Builder(config=cfg, data_dir=str(tmp_path / "data"), workers=0)
  opened.clear()
  build(builder, manual)
  assert _videos(builder, "train") == ["link_in.mp4", "scene.mp4"]
  assert list(_reasons(builder)) == [("train", "link_out.avi")]
  assert OUTSIDE in _reasons(builder)[("train", "link_out.avi")]
  _assert_read_only_inside(opened, manual)
  assert len(opened) == 1  # link_in.mp4 and scene.mp4 are one file: decoded once
