"""Host input pipeline per CPU core, against what an accelerator's train step would consume.

  python benchmarks/input_bench.py                      # paper-size recipes, one core each
  python benchmarks/input_bench.py --predict            # + roofline step rates (compiles each step on the CPU)
  python benchmarks/input_bench.py --size smoke --batches 5
  python benchmarks/input_bench.py --workers auto       # the pipeline as training runs it (all cores)

Per recipe, the recipe's own grain training iterator (``data/pipeline.train_iterator``: random
clip, aligned LR/HR/flow crops and flips, batching) runs in this process with one read thread and
no worker processes, i.e. on about one core; after ``--warmup`` batches, ``--batches`` are timed:
  input_samples_per_s_per_core   training examples (frames, pairs or clips) per second;
  host_to_device_bytes_per_sample  what one example moves to the device (frames uint8, flow float32),
                                 and ``float32_frames_bytes_per_sample``, the same with float32 frames;
with ``--workers N|auto``: the pipeline as a training run configures it instead (data.read_threads
read threads, N grain worker processes or data.worker_count's auto rule, which is 0 on a CPU backend):
``input_samples_per_s`` and the ``worker_count`` used; with ``--predict``: ``predicted_step_samples_per_s`` (``train_bench.py --compile_only`` in bfloat16:
the roofline upper bound of the step on one H100 / H200) and ``cores_needed`` = predicted rate /
per-core rate, against ``HOST_CORES_PER_GPU`` (a GCP a3-highgpu-8g: 208 vCPUs for 8 H100s = 26).
The roofline is an upper bound on the step's speed, so ``cores_needed`` is one too; the issue-15
target (the GPU step at 2x PyTorch's speed) needs the measured PyTorch figure (gpu_check.py).
Prints ONE JSON object. Datasets: synthetic_actions, generated into ``--data_dir`` on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import train_bench  # noqa: E402

HOST_CORES_PER_GPU = {"name": "GCP a3-highgpu-8g (8 x H100, 208 vCPUs)", "cores_per_gpu": 26}
DEFAULT_RECIPES = ("vdsr", "rrdbnet", "duf16", "sosr_vdsr", "tosr1_vdsr", "dvsr")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--recipes", default=",".join(DEFAULT_RECIPES))
  p.add_argument("--size", choices=("paper", "smoke"), default="paper")
  p.add_argument("--batches", type=int, default=20, help="timed batches per recipe")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: train_bench's)")
  p.add_argument("--workers", default=None, help="N or 'auto': time the pipeline with its read threads and "
                 "N worker processes (default: one core, no workers)")
  p.add_argument("--predict", action="store_true", help="compile each step for its roofline rate (slow on CPU)")
  args = p.parse_args(argv)
  args.data_dir = args.data_dir or train_bench.parse_args([]).data_dir
  return args


def bench_input(name: str, args) -> dict:
  """One recipe's iterator on one core: samples/s and bytes per sample."""
  import numpy as np
  from arsr_jax.data import pipeline
  config, spec = train_bench.load_config(name, args.size, None, args.data_dir)
  if args.workers is None:
    config.data.worker_count, config.data.read_threads = 0, 1
  else:
    config.data.worker_count = pipeline.AUTO_WORKERS if args.workers == "auto" else int(args.workers)
  batch = config.train.batch_size
  pipeline.get_builder(config.data.name, args.data_dir)  # generates the dataset on first use
  it = pipeline.train_iterator(config.data, config.scale, batch, config.seed)
  for _ in range(args.warmup):
    first = next(it)
  t0 = time.perf_counter()
  for _ in range(args.batches):
    next(it)
  seconds = time.perf_counter() - t0
  frames = sum(v.nbytes for k, v in first.items() if v.dtype == np.uint8)
  total = sum(v.nbytes for v in first.values())
  rate = "input_samples_per_s_per_core" if args.workers is None else "input_samples_per_s"
  extra = {} if args.workers is None else {"worker_count": pipeline.resolve_worker_count(config.data.worker_count),
                                           "read_threads": config.data.read_threads}
  return {"config": spec, "dataset": config.data.name, "sampler": config.data.sampler, "batch_size": batch, **extra,
          rate: round(args.batches * batch / seconds, 2),
          "host_to_device_bytes_per_sample": total // batch,
          "float32_frames_bytes_per_sample": (total + 3 * frames) // batch}


def predicted_rate(name: str, args) -> dict:
  """The roofline samples/s of the recipe's bf16 step on one H100 / H200 (train_bench --compile_only)."""
  cmd = [sys.executable, str(HERE / "train_bench.py"), "--recipes", name, "--size", args.size, "--compile_only",
         "--no_pipeline", "--dtype", "bfloat16", "--data_dir", args.data_dir]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  try:
    r = json.loads(proc.stdout.strip().splitlines()[-1])["recipes"][name]
    return {gpu: r["roofline"][f"{gpu}_samples_per_s"] for gpu in ("h100", "h200")}
  except (IndexError, KeyError, ValueError):
    return {"error": proc.stderr[-500:]}


def main(args) -> dict:
  out = {"size": args.size, "host_cpus": os.cpu_count(), "host_load_avg_1min": round(os.getloadavg()[0], 2),
         "gpu_host": HOST_CORES_PER_GPU, "recipes": {}}
  for name in filter(None, args.recipes.split(",")):
    r = bench_input(name, args)
    if args.predict and args.workers is None:
      r["predicted_step_samples_per_s"] = pred = predicted_rate(name, args)
      if "error" not in pred:
        r["cores_needed"] = {gpu: round(rate / r["input_samples_per_s_per_core"], 2) for gpu, rate in pred.items()}
        r["fits_gpu_host"] = all(c <= HOST_CORES_PER_GPU["cores_per_gpu"] for c in r["cores_needed"].values())
    out["recipes"][name] = r
    print(f"[input_bench] {name}: {r.get('input_samples_per_s_per_core', r.get('input_samples_per_s'))} samples/s",
          file=sys.stderr)
  print(json.dumps(out, indent=2))
  return out


if __name__ == "__main__":
  main(parse_args())
