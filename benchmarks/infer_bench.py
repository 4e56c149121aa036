"""4x SR inference of VDSR-20 and RRDBNet-23 at 80x60 -> 320x240: the JAX side of
``torch_reference.py``'s inference setups.

  python benchmarks/infer_bench.py [--size paper|smoke] [--batch 16] [--dtype auto] [--seconds 2]
  python benchmarks/infer_bench.py --aot h100   # roofline only, as XLA:GPU compiles it (aot.py)

Prints ONE JSON object: per net, ``compile_s``, ``call_s``, ``frames_per_s`` (one jitted call on a
fixed device-resident batch of ``--batch`` LR frames, 3 warm-up calls, as many calls as fill
``--seconds``), and ``roofline`` (``roofline.summary``: predicted seconds per call and frames/s
on an H100 / H200; measured/predicted on a GPU). ``--size smoke``: tiny nets at 20x15 -> 80x60.
Random weights and frames: the speed does not depend on them. ``--aot h100`` (or h200): compile
only, for that GPU without one (``aot.py``; 'auto' -> bfloat16, scans as the loops a GPU runs at
inference, ``layers.ACCELERATOR_UNROLL[False]`` blocks an iteration unless ``--unroll`` says).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import aot  # noqa: E402
import roofline  # noqa: E402

if __name__ == "__main__" and aot.requested():
  aot.setup()  # before jax is imported

SIZES = {  # (LR height, width, batch, {net: options})
    "paper": (60, 80, 16, {"vdsr": dict(num_layers=20, features=64),
                           "rrdbnet": dict(num_blocks=23, features=64, growth=32)}),
    "smoke": (15, 20, 2, {"vdsr": dict(num_layers=4, features=16),
                          "rrdbnet": dict(num_blocks=1, features=16, growth=8)}),
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", choices=sorted(SIZES), default="paper")
  p.add_argument("--batch", type=int, default=0, help="LR frames per call (0: the size's)")
  p.add_argument("--dtype", default="auto", help="compute dtype: auto (bf16 on GPU/TPU), float32, bfloat16")
  p.add_argument("--seconds", type=float, default=2.0)
  aot.add_argument(p, "compile only, for this GPU without one")
  p.add_argument("--unroll", type=int, default=0, help="blocks per scan iteration (0: the platform's default)")
  args = p.parse_args(argv)
  aot.check(p, args)
  return args


def bench(name: str, opts: dict, lr: np.ndarray, dtype, seconds: float, target=None) -> dict:
  """Timing and roofline of one net; ``target``: compile only, for that deviceless GPU."""
  import jax
  from arsr_jax import models
  model = models.build_model(name, 4, dtype=dtype, **opts)
  rng = np.random.default_rng(0)  # random weights without compiling the initialisers
  variables = jax.tree.map(lambda s: (0.05 * rng.standard_normal(s.shape)).astype(s.dtype),
                           jax.eval_shape(model.init, jax.random.key(0), lr[:1]))
  x = jax.device_put(lr)
  t0 = time.perf_counter()
  fn = jax.jit(lambda v, x: model.apply(v, x)).lower(*(aot.specs((variables, x), target) if target else
                                                      (variables, x))).compile()
  compile_s = time.perf_counter() - t0
  if target is not None:
    return {"compile_s": round(compile_s, 3), "roofline": roofline.summary(
        roofline.safe_cost(fn), jax.numpy.dtype(dtype).name, lr.shape[0], "frames")}
  for _ in range(3):
    out = fn(variables, x)
  jax.block_until_ready(out)
  t0 = time.perf_counter()
  jax.block_until_ready(fn(variables, x))
  n = int(min(1000, max(3, seconds / max(time.perf_counter() - t0, 1e-6))))
  t0 = time.perf_counter()
  for _ in range(n):
    out = fn(variables, x)
  jax.block_until_ready(out)
  call_s = (time.perf_counter() - t0) / n
  batch = lr.shape[0]
  return {"params": int(sum(v.size for v in jax.tree.leaves(variables))), "compile_s": round(compile_s, 3),
          "calls_timed": n, "call_s": call_s, "frames_per_s": batch / call_s,
          "roofline": roofline.summary(roofline.safe_cost(fn), jax.numpy.dtype(dtype).name, batch, "frames",
                                       call_s, jax.default_backend() == "gpu")}


def main(args) -> dict:
  import jax
  from arsr_jax import precision
  from arsr_jax.models import layers
  h, w, batch, nets = SIZES[args.size]
  batch = args.batch or batch
  dtype = precision.compute_dtype(args.dtype, "gpu" if args.aot else None)
  target = aot.target(args.aot) if args.aot else None
  unroll = args.unroll or (layers.ACCELERATOR_UNROLL[False] if args.aot else None)
  lr = np.random.default_rng(0).random((batch, h, w, 3), np.float32)
  out = {"size": args.size, "device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
         "dtype": jax.numpy.dtype(dtype).name, "batch": batch, "lr_hw": [h, w], "hr_hw": [4 * h, 4 * w],
         "compiled_for": f"{args.aot} (deviceless)" if args.aot else "this host", "scan_unroll": unroll,
         "roofline_peaks": roofline.peaks(), "nets": {}}
  for name, opts in nets.items():
    print(f"[infer_bench] {name}", file=sys.stderr)
    try:
      out["nets"][name] = bench(name, dict(opts, scan_unroll=unroll), lr, dtype, args.seconds, target)
    except Exception as e:  # noqa: BLE001  (keep the other net's figures)
      out["nets"][name] = {"error": f"{type(e).__name__}: {e}"[:300]}
  return out


if __name__ == "__main__":
  print(json.dumps(main(parse_args())))
