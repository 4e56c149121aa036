"""PyAV video reading/writing: round trips and clear errors for bad files."""

import numpy as np
import pytest

from arsr_jax.media.video import iter_frames, read_video, video_info, write_video


def frames(t=6, h=24, w=32):
  y, x = np.mgrid[0:h, 0:w]
  clip = [np.stack([(x * 8 + k * 10) % 256, (y * 10) % 256, np.full_like(x, 40 * k)], -1)
          for k in range(t)]
  return np.asarray(clip, np.uint8)


def test_lossless_round_trip(tmp_path):
  clip = frames()
  path = tmp_path / "clip.mkv"
  write_video(path, clip, fps=12, lossless=True)
  np.testing.assert_array_equal(read_video(path), clip)
  np.testing.assert_array_equal(read_video(path, max_frames=2), clip[:2])
  assert [f.shape for f in iter_frames(path)] == [(24, 32, 3)] * 6
  info = video_info(path)
  assert (info["height"], info["width"], info["fps"]) == (24, 32, 12.0)


def test_h264_round_trip_is_close(tmp_path):
  smooth = np.broadcast_to(np.linspace(0, 1, 32)[None, None, :, None], (4, 24, 32, 3))
  path = tmp_path / "clip.mp4"
  write_video(path, smooth, fps=25)  # floats in [0, 1] are accepted
  video = read_video(path)
  assert video.shape == (4, 24, 32, 3) and video.dtype == np.uint8
  assert np.abs(video.astype(float) - np.round(smooth * 255)).mean() < 2
  with pytest.raises(ValueError, match="even frame sizes"):
    write_video(tmp_path / "odd.mp4", frames(h=23), fps=25)


@pytest.mark.parametrize("content,error,message", [
    (None, FileNotFoundError, "not found"),
    (b"", ValueError, "empty"),
    (b"\x00\x00\x01garbage that is no video" * 40, ValueError, "cannot open video|no decodable"),
])
def test_bad_files_raise_naming_the_file(tmp_path, content, error, message):
  path = tmp_path / "broken.mp4"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(error, match=message) as info:
    read_video(path)
  assert str(path) in str(info.value)


def test_truncated_mp4_raises(tmp_path):
  path = tmp_path / "clip.mp4"
  write_video(path, frames(), fps=25)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 3])  # the 'moov' index is at the end: unreadable
  with pytest.raises(ValueError) as info:
    read_video(path)
  assert str(path) in str(info.value)


def test_directory_and_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="directory"):
    read_video(tmp_path)
  with pytest.raises(ValueError, match="max_frames"):
    read_video(tmp_path / "x.mp4", max_frames=0)
  with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
    write_video(tmp_path / "x.mkv", np.zeros((4, 4, 3), np.uint8))
