"""Every speed figure of the project in one run, sized for a few minutes of one H100 / H200.

  python benchmarks/gpu_check.py [--size paper|smoke] [--out gpu_check.json] [--budget_s 480]
                                 [--parts data,train,infer,torch,flow,eval] [--recipes vdsr,...]

Runs, each part in its own process group under its own time budget (seconds, ``BUDGETS``):
  data     the recipes' datasets (synthetic_actions), generated once into ``--data_dir``;
  train    ``train_bench.py`` per recipe (vdsr, rrdbnet = esrgan:psnr, esrgan, duf16, sosr_vdsr,
           tosr1_vdsr, dvsr): step alone and fed by the grain pipeline, conv ceiling, roofline;
  infer    ``infer_bench.py``: VDSR / RRDBNet x4 inference at 80x60 -> 320x240;
  torch    ``torch_reference.py``: the same setups in PyTorch, in this run on this GPU;
  flow     ``flow_bench.py``: TV-L1 pairs/s at 320x240, compacting and at full batch width, on
           real pairs (``--flow_pairs``, written here first), with roofline at the measured work;
  eval     ``eval_bench.py``: the evaluation protocol's videos/s at UCF101 size, on real frames
           (``--eval_frames``; write them here first, see benchmarks/README.md).
A part that runs past its budget is killed and reported ``"status": "timeout"``; time a part
leaves unused goes to the next ones, and the whole run stays within ``--budget_s``. Statuses:
``ok``, ``timeout``, ``error`` (with the tail of its stderr), ``unavailable`` (torch missing or no
GPU: its ratios are null) or ``skipped`` (no time left). Prints ONE JSON object (progress on
stderr) and writes it to ``--out``:
  {"size", "budget_s", "total_s", "parts": {name: {"status", "wall_s", "budget_s", "result"}},
   "summary": {recipe: samples/s, vs_conv, vs_torch_bf16 / _fp32 (JAX samples/s over PyTorch's, the
   target >= 2), predicted samples/s (roofline)}, infer ratios, flow pairs/s, eval videos/s}.
``--size smoke`` runs every part tiny, on a CPU in about two minutes (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
RECIPES = ("vdsr", "rrdbnet", "esrgan", "duf16", "sosr_vdsr", "tosr1_vdsr", "dvsr")
TORCH_SETUPS = {"vdsr": "vdsr", "rrdbnet": "rrdbnet", "duf16": "duf16"}  # recipe -> torch_reference setup
# Seconds per part (train: per recipe). paper: 480 s in all on one H100 / H200.
BUDGETS = {"paper": {"data": 20, "train": 40, "infer": 25, "torch": 50, "flow": 45, "eval": 60},
           "smoke": {"data": 60, "train": 60, "infer": 40, "torch": 45, "flow": 40, "eval": 90}}
# Smoke parts compile with XLA:CPU's fast-compile options (as the tests do): plumbing, not speed.
SMOKE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
TRAIN_STEPS = {"paper": 20, "smoke": 2}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", choices=("paper", "smoke"), default="paper")
  p.add_argument("--out", default="gpu_check.json", help="where the JSON is written too")
  p.add_argument("--budget_s", type=float, default=0, help="whole run (0: the sum of the part budgets)")
  p.add_argument("--parts", default="data,train,infer,torch,flow,eval")
  p.add_argument("--recipes", default=",".join(RECIPES))
  p.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "arsr_train_bench_tfds"))
  p.add_argument("--eval_frames", default=str(HERE.parent / ".device" / "eval_frames.npz"),
                 help="eval_bench --frames: real frames (.npz from eval_bench --save_frames, or a folder "
                      "of videos); when the default .npz is absent, eval_bench's own default")
  p.add_argument("--flow_pairs", default=str(HERE.parent / ".device" / "flow_pairs.npz"),
                 help="flow_bench --pairs: real pairs (.npz from flow_bench --save_pairs, or a folder of "
                      "videos); when the default .npz is absent, flow_bench's own default")
  p.add_argument("--torch_device", default="auto", help="torch_reference --device (cpu: a smoke check)")
  return p.parse_args(argv)


def commands(args) -> list[tuple[str, str, list[str]]]:
  """(part name, budget key, argv) in running order."""
  py, smoke = sys.executable, args.size == "smoke"
  parts = set(args.parts.split(","))
  recipes = [r for r in args.recipes.split(",") if r]
  train = [py, str(HERE / "train_bench.py"), "--size", args.size, "--data_dir", args.data_dir]
  out = []
  if "data" in parts and "train" in parts:
    out.append(("data", "data", train + ["--recipes", ",".join(recipes), "--prepare_only"]))
  if "train" in parts:
    out += [(f"train/{r}", "train", train + ["--recipes", r, "--steps", str(TRAIN_STEPS[args.size])])
            for r in recipes]
  if "infer" in parts:
    out.append(("infer", "infer", [py, str(HERE / "infer_bench.py"), "--size", args.size,
                                   "--seconds", "0.2" if smoke else "2"]))
  if "torch" in parts:
    out.append(("torch", "torch", [py, str(HERE / "torch_reference.py"), "--size", args.size,
                                   "--device", args.torch_device, "--seconds", "0.05" if smoke else "1.5",
                                   *(["--dtypes", "fp32"] if smoke else [])]))
  if "flow" in parts:
    out.append(("flow", "flow", [py, str(HERE / "flow_bench.py"), *(
        ["--size", "48x32", "--batch", "2", "--rounds", "1", "--opencv-pairs", "1", "--no-chairs", "--tiny"]
        if smoke else ["--batch", "32", "--rounds", "1", "--no-chairs"]),
        *(["--pairs", args.flow_pairs] if not smoke and (
            not args.flow_pairs.endswith(".npz") or os.path.exists(args.flow_pairs)) else [])]))
  if "eval" in parts:
    out.append(("eval", "eval", [py, str(HERE / "eval_bench.py"), "--size", "smoke" if smoke else "ucf101",
                                 "--rounds", "1" if smoke else "2",
                                 *(["--tiny_tvl1", "--frames", "noise"] if smoke else ["--no_stages"]),
                                 *(["--frames", args.eval_frames] if not smoke and (
                                     not args.eval_frames.endswith(".npz") or os.path.exists(args.eval_frames))
                                   else [])]))
  return out


def run_part(argv: list[str], timeout: float, smoke: bool = False) -> dict:
  """Runs one part in its own process group; kills the group at ``timeout``."""
  t0 = time.perf_counter()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
  if smoke:
    env["XLA_FLAGS"] = " ".join(dict.fromkeys(env.get("XLA_FLAGS", "").split() + SMOKE_XLA_FLAGS.split()))
  proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True)
  try:
    stdout, stderr = proc.communicate(timeout=max(timeout, 1))
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return {"status": "timeout", "wall_s": round(time.perf_counter() - t0, 1)}
  wall = round(time.perf_counter() - t0, 1)
  result = _parse(stdout)
  if proc.returncode or result is None:
    return {"status": "error", "wall_s": wall, "error": f"exit {proc.returncode}: ...{stderr[-1500:]}"}
  return {"status": "ok", "wall_s": wall, "result": result}


def _parse(stdout: str):
  """The part's JSON object: the whole stdout, else its last line."""
  for text in (stdout, (stdout.strip().splitlines() or [""])[-1]):
    try:
      return json.loads(text)
    except ValueError:
      continue
  return None


def summarize(parts: dict) -> dict:
  """Ratios side by side: JAX over PyTorch, over the conv ceiling, over the roofline prediction."""
  get = lambda name: parts.get(name, {}).get("result") or {}  # noqa: E731
  torch = get("torch")
  torch_ok = torch.get("available", False)
  out = {"torch_available": torch_ok, "torch_reason": torch.get("reason"), "recipes": {}}
  for name, part in parts.items():
    if not name.startswith("train/"):
      continue
    recipe = name.split("/", 1)[1]
    r = (part.get("result") or {}).get("recipes", {}).get(recipe, {})
    row = {"status": part["status"] if not r.get("error") else "error", "samples_per_s": r.get("samples_per_s"),
           "pipeline_samples_per_s": r.get("pipeline_samples_per_s"), "vs_conv": r.get("vs_conv"),
           "compile_s": r.get("compile_s"), "dtype": r.get("dtype")}
    roof = r.get("roofline") or {}
    row.update(predicted_h100_samples_per_s=roof.get("h100_samples_per_s"),
               predicted_h200_samples_per_s=roof.get("h200_samples_per_s"),
               measured_over_h100=roof.get("measured_over_h100"), measured_over_h200=roof.get("measured_over_h200"))
    ref = torch.get("train", {}).get(TORCH_SETUPS.get(recipe, ""), {}) if torch_ok else {}
    for dtype in ("bf16", "fp32"):
      theirs = (ref.get(dtype) or {}).get("samples_per_s")
      row[f"torch_{dtype}_samples_per_s"] = theirs
      row[f"vs_torch_{dtype}"] = row["samples_per_s"] / theirs if theirs and row["samples_per_s"] else None
    out["recipes"][recipe] = row
  infer = get("infer").get("nets", {})
  out["infer"] = {}
  for net, r in infer.items():
    row = {"frames_per_s": r.get("frames_per_s")}
    for dtype in ("bf16", "fp32"):
      theirs = ((torch.get("infer", {}).get(net) or {}).get(dtype) or {}).get("frames_per_s") if torch_ok else None
      row[f"vs_torch_{dtype}"] = r["frames_per_s"] / theirs if theirs and r.get("frames_per_s") else None
    out["infer"][net] = row
  flow, ev = get("flow"), get("eval")
  at_work = (flow.get("roofline_at_measured_work") or {}).get("compact") or {}
  out["flow"] = {"jax_pairs_per_s": flow.get("jax_pairs_per_s"), "opencv_pairs_per_s": flow.get("opencv_pairs_per_s"),
                 "jax_pairs_per_s_full_batch": flow.get("jax_pairs_per_s_full_batch"),
                 "predicted_h100_pairs_per_s_upper_bound_work": (flow.get("roofline") or {}).get("h100_pairs_per_s"),
                 "predicted_h100_pairs_per_s": at_work.get("h100_pairs_per_s"),
                 "predicted_h200_pairs_per_s": at_work.get("h200_pairs_per_s"),
                 "target_pairs_per_s": 500}
  ev_work = (ev.get("roofline_at_measured_work") or {}).get("full") or {}
  out["eval"] = {"videos_per_s": ev.get("videos_per_s"), "ucf101_split1_min": ev.get("ucf101_split1_min"),
                 "predicted_h100_videos_per_s_upper_bound_work":
                     ((ev.get("roofline") or {}).get("full") or {}).get("h100_videos_per_s"),
                 "predicted_h100_videos_per_s": ev_work.get("h100_videos_per_s"),
                 "target_videos_per_s": 6.3}
  return out


def main(args) -> dict:
  budgets = BUDGETS[args.size]
  plan = commands(args)
  total = args.budget_s or sum(budgets[key] for _, key, _ in plan)
  start, slack, parts = time.perf_counter(), 0.0, {}
  for name, key, argv in plan:
    left = total - (time.perf_counter() - start)
    budget = min(budgets[key] + slack, left)
    if budget < 1:
      parts[name] = {"status": "skipped", "budget_s": 0}
      continue
    print(f"[gpu_check] {name}: budget {budget:.0f} s", file=sys.stderr, flush=True)
    part = run_part(argv, budget, args.size == "smoke")
    part["budget_s"] = round(budget, 1)
    if part["status"] == "ok" and name == "torch" and not part["result"].get("available", True):
      part["status"] = "unavailable"
    slack = max(0.0, budget - part["wall_s"])
    parts[name] = part
    print(f"[gpu_check] {name}: {part['status']} in {part['wall_s']} s", file=sys.stderr, flush=True)
  summary = summarize(parts)
  summary["ratios_comparable"] = args.size == "paper"  # smoke nets and batches differ between the sides
  return {"size": args.size, "budget_s": total, "total_s": round(time.perf_counter() - start, 1),
          "host_cpus": os.cpu_count(), "parts": parts, "summary": summary}


if __name__ == "__main__":
  ARGS = parse_args()
  RESULT = main(ARGS)
  pathlib.Path(ARGS.out).write_text(json.dumps(RESULT, indent=1))
  print(json.dumps(RESULT))
