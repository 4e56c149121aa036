"""Frames in and out: video files (PyAV) and the degradation model (bicubic resampling).

  video    read / write / stream videos as RGB uint8 frames (H, W, 3), display matrix, colour tags
  degrade  bicubic down/up-sampling of (..., H, W, C) frames and clips, flow resizing

The lowest of the pure modules (tests/test_layers.py): models, flow, the datasets (tfds_builders) and
the input pipelines (data/) import it; it imports none of them.
"""
