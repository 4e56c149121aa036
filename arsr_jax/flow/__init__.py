"""Optical flow: TV-L1 estimation, backward warping, flow files and pictures.

Flow arrays follow the package convention (see ``arsr_jax/__init__.py``):
(..., H, W, 2) in pixels, channel 0 = u (x), channel 1 = v (y), mapping frame
t to frame t + 1.

  tvl1.py   TV-L1 (OpenCV DualTVL1 equivalent) in JAX, batched and shardable
  tvl1_step.py  its primal-dual iteration (a one-kernel form for accelerators)
  ops.py    OpenCV-compatible median filter, gradients, resizing, bicubic remap
  warp.py   differentiable backward warping
  io.py     Middlebury .flo files, TSN uint8 quantisation, resizing
  vis.py    colour-wheel images, temporal profiles, PNG saving
  __main__  ``python -m arsr_jax.flow VIDEO OUTDIR``: video -> flow PNGs
"""

from arsr_jax.flow.io import dequantize_flow, quantize_flow, read_flo, resize_flow, write_flo
from arsr_jax.flow.tvl1 import TVL1Params, tvl1_flow, tvl1_flow_sharded
from arsr_jax.flow.vis import flow_to_color, save_png, temporal_profile
from arsr_jax.flow.warp import warp

__all__ = [
    "TVL1Params", "tvl1_flow", "tvl1_flow_sharded", "warp",
    "read_flo", "write_flo", "quantize_flow", "dequantize_flow", "resize_flow",
    "flow_to_color", "temporal_profile", "save_png",
]
