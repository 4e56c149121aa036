"""Plumbing of benchmarks/gpu_check.py and benchmarks/roofline.py (no speed is asserted: speed
targets live in the benchmarks).

``gpu_check.py --size smoke`` runs every part tiny on the CPU; the test checks the JSON's structure
and that each part reported figures or a clear status (timeout, unavailable, skipped), never an
error.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax import lax

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import aot  # noqa: E402
import gpu_check  # noqa: E402
import roofline  # noqa: E402

pytestmark = pytest.mark.plumbing
CLEAR = {"timeout", "unavailable", "skipped"}


def _run(tmp_path, *args, timeout=900):
  """gpu_check.py in a subprocess on ONE CPU device (the tests' 8 fake devices would be 8x the work)."""
  flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f)
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  out = tmp_path / "gpu_check.json"
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result == json.loads(out.read_text())
  return result


def _figures(name, result):
  """The headline figure of a part that finished."""
  if name.startswith("train/"):
    r = result["recipes"][name.split("/")[1]]
    assert "error" not in r, r
    assert r["samples_per_s"] > 0 and r["compile_s"] > 0 and r["roofline"]["h100_s"] > 0
    assert r["pipeline_samples_per_s"] > 0, r.get("pipeline_error")
    return r["samples_per_s"]
  figure = {"data": lambda: result["data_prepare_s"] >= 0,
            "infer": lambda: all(n["frames_per_s"] > 0 and n["roofline"]["h200_s"] > 0
                                 for n in result["nets"].values()),
            "torch": lambda: all(v["samples_per_s"] > 0 for d in result["train"].values() for v in d.values()),
            "flow": lambda: (result["jax_pairs_per_s"] > 0 and result["jax_pairs_per_s_full_batch"] > 0
                             and result["roofline"]["bound"] == "upper"
                             and result["roofline_at_measured_work"]["compact"]["h100_s"] > 0
                             and result["steps"]["work_over_useful"]["compact"] >= 1),
            "eval": lambda: result["videos_per_s"] > 0 and result["roofline"]["full"]["h100_s"] > 0}[name]()
  assert figure, (name, result)
  return figure


@pytest.mark.slow
def test_smoke_run_reports_every_part(tmp_path, small_data_dir):
  result = _run(tmp_path, "--size", "smoke", "--data_dir", small_data_dir, "--torch_device", "cpu")
  assert {"size", "budget_s", "total_s", "parts", "summary"} <= set(result) and result["size"] == "smoke"
  expected = {"data", "infer", "torch", "flow", "eval", *(f"train/{r}" for r in gpu_check.RECIPES)}
  assert set(result["parts"]) == expected
  for name, part in result["parts"].items():
    assert part["status"] == "ok" or part["status"] in CLEAR, (name, part)
    assert part["budget_s"] >= 0
    if part["status"] == "ok":
      _figures(name, part["result"])
  summary = result["summary"]
  assert set(summary["recipes"]) == {r for r in gpu_check.RECIPES if result["parts"][f"train/{r}"]["status"] == "ok"}
  for row in summary["recipes"].values():
    assert {"samples_per_s", "vs_conv", "vs_torch_bf16", "vs_torch_fp32", "predicted_h100_samples_per_s"} <= set(row)
  assert {"flow", "eval", "infer", "torch_available"} <= set(summary) and summary["ratios_comparable"] is False


def test_a_part_past_its_budget_is_reported_as_timeout(monkeypatch):
  slow = [sys.executable, "-c", "import time; time.sleep(60)"]
  part = gpu_check.run_part(slow, 1.0)
  assert part["status"] == "timeout" and part["wall_s"] < 30  # its process group was killed
  # A part that uses up the run's budget leaves nothing for the next one, which is skipped.
  monkeypatch.setattr(gpu_check, "commands", lambda args: [("flow", "flow", slow), ("eval", "eval", slow)])
  result = gpu_check.main(gpu_check.parse_args(["--size", "smoke", "--budget_s", "1.5"]))
  assert result["parts"]["flow"]["status"] == "timeout"
  assert result["parts"]["eval"]["status"] == "skipped" and result["total_s"] < 30


def test_roofline_counts_loop_bodies_by_their_trip_counts():
  """XLA's cost analysis counts a while body once; roofline.cost multiplies by the trip count."""
  x = jnp.ones((64, 64))
  matmul = 2 * 64 ** 3

  def scanned(x, n):
    return lax.scan(lambda c, _: (jnp.tanh(c @ x), None), x, None, length=n)[0]

  for n in (1, 5):
    c = roofline.cost(jax.jit(lambda x: scanned(x, n)).lower(x).compile())
    assert c["flops"] == pytest.approx(n * matmul, rel=0.01) and c["bound"] == "exact"
  nested = jax.jit(lambda x: lax.fori_loop(0, 3, lambda i, c: scanned(c, 4), x)).lower(x).compile()
  assert roofline.cost(nested)["flops"] == pytest.approx(12 * matmul, rel=0.01)

  def early_stop(x):  # trip count unknown to XLA: the caller's bound, else counted once
    return lax.while_loop(lambda c: (c[0] < 7) & jnp.all(c[1] < 1e9), lambda c: (c[0] + 1, c[1] @ x), (0, x))[1]

  compiled = jax.jit(early_stop).lower(x).compile()
  assert roofline.cost(compiled)["bound"] == "lower"
  bounded = roofline.cost(compiled, unknown_trips=(7,))
  assert bounded["bound"] == "upper" and bounded["flops"] == pytest.approx(7 * matmul, rel=0.02)
  pred = roofline.predict(bounded, "bfloat16")
  assert pred["h200"]["s"] <= pred["h100"]["s"] == max(pred["h100"]["flops_s"], pred["h100"]["bytes_s"])


_GEMM_CONFIG = ('backend_config={"gemm_backend_config":{"dot_dimension_numbers":{"lhs_contracting_dimensions":'
                '["1"],"rhs_contracting_dimensions":["0"],"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}')
_DEVICELESS_MODULE = """HloModule deviceless

ENTRY %main (x: f32[2,8,8,4], w: f32[16,3,3,4], a: f32[32,64], b: f32[64,128]) -> f32[2,8,8,4] {
  %x = f32[2,8,8,4]{3,2,1,0} parameter(0)
  %w = f32[16,3,3,4]{3,2,1,0} parameter(1)
  %a = f32[32,64]{1,0} parameter(2)
  %b = f32[64,128]{1,0} parameter(3)
  %fwd = (f32[2,8,8,16]{3,2,1,0}, u8[0]{0}) custom-call(%x, %w), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_o01i->b01f, custom_call_target="__cudnn$convForward"
  %y = f32[2,8,8,16]{3,2,1,0} get-tuple-element(%fwd), index=0
  %bwd = (f32[2,8,8,4]{3,2,1,0}, u8[0]{0}) custom-call(%y, %w), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_o01i->b01f, custom_call_target="__cudnn$convBackwardInput"
  %filt = (f32[16,3,3,4]{3,2,1,0}, u8[0]{0}) custom-call(%x, %y), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_o01i->b01f, custom_call_target="__cudnn$convBackwardFilter"
  %gemm = (f32[32,128]{1,0}, s8[4194304]{0}) custom-call(%a, %b), custom_call_target="__cublas$lt$matmul", GEMM
  %dx = f32[2,8,8,4]{3,2,1,0} get-tuple-element(%bwd), index=0
  ROOT %sum = f32[2,8,8,4]{3,2,1,0} add(%dx, %x)
}
""".replace("GEMM", _GEMM_CONFIG)


def test_roofline_costs_library_calls_of_a_deviceless_program_from_their_shapes():
  """A program compiled for an absent GPU (benchmarks/aot.py) holds cuDNN/cuBLAS custom calls that the
  CPU's cost analysis cannot cost: each is costed from its shapes (2 FLOPs per multiply-add)."""
  conv = 2 * (2 * 8 * 8 * 16) * (3 * 3 * 4)  # forward output elements x multiply-adds per element
  x, w, y = 2 * 8 * 8 * 4 * 4, 16 * 3 * 3 * 4 * 4, 2 * 8 * 8 * 16 * 4  # bytes
  gemm, gemm_bytes = 2 * 32 * 128 * 64, (32 * 64 + 64 * 128 + 32 * 128) * 4
  comps = roofline._computations(_DEVICELESS_MODULE)
  calls = roofline.library_call_costs(comps["main"][1])
  assert calls == [(conv, x + w + y), (conv, y + w + x), (conv, x + y + w), (gemm, gemm_bytes)]
  # The whole module: the calls above plus the add (2*8*8*4 FLOPs; reads two arrays, writes one).
  corrector = roofline._Corrector(_DEVICELESS_MODULE, comps, jax.devices("cpu")[0].client, [], library_calls=True)
  flops, nbytes = corrector.once("main")
  assert flops == 3 * conv + gemm + 2 * 8 * 8 * 4
  assert nbytes == sum(b for _, b in calls) + 3 * x
  unknown = _DEVICELESS_MODULE.replace("__cudnn$convForward", "__my$kernel")
  with pytest.raises(ValueError, match="__my\\$kernel"):
    roofline.library_call_costs(roofline._computations(unknown)["main"][1])


SHARED_CLIPS = ROOT.parent / "shared" / "data" / "clips"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="needs ../shared/data/clips")
def test_eval_bench_runs_on_real_frames_saved_for_a_device(tmp_path):
  """--save_frames writes the shared clips' frames (what a lent GPU without PyAV gets); --frames reads them."""
  import numpy as np
  env = dict(os.environ, XLA_FLAGS=" ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                                               if "device_count" not in f), JAX_PLATFORMS="cpu",
             PYTHONPATH=str(ROOT))
  bench = [sys.executable, str(ROOT / "benchmarks" / "eval_bench.py"), "--size", "smoke", "--batch", "2"]
  npz = tmp_path / "frames.npz"
  proc = subprocess.run([*bench, "--frames", str(SHARED_CLIPS), "--save_frames", str(npz)],
                        capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(npz) as z:
    tp_hr, tp_lr = z["tp_hr"], z["tp_lr"]
  assert tp_hr.dtype == np.uint8 and tp_hr.shape == (2, 3, 4, 64, 64, 3) and tp_lr.shape == (2, 3, 4, 1, 16, 16, 3)
  assert tp_hr.std() > 10 and not np.array_equal(tp_hr[0], tp_hr[1])  # real content, two different clips
  proc = subprocess.run([*bench, "--frames", str(npz), "--rounds", "1", "--tiny_tvl1", "--no_stages",
                         "--opencv-pairs", "0"], capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout)
  assert result["frames"] == "real (frames.npz)" and result["videos_per_s"] > 0
  bad = subprocess.run([*bench, "--size", "ucf101", "--frames", str(npz)], capture_output=True, text=True,
                       timeout=600, env=env)
  assert bad.returncode != 0 and "write them with the same --size" in bad.stderr


@pytest.mark.slow
@pytest.mark.plumbing
def test_eval_bench_compile_only_costs_each_stage():
  """--compile_only compiles, runs nothing, and prints the roofline of the full step and of the SR and
  recognition stages (the figures the protocol's composite prediction takes)."""
  env = dict(os.environ, XLA_FLAGS=" ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                                               if "device_count" not in f), JAX_PLATFORMS="cpu",
             PYTHONPATH=str(ROOT))
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_bench.py"), "--size", "smoke", "--batch", "1",
                         "--frames", "noise", "--compile_only", "--tiny_tvl1", "--tvl1_storage", "float16"],
                        capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout)
  assert set(result["roofline"]) == {"full", "sr", "recognition"}
  assert all(r["h100_s"] > 0 and r["h200_s"] <= r["h100_s"] for r in result["roofline"].values())
  assert result["roofline"]["full"]["h100_s"] > result["roofline"]["sr"]["h100_s"]


def test_input_bench_reports_the_bytes_the_pipeline_moves(small_data_dir):
  """input_bench on the smoke SoSR recipe: uint8 frames and float16 flow, counted per sample."""
  import input_bench  # noqa: E402
  args = input_bench.parse_args(["--size", "smoke", "--batches", "2", "--recipes", "sosr_vdsr",
                                 "--data_dir", small_data_dir])
  r = input_bench.bench_input("sosr_vdsr", args)
  p, s = 32, 4  # the smoke recipe's HR patch and scale
  frames = p * p * 3 + (p // s) ** 2 * 3  # uint8 HR + LR
  assert r["host_to_device_bytes_per_sample"] == frames + p * p * 2 * 2  # + float16 (u, v) flow
  assert r["float32_frames_bytes_per_sample"] == 4 * frames + p * p * 2 * 2
  assert r["input_samples_per_s_per_core"] > 0


def test_train_bench_model_opts_reach_the_generator():
  """--model_opts sets options the generator has (scan_unroll, remat) and skips those it lacks."""
  import train_bench  # noqa: E402
  config, spec = train_bench.load_config("rrdbnet", "smoke", None, "/nonexistent", "scan_unroll=2,remat=true")
  assert config.model.scan_unroll == 2 and config.model.remat is True and spec == "configs/esrgan.py:psnr,smoke"
  config, _ = train_bench.load_config("duf16", "smoke", None, "/nonexistent", "scan_unroll=2")
  assert "scan_unroll" not in config.model
  # A deviceless GPU compile (--aot) takes the settings a GPU's 'auto' picks; explicit options win.
  config, _ = train_bench.load_config("rrdbnet", "smoke", None, "/nonexistent", "", gpu=True)
  assert config.compute_dtype == "bfloat16" and config.model.scan_unroll == 1
  config, _ = train_bench.load_config("rrdbnet", "smoke", "float32", "/nonexistent", "scan_unroll=3", gpu=True)
  assert config.compute_dtype == "float32" and config.model.scan_unroll == 3
  from arsr_jax import precision  # 'auto' as decided for a named platform, whatever this host is
  assert precision.compute_dtype("auto", "gpu") == "bfloat16" and precision.compute_dtype("auto", "cpu") == "float32"
  assert precision.compute_dtype("float32", "gpu") == "float32"


@pytest.mark.skipif(aot.available(), reason="JAX's CUDA plugin is installed: --aot would compile")
@pytest.mark.parametrize("script, extra", [("train_bench.py", []), ("eval_bench.py", ["--compile_only"]),
                                           ("flow_bench.py", []), ("infer_bench.py", [])])
def test_aot_without_the_cuda_plugin_says_what_to_install(script, extra):
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--aot", "h100", *extra],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "CUDA plugin" in proc.stderr and "aot.py" in proc.stderr


def test_eval_bench_aot_needs_compile_only():
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_bench.py"), "--aot", "h100"],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "--aot needs --compile_only" in proc.stderr


def test_flow_bench_counts_the_work_each_batch_width_did():
  """flow_bench.work reads tvl1_flow's stats as the compacting solver runs; measured_cost scales the
  per-trip costs by it. Four pairs that stop after 12, 9, 3 and 7 steps (inner loop of 5): width 4
  runs steps 0-7 (until two pairs run), width 2 steps 7-9, width 1 steps 9-12."""
  import flow_bench
  from arsr_jax.flow import tvl1
  params = tvl1.TVL1Params(nscales=1, warps=1, inner_iterations=5, outer_iterations=3)
  stats = {"steps": jnp.asarray([12, 9, 3, 7]).reshape(4, 1, 1), "stage_ends": jnp.asarray([[[7, 9, 12]]])}
  assert tvl1.stage_widths(4) == [4, 2, 1]
  done = flow_bench.work(stats, 4, True, params, [10])
  # steps: 4*7 + 2*2 + 1*3 = 35; outer iterations (median filters): 4*2 (t 0-7) + 2*1 (7-9) + 1*2 (9-12)
  assert done == {"px_steps": 10 * 35 / 4, "px_outer": 10 * 12 / 4, "useful_px_steps": 10 * 31 / 4}
  full = flow_bench.work({"steps": stats["steps"], "stage_ends": jnp.asarray([[[12]]])}, 4, False, params, [10])
  assert full["px_steps"] == 10 * 12 and full["px_outer"] == 10 * 3
  parts = {(0, 0): {"flops": 100.0, "bytes": 1000.0}, (1, 0): {"flops": 130.0, "bytes": 1200.0},
           (1, 1): {"flops": 150.0, "bytes": 1500.0}}
  cost = flow_bench.measured_cost(parts, {"flops": 90.0, "bytes": 900.0}, done, params, [10])
  # a trip of every loop is warps * sum(level px) = 10 pixel-trips; an inner trip runs 2 steps
  assert tvl1.STEPS_PER_TRIP == 2
  assert cost["flops"] == pytest.approx(90 + 30 * 3.0 + 20 / 2 * 8.75)
  assert cost["bytes"] == pytest.approx(900 + 200 * 3.0 + 300 / 2 * 8.75)
