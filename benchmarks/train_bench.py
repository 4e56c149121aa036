"""Training throughput of the recipes: the real jitted train step, alone and fed by the input pipeline.

  python benchmarks/train_bench.py [--recipes vdsr,esrgan,...] [--size paper|smoke] [--steps N]
                                   [--dtype auto|float32|bfloat16] [--data_dir DIR] [--no_pipeline]
                                   [--compile_only] [--model_opts scan_unroll=1,remat=true]

Prints ONE JSON object. Each recipe runs in its own subprocess (peak memory per
recipe, crashes contained). The step is built as ``train.py`` builds it: state
replicated on ``sharding.make_mesh()``, batch sharded on ``data``, state donated.

  * ``compile_s`` (lower + compile; ``compile_cpu_s`` its process CPU time) and
    ``warmup_s`` (first steps), excluded from all rates;
  * ``steps_per_s`` / ``samples_per_s``: ``--steps`` steps on one device-resident
    synthetic batch (random patches cut by the recipe's own sampler); a sample is
    one item of ``train.batch_size`` (a frame, a ToSR pair, a DUF window, a clip:
    ``hr_frames_per_sample`` HR frames). Steps chain through the donated state, so
    one ``block_until_ready`` after the loop waits for all of them;
  * ``peak_bytes``: max ``peak_bytes_in_use`` of the local devices after the timed
    steps, null where the backend keeps no statistics (CPU); ``xla_memory_bytes``:
    the compiled step's arguments + outputs + temporaries - donated aliases
    (``memory_analysis()``, any backend); ``host_peak_rss_bytes``: the child
    process's peak resident memory (on CPU: compilation and device buffers);
  * ``flops_per_step_per_device``: the compiled step's FLOPs (forward, backward,
    loss, optimizer; per device, as the partitioned program runs; 2 per
    multiply-add) from ``roofline.cost`` (XLA's cost analysis, loops counted
    their trip count times), and ``flops_per_s_per_device``;
  * ``roofline``: ``roofline.summary`` of the step: predicted seconds per step and
    samples/s per device on an H100 / H200, measured/predicted on a GPU;
  * ``conv_flops_per_s_per_device``: the same for ONE 64-channel 3x3 convolution,
    NHWC, forward + backward (input and weight gradients), same batch, the
    recipe's largest (HR) spatial size, same dtype, same mesh, timed in the same
    process; ``vs_conv`` = step FLOP/s / conv FLOP/s, the fraction of this
    practical ceiling that the step reaches;
  * with the pipeline (unless ``--no_pipeline``): the recipe's grain iterator over
    TFDS ``synthetic_actions`` (generated on first use into ``--data_dir``;
    ``data_prepare_s``), ``pipeline_samples_per_s`` of the step fed by it (host ->
    device copy included), ``pipeline_vs_step`` = that / step-only samples/s, and
    ``input_only_samples_per_s`` of the iterator alone;
  * ``--compile_only``: compile, memory and roofline figures only (no step runs):
    the paper-size predictions from a CPU; ``--prepare_only``: only generate the
    recipes' datasets in ``--data_dir`` (prints ``data_prepare_s``);
  * ``--model_opts``: generator options, applied where the net has them, e.g.
    ``remat=true``, ``scan_unroll=1`` (the scan as a loop on a CPU too, i.e. the program a GPU compiles);
  * ``--aot h100`` (or h200; implies ``--compile_only --no_pipeline``): the step compiled by XLA:GPU
    for that GPU on this host (``aot.py``: JAX's CUDA plugin, no GPU), as a GPU would run it
    (compute dtype 'auto' -> bfloat16, scans as loops of ``layers.ACCELERATOR_UNROLL`` blocks,
    cuDNN / cuBLAS calls costed from their shapes): the roofline of XLA:GPU's own fusions.
PyTorch comparisons: ``torch_reference.py``, joined by ``gpu_check.py``.

``--size paper`` uses each recipe's own config (VDSR: 64 x 128^2 HR; RRDBNet =
esrgan:psnr and ESRGAN (full GAN step with VGG19 perceptual): 16 x 32^2 -> 128^2; DUF-16:
16 x 7 x 32^2 -> 128^2; ToSR1: 32 pairs; DVSR: 8 clips of 16 x 16^2 -> 64^2), ``--size smoke``
its 'smoke' variant (tiny nets, patches and batches on synthetic_actions/small) with short
timing. Perceptual losses run on random VGG weights (``loss.perceptual_weights=random``): they
cost what ImageNet's do and need no download.
Compute dtype is ``config.compute_dtype`` ('auto': bf16 on GPU/TPU, f32 on CPU)
unless ``--dtype`` says otherwise. Failures are recorded per recipe as ``error``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import aot  # noqa: E402
import roofline  # noqa: E402

# name -> (recipe file in configs/, variant)
RECIPES = {"vdsr": ("vdsr", ""), "rrdbnet": ("esrgan", "psnr"), "esrgan": ("esrgan", ""),
           "duf16": ("duf16", ""), "sosr_vdsr": ("sosr_vdsr", ""), "tosr1_vdsr": ("tosr1_vdsr", ""),
           "rcan": ("rcan", ""), "dvsr": ("dvsr", "")}
DEFAULT_STEPS = {"paper": 50, "smoke": 5}
WARMUP_STEPS = 2
CONV_SECONDS = {"paper": 2.0, "smoke": 0.5}  # target duration of the convolution timing


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated subset of {list(RECIPES)}")
  p.add_argument("--size", choices=("paper", "smoke"), default="paper")
  p.add_argument("--steps", type=int, default=0, help=f"timed steps (0: {DEFAULT_STEPS})")
  p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default=None,
                 help="compute dtype override (default: the config's compute_dtype)")
  p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: a directory in the temp dir)")
  p.add_argument("--no_pipeline", action="store_true", help="skip the input-pipeline timing")
  p.add_argument("--compile_only", action="store_true", help="compile, memory and roofline figures only")
  p.add_argument("--prepare_only", action="store_true", help="only generate the recipes' datasets")
  p.add_argument("--model_opts", default="", help="generator options NAME=VALUE,... (e.g. remat=true)")
  p.add_argument("--recipe_timeout", type=float, default=3600, help="seconds per recipe subprocess")
  aot.add_argument(p, "compile for this GPU without one (deviceless; implies --compile_only --no_pipeline)")
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one recipe, print its JSON
  args = p.parse_args(argv)
  args.steps = args.steps or DEFAULT_STEPS[args.size]
  aot.check(p, args)
  if args.aot:
    args.compile_only = args.no_pipeline = True
  args.data_dir = args.data_dir or os.path.join(tempfile.gettempdir(), "arsr_train_bench_tfds")
  return args


# ---------------------------------------------------------------------------
# One recipe (runs in a child process).

def load_config(name: str, size: str, dtype: str | None, data_dir: str, model_opts: str = "", gpu: bool = False):
  """(config, 'configs/FILE.py:VARIANT') of recipe ``name`` at ``size``, with ``model_opts`` applied;
  ``gpu``: the settings a GPU's 'auto' picks (bfloat16, scans as loops), for a deviceless compile."""
  from arsr_jax import config_lib, models, precision
  from arsr_jax.models import layers
  file, variant = RECIPES[name]
  variant = ",".join(v for v in (variant, "smoke" if size == "smoke" else "") if v)
  config = config_lib.recipe(file, variant)
  config.compute_dtype = dtype or config.compute_dtype
  config.data.data_dir = data_dir
  if config.loss.get("perceptual_weight"):  # timing only: the VGG's weight values do not change its cost
    config.loss.perceptual_weights = "random"
  opts = dict(opt.split("=") for opt in filter(None, model_opts.split(",")))
  if gpu:
    config.compute_dtype = precision.compute_dtype(config.compute_dtype, "gpu").name
    opts.setdefault("scan_unroll", str(layers.ACCELERATOR_UNROLL[True]))  # training
  for key, value in opts.items():
    if models.accepts(config.model.name, key):
      config.model[key] = json.loads(value.lower())
  return config, f"configs/{file}.py:{variant}"


def synthetic_batch(config, n: int, seed: int = 0):
  """n random examples cut by the recipe's own sampler from one random clip (the pipeline's shapes)."""
  import numpy as np
  from arsr_jax.data import pipeline
  d, s = config.data, config.scale
  t, size = max(d.clip_length, d.input_frames, 2) + 1, d.patch_size or 128
  rng = np.random.default_rng(seed)
  clip = {"hr": rng.integers(0, 256, (t, size, size, 3), np.uint8),
          "lr": rng.integers(0, 256, (t, size // s, size // s, 3), np.uint8),
          "flow": rng.normal(0.0, 2.0, (t - 1, size, size, 2)).astype(np.float16)}
  sampler = pipeline.sample_patch(config.data, config.scale)
  items = [sampler.random_map(clip, rng) for _ in range(n)]
  return {k: np.stack([it[k] for it in items]) for k in items[0]}


def flops_of(compiled) -> float | None:
  """Loop-corrected FLOPs of a compiled program (``roofline.cost``), None where unavailable."""
  c = roofline.safe_cost(compiled)
  return c["flops"] if c and c["flops"] > 0 else None


def memory_of(compiled) -> int | None:
  """Arguments + outputs + temporaries - aliases of a compiled program (bytes), None if unknown."""
  try:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)
  except Exception:  # noqa: BLE001
    return None


def host_peak_rss() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def peak_bytes() -> int | None:
  import jax
  try:
    stats = [d.memory_stats() for d in jax.local_devices()]
  except Exception:  # noqa: BLE001
    return None
  peaks = [s.get("peak_bytes_in_use") for s in stats if s]
  return max(peaks) if peaks and None not in peaks else None  # CPU: memory_stats() is None


def conv_ceiling(mesh, batch: int, size: int, dtype, seconds: float) -> tuple[float | None, float]:
  """(FLOPs per call, FLOP/s) of one 64-ch 3x3 NHWC conv, forward + input and weight gradients."""
  import jax
  from arsr_jax import sharding
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def fwd_bwd(x, w, g):
    y, vjp = jax.vjp(conv, x, w)
    dx, dw = vjp(g)
    return y, dx, (w - 1e-6 * dw).astype(w.dtype)  # the weight chain orders successive calls

  kx, kw, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.device_put(jax.random.normal(kx, (batch, size, size, 64), dtype), batched)
  g = jax.device_put(jax.random.normal(kg, (batch, size, size, 64), dtype), batched)
  w = jax.device_put((0.05 * jax.random.normal(kw, (3, 3, 64, 64))).astype(dtype), repl)
  fn = jax.jit(fwd_bwd, in_shardings=(batched, repl, batched),
               out_shardings=(batched, batched, repl)).lower(x, w, g).compile()
  flops = flops_of(fn) or 3 * 2 * batch * size * size * 9 * 64 * 64 / mesh.devices.size
  w = jax.block_until_ready(fn(x, w, g))[2]  # warm-up
  t0 = time.perf_counter()
  w = jax.block_until_ready(fn(x, w, g))[2]
  n = int(min(1000, max(5, seconds / max(time.perf_counter() - t0, 1e-6))))
  t0 = time.perf_counter()
  for _ in range(n):
    _, _, w = fn(x, w, g)
  jax.block_until_ready(w)
  return flops, flops * n / (time.perf_counter() - t0)


def run_steps(step, state, next_batch, frozen, rng, n: int):
  """Runs n steps; returns (state, last metrics, seconds), all work finished."""
  import jax
  t0 = time.perf_counter()
  metrics = None
  for _ in range(n):
    state, metrics = step(state, next_batch(), frozen, rng)
  jax.block_until_ready((state, metrics))
  return state, metrics, time.perf_counter() - t0


def bench_recipe(name: str, args) -> dict:
  import jax
  import numpy as np
  from arsr_jax import precision, sharding
  from arsr_jax.jobs import sr as sr_job
  from arsr_jax.steps import sr as sr_steps

  config, spec = load_config(name, args.size, args.dtype, args.data_dir, args.model_opts, gpu=bool(args.aot))
  dtype = precision.compute_dtype(config.compute_dtype)
  setup, frozen = sr_job.build(config)
  mesh = sharding.make_mesh()
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  global_batch = config.train.batch_size
  per_process = sharding.check_batch_size(global_batch, mesh)
  init_rng, rng = jax.random.split(jax.random.key(config.seed))
  rng = jax.device_put(rng, repl)
  lr_shape, hr_shape = sr_job.init_shapes(config.data, config.scale, setup.model)
  state = jax.jit(sr_steps.make_init_fn(setup, lr_shape, hr_shape), out_shardings=repl)(init_rng)
  train_step = sr_steps.make_train_step(setup)
  jitted = jax.jit(train_step, in_shardings=(repl, batched, repl, repl), out_shardings=(repl, repl),
                   donate_argnums=(0,))
  frozen = jax.device_put(frozen, repl)
  batch = sharding.to_global(synthetic_batch(config, per_process), mesh)
  out = {"config": spec, "model": config.model.name, "discriminator": config.discriminator.get("name"),
         "model_opts": {k: v for k, v in config.model.items() if k in ("remat", "scan_unroll")},
         "dtype": dtype.name, "batch_size": global_batch,
         "shapes": {k: list(v.shape) for k, v in batch.items()},
         "hr_frames_per_sample": int(np.prod(batch["hr"].shape[1:-3])),
         "generator_params": int(sum(x.size for x in jax.tree.leaves(state.params["generator"])))}

  t0, cpu0 = time.perf_counter(), time.process_time()
  if args.aot:  # the same step, compiled by XLA:GPU for a GPU this host does not have
    target = aot.target(args.aot)
    jitted = jax.jit(train_step, out_shardings=(target, target), donate_argnums=(0,))
    state, batch, frozen, rng = aot.specs((state, batch, frozen, rng), target)
    out["compiled_for"] = f"{args.aot} (deviceless)"
  step = jitted.lower(state, batch, frozen, rng).compile()
  out["compile_s"] = round(time.perf_counter() - t0, 3)
  out["compile_cpu_s"] = round(time.process_time() - cpu0, 3)  # less sensitive to a busy host
  cost = roofline.safe_cost(step)
  flops = cost["flops"] if cost and cost["flops"] > 0 else None
  per_device = global_batch / mesh.devices.size
  out.update(flops_per_step_per_device=flops, xla_memory_bytes=memory_of(step))
  if args.compile_only:
    out["roofline"] = roofline.summary(cost, dtype.name, per_device, "samples")
    out["host_peak_rss_bytes"] = host_peak_rss()
    return out
  state, _, out["warmup_s"] = run_steps(step, state, lambda: batch, frozen, rng, WARMUP_STEPS)
  state, metrics, seconds = run_steps(step, state, lambda: batch, frozen, rng, args.steps)
  out["peak_bytes"] = peak_bytes()
  out["host_peak_rss_bytes"] = host_peak_rss()
  out["final_loss"] = float(metrics["loss"])
  out.update(steps_timed=args.steps, step_s=seconds / args.steps, steps_per_s=args.steps / seconds,
             samples_per_s=args.steps * global_batch / seconds,
             flops_per_s_per_device=flops * args.steps / seconds if flops else None)
  out["hr_frames_per_s"] = out["samples_per_s"] * out["hr_frames_per_sample"]
  out["roofline"] = roofline.summary(cost, dtype.name, per_device, "samples", out["step_s"],
                                     jax.default_backend() == "gpu")

  size = hr_shape[1]  # the HR patch: the largest spatial size of every recipe
  conv_flops, conv_rate = conv_ceiling(mesh, global_batch, size, dtype, CONV_SECONDS[args.size])
  step_rate = out["flops_per_s_per_device"]
  out.update(conv_shape=[global_batch, size, size, 64], conv_flops_per_device=conv_flops,
             conv_flops_per_s_per_device=conv_rate, vs_conv=step_rate / conv_rate if step_rate else None)

  if not args.no_pipeline:
    try:
      out.update(time_pipeline(config, step, state, frozen, rng, mesh, per_process, args.steps, global_batch))
      out["pipeline_vs_step"] = out["pipeline_samples_per_s"] / out["samples_per_s"]
    except Exception as e:  # noqa: BLE001  (keep the step-only numbers)
      out["pipeline_error"] = f"{type(e).__name__}: {e}"
  return out


def time_pipeline(config, step, state, frozen, rng, mesh, per_process: int, n: int, global_batch: int) -> dict:
  """Data preparation, iterator-only rate and the step fed by the real grain iterator."""
  from arsr_jax import sharding
  from arsr_jax.data import pipeline
  t0 = time.perf_counter()
  pipeline.get_builder(config.data.name, config.data.data_dir)  # generates synthetic_actions if needed
  prepare_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  it = pipeline.train_iterator(config.data, config.scale, per_process, config.seed)
  feed = lambda: sharding.to_global(next(it), mesh)  # noqa: E731
  state, _, _ = run_steps(step, state, feed, frozen, rng, WARMUP_STEPS)
  first_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(n):
    next(it)
  input_s = time.perf_counter() - t0
  state, _, fed_s = run_steps(step, state, feed, frozen, rng, n)
  return {"data_name": config.data.name, "data_prepare_s": round(prepare_s, 3),
          "pipeline_warmup_s": round(first_s, 3), "input_only_samples_per_s": n * global_batch / input_s,
          "pipeline_samples_per_s": n * global_batch / fed_s}


def child_main(args) -> None:
  if args.aot:
    aot.setup()  # before jax is imported
  import jax
  from arsr_jax import sharding
  sharding.maybe_initialize_distributed()  # multi-host: every host runs this script
  try:
    result = bench_recipe(args.child, args)
  except Exception as e:  # noqa: BLE001
    traceback.print_exc()
    result = {"error": f"{type(e).__name__}: {e}"}
  result["env"] = {"platform": jax.default_backend(), "device": jax.devices()[0].device_kind,
                   "device_count": jax.device_count(), "process_count": jax.process_count(),
                   "jax": jax.__version__}
  print(json.dumps(rounded(result)))


def rounded(tree, digits: int = 4):
  """Floats rounded to ``digits`` significant digits, for a readable JSON."""
  if isinstance(tree, dict):
    return {k: rounded(v, digits) for k, v in tree.items()}
  if isinstance(tree, float) and tree and math.isfinite(tree):
    return round(tree, digits - 1 - math.floor(math.log10(abs(tree))))
  return tree


# ---------------------------------------------------------------------------
# Driver: one subprocess per recipe, one JSON object out.

def prepare_data(names, args) -> dict:
  """Generates the datasets of recipes ``names`` into ``--data_dir``: {'datasets', 'data_prepare_s'}."""
  from arsr_jax.data import pipeline
  t0 = time.perf_counter()
  datasets = sorted({load_config(n, args.size, args.dtype, args.data_dir)[0].data.name for n in names})
  for name in datasets:
    pipeline.get_builder(name, args.data_dir)
  return {"datasets": datasets, "data_dir": args.data_dir, "data_prepare_s": round(time.perf_counter() - t0, 3)}


def main(args) -> None:
  names = [n for n in args.recipes.split(",") if n]
  unknown = [n for n in names if n not in RECIPES]
  if unknown:
    raise SystemExit(f"Unknown recipes {unknown}; known: {list(RECIPES)}")
  if args.prepare_only:
    print(json.dumps(prepare_data(names, args)))
    return
  start, env, results = time.perf_counter(), None, {}
  for name in names:
    cmd = [sys.executable, __file__, "--child", name, "--size", args.size, "--steps", str(args.steps),
           "--data_dir", args.data_dir, "--model_opts", args.model_opts,
           *(["--dtype", args.dtype] if args.dtype else []), *(["--no_pipeline"] if args.no_pipeline else []),
           *(["--compile_only"] if args.compile_only else []), *(["--aot", args.aot] if args.aot else [])]
    t0 = time.perf_counter()
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.recipe_timeout)
      lines = proc.stdout.strip().splitlines()
      result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {
          "error": f"exit code {proc.returncode}: ...{proc.stderr[-1500:]}"}
    except subprocess.TimeoutExpired:
      result = {"error": f"timed out after {args.recipe_timeout:.0f} s"}
    env = env or result.get("env")
    result.pop("env", None)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    results[name] = result
    print(f"[train_bench] {name}: " + (f"error {result['error'][:200]}" if "error" in result else
                                       f"compile {result['compile_s']:.1f} s, "
                                       f"{result.get('samples_per_s') or 0:.1f} samples/s"), file=sys.stderr)
  print(json.dumps({
      "size": args.size, "dtype_override": args.dtype, "steps_timed": args.steps,
      "warmup_steps": WARMUP_STEPS, "data_dir": None if args.no_pipeline else args.data_dir,
      **(env or {}), "host_cpus": os.cpu_count(), "host_load_avg_1min": round(os.getloadavg()[0], 2),
      "compile_only": args.compile_only, "model_opts": args.model_opts, "aot": args.aot or None,
      "roofline_peaks": roofline.peaks(),
      "recipes": results, "total_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
  ARGS = parse_args()
  child_main(ARGS) if ARGS.child else main(ARGS)
