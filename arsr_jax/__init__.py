"""arsr_jax: action-recognition-oriented video super-resolution in JAX/Flax.

Conventions used throughout the package:
  * frames are NHWC float32 in [0, 1] (uint8 [0, 255] on disk), clips NTHWC;
  * optical flow is (..., H, W, 2) in pixels, channel 0 = u (x, columns),
    channel 1 = v (y, rows); flow[t] maps frame t to frame t + 1, i.e. a point
    at (x, y) in frame t is found at (x + u, y + v) in frame t + 1.
"""

__version__ = "0.1.0"
