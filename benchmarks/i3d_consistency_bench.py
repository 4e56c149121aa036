"""Step-time of the consistency objective's frozen I3D on this machine: float32 vs bfloat16.

  python benchmarks/i3d_consistency_bench.py [--size 112] [--frames 16] [--batch 2] [--repeats 3]

Times (jitted, after compilation) of: I3D forward on an HR batch, and forward + backward to the
input (what a consistency step adds to the SR network's own step), per compute dtype; random
weights (the cost does not depend on their values). Also the 224 px forward of the evaluation.
"""

import argparse
import time

import jax
import jax.numpy as jnp

from arsr_jax.recognition import i3d


def timed(fn, *args, repeats):
  jax.block_until_ready(fn(*args))
  t = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - t) / repeats


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--size", type=int, default=112)
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--repeats", type=int, default=3)
  a = p.parse_args()
  x = jax.random.uniform(jax.random.key(0), (a.batch, a.frames, a.size, a.size, 3), minval=-1, maxval=1)
  variables = i3d.I3D(global_pool=True).init(jax.random.key(1), x[:1])
  for dtype in ("float32", "bfloat16"):
    net = i3d.I3D(global_pool=True, dtype=jnp.dtype(dtype))
    fwd = jax.jit(lambda v, x: net.apply(v, x, train=False))
    grad = jax.jit(jax.grad(lambda x, v: jnp.sum(net.apply(v, x, train=False))))
    print(f"{dtype}: forward {timed(fwd, variables, x, repeats=a.repeats):.2f} s, forward+backward "
          f"{timed(grad, x, variables, repeats=a.repeats):.2f} s for {x.shape}", flush=True)
  x224 = jax.random.uniform(jax.random.key(0), (1, 16, 224, 224, 3), minval=-1, maxval=1)
  fwd = jax.jit(lambda v, x: i3d.I3D().apply(v, x, train=False))
  print(f"float32 224 px evaluation forward: {timed(fwd, variables, x224, repeats=a.repeats):.2f} s for {x224.shape}")


if __name__ == "__main__":
  main()
