"""CPU cost of one consistency step's SR part, per network, beside the frozen I3D's part (issue 24).

  python benchmarks/sr_step_cost_bench.py [--scale 4] [--batch 2] [--frames 16] [--size 112] \
      [--nets vdsr_8x16,srvgg32,animevideov3,x4plus] [--repeats 2] [--out cost.json]

A consistency step (configs/sosr_vdsr_consistency.py) runs the SR network forward + backward on
``batch`` clips of ``frames`` LR frames (``size / scale`` px) and I3D forward on the HR clip and
forward + backward to the input on the SR clip (112 px, global pooling). Per network: parameters,
compile seconds, and per call (jitted, after compilation) wall seconds and process CPU seconds
(user + system of all threads: the fair measure on a shared CPU) of SR forward + backward; then the
same for I3D. Random weights (the cost does not depend on their values). JSON on stdout (and --out).
"""

import argparse
import json
import os
import resource
import time

import jax
import jax.numpy as jnp

from arsr_jax import models
from arsr_jax.recognition import i3d

NETS = {  # name -> (model name, kwargs); x4plus / animevideov3: the Real-ESRGAN networks (models/ncnn_import.py)
    "vdsr_8x16": ("vdsr", {"num_layers": 8, "features": 16}),
    "srvgg32": ("srvgg_compact", {"features": 32, "num_conv": 8}),
    "animevideov3": ("srvgg_compact", {"features": 64, "num_conv": 16}),
    "x4plus": ("rrdbnet", {"num_blocks": 23, "features": 64, "growth": 32}),
}


def cpu() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def measure(fn, *args, repeats: int) -> dict:
  t, c = time.perf_counter(), cpu()
  jax.block_until_ready(fn(*args))
  first = {"compile_wall_s": time.perf_counter() - t, "compile_cpu_s": cpu() - c}
  t, c = time.perf_counter(), cpu()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return {**first, "wall_s": (time.perf_counter() - t) / repeats, "cpu_s": (cpu() - c) / repeats}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--scale", type=int, default=4)
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--size", type=int, default=112)
  p.add_argument("--nets", default=",".join(NETS))
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--out", default="")
  a = p.parse_args()
  unknown = [n for n in a.nets.split(",") if n not in NETS]
  if unknown:
    p.error(f"unknown --nets {unknown}; known: {sorted(NETS)}")
  h = a.size // a.scale
  lr = jax.random.uniform(jax.random.key(0), (a.batch * a.frames, h, h, 3))
  out = {"scale": a.scale, "batch": a.batch, "frames": a.frames, "size": a.size, "cpus": os.cpu_count(),
         "load_avg_start": os.getloadavg(), "sr": {}}
  for name in a.nets.split(","):
    model_name, kwargs = NETS[name]
    net = models.build_model(model_name, a.scale, **kwargs)
    variables = net.init(jax.random.key(1), lr[:1])
    grad = jax.jit(jax.grad(lambda v, x: jnp.mean(net.apply(v, x) ** 2)))
    n = sum(x.size for x in jax.tree.leaves(variables["params"]))
    out["sr"][name] = {"parameters": int(n), **measure(grad, variables, lr, repeats=a.repeats)}
    print(name, out["sr"][name], flush=True)
  x = jax.random.uniform(jax.random.key(2), (a.batch, a.frames, a.size, a.size, 3), minval=-1, maxval=1)
  net = i3d.I3D(global_pool=True)
  variables = net.init(jax.random.key(3), x[:1])
  step = jax.jit(lambda v, x: (net.apply(v, x, train=False), jax.grad(lambda y: jnp.sum(net.apply(v, y, train=False)))(x)))
  out["i3d_fwd_hr_plus_fwd_bwd_sr"] = measure(step, variables, x, repeats=a.repeats)
  out["load_avg_end"] = os.getloadavg()
  text = json.dumps(out, indent=1)
  print(text)
  if a.out:
    with open(a.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
