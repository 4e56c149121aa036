"""enhance's Real-ESRGAN-style options and the degrade command, each on real encoded clips made here
(a few frames, 16-70 pixels: seconds each), with the shipped corpus_x4 unless a test says otherwise."""

import json
import os
import pathlib
import subprocess
import sys

import av
import jax
import numpy as np
import pytest
from PIL import Image

from arsr_jax import degrade as degrade_cmd
from arsr_jax import enhance, enhance_io, inference, sharding
from arsr_jax.media import degrade, video

REPO = pathlib.Path(__file__).resolve().parents[1]


def textured(n=3, h=16, w=24, seed=0):
  """uint8 frames (n, h, w, 3): smooth colour gradients plus noise (chroma detail, as real video has)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  base = np.stack([150 * x + 60, 120 * y + 70, 200 - 120 * x * y], -1)
  return np.clip(base[None] + rng.normal(0, 25, (n, h, w, 3)), 0, 255).astype(np.uint8)


def h264(path, frames, fps=10, rotation=None):
  """A real H.264 clip (yuv420p, crf 12) of uint8 frames (T, H, W, 3) [with a display rotation]."""
  with av.open(str(path), "w") as c:
    s = c.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt, s.options = frames.shape[2], frames.shape[1], "yuv420p", {"crf": "12"}
    if rotation is not None:
      s.set_display_rotation(rotation)
    for f in frames:
      for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        c.mux(p)
    for p in s.encode():
      c.mux(p)
  return str(path)


def shipped_sr(frames):
  """corpus_x4 on uint8 frames (T, h, w, 3), as enhance runs it (uint8 out)."""
  mesh = sharding.make_mesh()
  sr, clip_length = enhance.load_model(None, mesh)
  return np.stack([f for f, _ in inference.from_frozen(sr, clip_length, mesh)(list(frames))])


def run(module, *args):
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                        timeout=300)


# ---------------------------------------------------------------------------
# The darkness question: the pipeline's colour conversion, not the model.

def bt601_reference(path):
  """Float RGB (T, H, W, 3) of a yuv420p BT.601 limited-range video: its planes decoded by FFmpeg, the
  colour conversion done here in float64 (chroma repeated 2x2; a mean-preserving upsampling)."""
  frames = []
  with av.open(str(path)) as c:
    for f in c.decode(video=0):
      planes = f.to_ndarray()  # (H * 3 / 2, W) uint8: Y, then U and V
      h, w = f.height, f.width
      y = planes[:h].astype(float)
      u, v = (np.repeat(np.repeat(p.reshape(h // 2, w // 2).astype(float), 2, 0), 2, 1)
              for p in (planes[h:h + h // 4], planes[h + h // 4:]))
      y, u, v = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
      frames.append(np.clip(np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], -1), 0, 255))
  return np.stack(frames)


def test_decode_encode_round_trip_keeps_the_mean_level(tmp_path):
  # No colour gradient across the frame: H.264's chroma siting (left) against 2x2-averaged chroma shifts
  # the mean of a gradient by a fraction of its slope per pixel, for any decoder.
  noise = np.random.default_rng(0).normal(0, 25, (4, 16, 24, 3)).repeat(2, 1).repeat(2, 2)
  frames = np.clip(np.array([150, 110, 90]) + noise, 0, 255).astype(np.uint8)
  src = h264(tmp_path / "in.mp4", frames)
  decoded = video.read_video(src).astype(float)
  # FFmpeg's default 4:2:0 -> RGB conversion lost 1.0-1.5 levels of 255 here (-1.0, -1.5, -1.2).
  assert np.abs(decoded.mean((0, 1, 2)) - bt601_reference(src).mean((0, 1, 2))).max() < 0.3
  assert np.abs(decoded.mean((0, 1, 2)) - frames.mean((0, 1, 2))).max() < 0.5
  identity = inference.Upscaler(lambda v, x: x, None, inference.WindowSpec("frame"), 1)
  enhance.enhance_video(src, str(tmp_path / "out.mp4"), identity, enhance.Options(crf=0))
  again = video.read_video(tmp_path / "out.mp4").astype(float)
  assert np.abs(again.mean((0, 1, 2)) - decoded.mean((0, 1, 2))).max() < 0.5


# ---------------------------------------------------------------------------
# Flags, sizes, dtypes.

@pytest.mark.slow  # the enhance command end to end in a subprocess
def test_short_flags_and_refusals_on_the_command_line(tmp_path):
  src = h264(tmp_path / "in.mp4", textured(2))
  ok = run("arsr_jax.enhance", "-i", src, "-o", tmp_path / "out.mp4", "-n", "corpus_x4", "-s", 4)
  assert ok.returncode == 0, ok.stderr
  assert video.video_info(tmp_path / "out.mp4")["width"] == 96
  bad = run("arsr_jax.enhance", src, tmp_path / "x.mp4", "--codec", "ffv1")
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      f"error: output {tmp_path / 'x.mp4'}: ffv1 cannot be written to .mp4; use .mkv"], bad.stderr
  for options, message in ((dict(encoding=enhance_io.Encoding("ffv1", crf=10)), "ffv1 is lossless: it takes no --crf"),
                           (dict(outscale="big"), "--outscale 'big': expected a factor"),
                           (dict(overwrite=True, skip_existing=True), "contradict")):
    with pytest.raises(ValueError, match=message):
      enhance.enhance(src, str(tmp_path / "x.mkv"), None, options=enhance.Options(**options))
  assert sorted(os.listdir(tmp_path)) == ["enhance_report.json", "in.mp4", "out.mp4"]


def test_encoder_refusals_before_any_work(tmp_path, monkeypatch):
  src = h264(tmp_path / "in.mp4", textured(1))
  for encoding, message in ((enhance_io.Encoding("libx265", preset="fastest"), "--preset fastest"),
                            (enhance_io.Encoding(pix_fmt="yuv422p"), "--pix_fmt yuv422p"),
                            (enhance_io.Encoding(crf=60), "--crf 60")):
    with pytest.raises(ValueError, match=message):
      enhance.enhance(src, str(tmp_path / "o.mp4"), None, options=enhance.Options(encoding=encoding))
  monkeypatch.setattr(enhance_io.av, "codecs_available", {"libx264"})
  with pytest.raises(ValueError, match="this PyAV/FFmpeg build has no libx265 encoder"):
    enhance.enhance(src, str(tmp_path / "o.mp4"), None, options=enhance.Options(encoding=enhance_io.Encoding("libx265")))
  assert os.listdir(tmp_path) == ["in.mp4"]


def test_outscale_factor_and_height(tmp_path):
  frames = textured(2)
  src = h264(tmp_path / "in.mp4", frames)
  lr = video.read_video(src)
  sr = shipped_sr(lr)  # (2, 64, 96, 3)
  lossless = enhance_io.Encoding("ffv1", "yuv444p")
  for outscale, size in (("2.5", (40, 60)), ("50p", (50, 76)), ("6", (96, 144))):  # even sizes for yuv420p
    out = tmp_path / f"x{outscale}.mp4"
    result, = enhance.enhance(src, str(out), None, options=enhance.Options(outscale=outscale))
    assert (video.video_info(out)["height"], video.video_info(out)["width"]) == size
    assert result["output_size"] == [size[1], size[0]] and result["outscale"] == outscale
  out = tmp_path / "x2.5.mkv"  # lossless: the model's x4 output, then the Lanczos resize
  enhance.enhance(src, str(out), None, options=enhance.Options(outscale="2.5", encoding=lossless))
  want = np.stack([np.asarray(jax.image.resize(f.astype(np.float32), (40, 60, 3), "lanczos3")) for f in sr])
  got = video.read_video(out).astype(float)
  assert np.abs(got - np.clip(np.round(want), 0, 255)).mean() < 1.0
  assert np.abs(got - degrade.resize(lr, 40, 60)).mean() > 2  # not a plain bicubic of the input


def test_bfloat16_is_close_to_float32(tmp_path):
  src = h264(tmp_path / "in.mp4", textured(2))
  lossless = enhance_io.Encoding("ffv1", "yuv444p")
  outs = {}
  for dtype in ("float32", "bfloat16"):
    result, = enhance.enhance(src, str(tmp_path / f"{dtype}.mkv"), None,
                              options=enhance.Options(dtype=dtype, encoding=lossless))
    assert result["dtype"] == dtype
    outs[dtype] = video.read_video(tmp_path / f"{dtype}.mkv").astype(float)
  diff = np.abs(outs["float32"] - outs["bfloat16"])
  assert 0 < diff.mean() < 1.5 and diff.max() <= 12, (diff.mean(), diff.max())
  with pytest.raises(ValueError, match="--dtype float64"):
    enhance.enhance(src, str(tmp_path / "x.mkv"), None, options=enhance.Options(dtype="float64"))


# ---------------------------------------------------------------------------
# Inputs and outputs.

def test_suffix_skip_existing_and_the_report(tmp_path):
  folder, outdir = tmp_path / "videos", tmp_path / "out"
  folder.mkdir()
  outdir.mkdir()
  for name in ("a", "b"):
    h264(folder / f"{name}.mp4", textured(2, seed=ord(name)))
  (outdir / "a_out.mp4").write_bytes(b"precious")
  with pytest.raises(FileExistsError, match="a_out.mp4; pass --overwrite to replace it or --skip_existing"):
    enhance.enhance(str(folder), str(outdir), None)
  results = enhance.enhance(str(folder), str(outdir), None, options=enhance.Options(skip_existing=True))
  assert [r["status"] for r in results] == ["skipped", "ok"]
  assert (outdir / "a_out.mp4").read_bytes() == b"precious"
  assert video.video_info(outdir / "b_out.mp4")["frames"] == 2
  enhance.enhance(str(folder / "a.mp4"), str(outdir), None, options=enhance.Options(suffix="_x4"))
  assert sorted(os.listdir(outdir)) == ["a_out.mp4", "a_x4.mp4", "b_out.mp4", "enhance_report.json"]

  runs = json.loads((outdir / "enhance_report.json").read_text())["runs"]
  assert len(runs) == 2 and [r["status"] for r in runs[0]["inputs"]] == ["skipped", "ok"]
  entry = runs[0]["inputs"][1]
  assert entry["frames"] == 2 and entry["input_size"] == [24, 16] and entry["output_size"] == [96, 64]
  assert (entry["model"], entry["scale"], entry["dtype"]) == ("corpus_x4", 4, "float32")
  assert entry["seconds"] > 0 and entry["frames_per_s"] > 0 and entry["outscale"] is None
  custom = tmp_path / "reports" / "run.json"
  enhance.enhance(str(folder / "b.mp4"), str(tmp_path / "b.mkv"), None,
                  options=enhance.Options(report=str(custom), encoding=enhance_io.Encoding("ffv1")))
  assert json.loads(custom.read_text())["runs"][0]["inputs"][0]["output"] == str(tmp_path / "b.mkv")
  (tmp_path / "notes.json").write_text("[1, 2]")
  with pytest.raises(ValueError, match="is not an enhance report"):
    enhance.enhance(str(folder / "b.mp4"), str(tmp_path / "c.mp4"), None,
                    options=enhance.Options(report=str(tmp_path / "notes.json")))


def test_images_and_frame_folders_as_input(tmp_path):
  frames = textured(3)
  Image.fromarray(frames[0]).save(tmp_path / "photo.png")
  Image.fromarray(frames[1]).save(tmp_path / "photo2.jpg", quality=95)
  results = enhance.enhance(str(tmp_path / "photo.png"), str(tmp_path / "out"), None)
  sr = np.asarray(Image.open(tmp_path / "out" / "photo_out.png"))
  np.testing.assert_array_equal(sr, shipped_sr(frames[:1])[0])  # PNG: exactly the network's output
  assert results[0]["frames"] == 1
  enhance.enhance(str(tmp_path / "photo2.jpg"), str(tmp_path / "photo2_x4.png"), None)
  assert Image.open(tmp_path / "photo2_x4.png").size == (96, 64)

  seq = tmp_path / "seq"
  seq.mkdir()
  for t, f in enumerate(frames):
    Image.fromarray(f).save(seq / f"frame_{t:03d}.png")
  result, = enhance.enhance(str(seq), str(tmp_path / "seq.mkv"), None,
                            options=enhance.Options(fps=12, encoding=enhance_io.Encoding("ffv1", "yuv444p")))
  info = video.video_info(tmp_path / "seq.mkv")
  assert (result["frames"], info["fps"], info["width"]) == (3, 12.0, 96)
  got = video.read_video(tmp_path / "seq.mkv").astype(float)
  assert np.abs(got - shipped_sr(frames)).max() <= 3  # sorted frame order; only the YUV rounding
  Image.fromarray(textured(1, 20, 24)[0]).save(seq / "frame_999.png")
  with pytest.raises(enhance.VideoFailed, match="frame_999.png: 24x20 differs from the first frame's 24x16"):
    enhance.enhance(str(seq), str(tmp_path / "seq2.mp4"), None)
  assert not (tmp_path / "seq2.mp4").exists()


def test_png_frame_sequence_output(tmp_path):
  frames = textured(3)
  src = h264(tmp_path / "in.mp4", frames, rotation=90)
  sr = shipped_sr(video.read_video(src))
  enhance.enhance(src, str(tmp_path / "frames" / "f_%04d.png"), None)
  names = sorted(os.listdir(tmp_path / "frames"))
  assert names == ["enhance_report.json", "f_0001.png", "f_0002.png", "f_0003.png"]
  names = names[1:]
  for name, want in zip(names, sr):  # PNG has no display matrix: written upright
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "frames" / name)), np.rot90(want))
  enhance.enhance(src, str(tmp_path / "out"), None, options=enhance.Options(output_format="png", max_frames=2))
  assert sorted(os.listdir(tmp_path / "out" / "in_out")) == ["000001.png", "000002.png"]
  with pytest.raises(FileExistsError, match="output exists"):
    enhance.enhance(src, str(tmp_path / "frames" / "f_%04d.png"), None)
  with pytest.raises(ValueError, match="frame pattern such as out/%06d.png"):
    enhance.enhance(src, str(tmp_path / "one.png"), None)


def test_codecs_and_pixel_formats(tmp_path):
  src = h264(tmp_path / "in.mp4", textured(3))  # FFmpeg's MP4 muxer fails on x265 streams of 1-2 frames
  sr = shipped_sr(video.read_video(src)).astype(float)
  for name, encoding, codec, pix_fmt, tolerance in (
      ("ffv1.mkv", enhance_io.Encoding("ffv1", "yuv444p"), "ffv1", "yuv444p", 1.0),
      ("x265.mp4", enhance_io.Encoding("libx265", crf=10, preset="ultrafast"), "hevc", "yuv420p", 4.0),
      ("x264_444.mkv", enhance_io.Encoding("libx264", "yuv444p", crf=0, preset="fast"), "h264", "yuv444p", 1.0)):
    enhance.enhance(src, str(tmp_path / name), None, options=enhance.Options(encoding=encoding))
    with av.open(str(tmp_path / name)) as c:
      stream = c.streams.video[0]
      assert (stream.codec_context.name, stream.codec_context.pix_fmt) == (codec, pix_fmt)
    error = np.abs(video.read_video(tmp_path / name) - sr).mean()
    assert error < tolerance, (name, error)


def test_side_by_side_is_labelled_with_a_divider(tmp_path):
  frames = np.full((1, 32, 48, 3), 40, np.uint8)  # dark and flat: labels and divider stand out
  src = h264(tmp_path / "in.mp4", frames)
  enhance.enhance(src, str(tmp_path / "plain_%d.png"), None)
  enhance.enhance(src, str(tmp_path / "both_%d.png"), None, options=enhance.Options(side_by_side=True))
  plain = np.asarray(Image.open(tmp_path / "plain_1.png")).astype(int)
  both = np.asarray(Image.open(tmp_path / "both_1.png")).astype(int)
  assert both.shape == (128, 384, 3)
  assert (both[:, 192:194] == 255).all()  # the divider
  left, right = both[:, :192], both[:, 194:]
  np.testing.assert_array_equal(right[64:], plain[64:, 2:])  # below the labels: the SR frame
  for half in (left, right):  # white text in the top-left corner, nowhere else
    assert (half[:20, :80] > 200).sum() > 20 and (half[40:] > 200).sum() == 0
  assert abs(left[:20, :80].mean() - right[:20, :80].mean()) > 1  # different words: "bicubic", "corpus_x4"


# ---------------------------------------------------------------------------
# degrade: the LR test input of an HR clip.

def test_degrade_makes_even_sized_bicubic_lr(tmp_path):
  hr = textured(3, 70, 90)
  src = h264(tmp_path / "hr.mp4", hr, fps=15, rotation=90)
  decoded = video.read_video(src)
  want = degrade.bicubic_downsample(decoded[:, :64, :88], 4)  # cut to a multiple of 8, then x4 down: 22x16
  result = degrade_cmd.degrade_video(src, str(tmp_path / "lr.mkv"), 4,
                                     encoding=enhance_io.Encoding("ffv1", "yuv444p"))
  assert result["output_size"] == [22, 16] and result["cropped"] == [2, 6] and result["frames"] == 3
  got = video.read_video(tmp_path / "lr.mkv").astype(float)
  assert got.shape == (3, 16, 22, 3) and np.abs(got - want).mean() < 0.7 and np.abs(got - want).max() <= 3
  info, props = video.video_info(tmp_path / "lr.mkv"), video.frame_properties(tmp_path / "lr.mkv")
  assert info["fps"] == 15 and props["rotation"] == 90

  ok = run("arsr_jax.degrade", "-i", src, "-o", tmp_path / "lr8.mp4", "-s", 8)
  assert ok.returncode == 0, ok.stderr
  assert "90x70 -> 10x8 (cut 10 columns, 6 rows first), bicubic x8" in ok.stderr
  lr8 = video.read_video(tmp_path / "lr8.mp4").astype(float)
  want8 = degrade.bicubic_downsample(decoded[:, :64, :80], 8).astype(float)
  assert lr8.shape == (3, 8, 10, 3) and 10 * np.log10(255 ** 2 / np.mean((lr8 - want8) ** 2)) > 30
  with pytest.raises(FileExistsError, match="output exists"):
    degrade_cmd.degrade_video(src, str(tmp_path / "lr8.mp4"), 8)
  degrade_cmd.degrade_video(src, str(tmp_path), 3)  # a folder: hr_x3.mp4 in it
  assert (video.video_info(tmp_path / "hr_x3.mp4")["width"], video.video_info(tmp_path / "hr_x3.mp4")["height"]) == (30, 22)
