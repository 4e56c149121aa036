"""Training loop throughput with 2 processes x 2 CPU devices (jax.distributed + gloo), steps/s.

  python benchmarks/multiprocess_train_bench.py                     # 2 processes, 200 timed steps
  python benchmarks/multiprocess_train_bench.py --steps 100 --processes 1
  python benchmarks/multiprocess_train_bench.py --repeats 3 --stop_check both   # A/B, alternating runs

What a cluster run's loop costs the host: the whole ``arsr_jax.main.run`` (sosr_vdsr smoke recipe,
a tiny VDSR of 3 layers x 8 features so the step is short and the loop's own overheads show, global
batch 8 of 32 px patches, synthetic_actions/small), run by ``--processes`` processes on one machine.
Timed from the first logged step (compilation excluded) to the last: ``steps_per_s`` per process
and their minimum; the final checkpoint is outside the timed span. ``--stop_check``: 'poll' (the
loop's own: agreed on the devices, read two steps late), 'allgather' (the loop before issue 23: a
blocking ``process_allgather`` of the stop flag every step, patched in for comparison) or 'both',
alternating run by run so both see the same host load. Prints ONE JSON object.

The same script is the worker of tests/test_preemption_loop.py (``--worker``): it prints its
``main.run`` result (with ``timed``: steps, seconds and ``process_allgathers``, the blocking
all-gathers between the first and the last logged step) as one JSON line on stdout and its progress lines on stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--processes", type=int, default=2)
  p.add_argument("--steps", type=int, default=200, help="timed steps (after the first)")
  p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: a directory in the temp dir)")
  p.add_argument("--repeats", type=int, default=1, help="runs (of each stop check); each gets a fresh workdir")
  p.add_argument("--stop_check", choices=("poll", "allgather", "both"), default="poll")
  p.add_argument("--worker", nargs=5, metavar=("PID", "NPROC", "PORT", "WORKDIR", "NUM_STEPS"),
                 help="(internal) run one process of the training")
  args = p.parse_args(argv)
  args.data_dir = args.data_dir or os.path.join(tempfile.gettempdir(), "arsr_mp_train_bench_tfds")
  return args


def worker(pid: int, nproc: int, port: str, workdir: str, num_steps: int, data_dir: str,
           stop_check: str = "poll") -> None:
  """One process: 4 / nproc CPU devices, ``main.run`` of the tiny smoke recipe; result JSON on stdout."""
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // nproc}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, str(ROOT))
  import jax
  from jax.experimental import multihost_utils
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if nproc > 1:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
  from absl import logging
  from arsr_jax import config_lib, main, preemption, writers
  if stop_check == "allgather":  # every step waits for the devices and the other processes
    preemption.StopSignals.poll = preemption.StopSignals.requested
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  writers.quiet_libraries()
  times: list[tuple[int, float]] = []
  line = writers.Progress.line

  def timed_line(self, step, values):
    times.append((step, time.perf_counter(), allgathers[0]))
    return line(self, step, values)
  writers.Progress.line = timed_line
  allgathers, allgather = [0], multihost_utils.process_allgather

  def counted(*a, **k):  # host syncs: what a stop check by all-gather costs every step
    allgathers[0] += 1
    return allgather(*a, **k)
  multihost_utils.process_allgather = counted
  c = config_lib.recipe("sosr_vdsr", "smoke")
  c.data.data_dir = data_dir
  c.model.num_layers, c.model.features = 3, 8
  c.optimizer.schedule, c.optimizer.warmup_steps = "constant", 0
  c.train.batch_size = c.eval.batch_size = 8
  c.train.num_steps, c.train.log_every = num_steps, 1 if num_steps > 1000 else num_steps - 1
  c.train.checkpoint_every = 10 ** 9  # only the last step's (or a signal's) checkpoint
  c.eval.max_clips = nproc  # one clip per process
  result = main.run(c, workdir)
  (s0, t0, a0), (s1, t1, a1) = times[0], times[-1]
  result["timed"] = {"steps": s1 - s0, "seconds": t1 - t0, "process_allgathers": a1 - a0}
  print(json.dumps(result), flush=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(nproc: int, workdir: str, num_steps: int, data_dir: str, stop_check: str = "poll",
           **popen) -> list[subprocess.Popen]:
  """Starts the ``nproc`` worker processes of one run."""
  port = str(_free_port())
  return [subprocess.Popen([sys.executable, __file__, "--data_dir", data_dir, "--stop_check", stop_check, "--worker",
                            str(i), str(nproc), port, workdir, str(num_steps)], cwd=ROOT, text=True, **popen)
          for i in range(nproc)]


def main(args) -> dict:
  sys.path.insert(0, str(ROOT))
  from tfds_builders import synthetic_actions
  synthetic_actions.prepare("small", data_dir=args.data_dir)
  checks = ("poll", "allgather") if args.stop_check == "both" else (args.stop_check,)
  runs: dict[str, list] = {c: [] for c in checks}
  for _, check in itertools.product(range(args.repeats), checks):
    with tempfile.TemporaryDirectory() as workdir:
      procs = launch(args.processes, workdir, args.steps + 1, args.data_dir, check, stdout=subprocess.PIPE)
      try:
        outs = [p.communicate(timeout=600)[0] for p in procs]
      finally:
        for p in procs:
          p.kill()
      if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed: exit statuses {[p.returncode for p in procs]}")
      timed = [json.loads(o.strip().splitlines()[-1])["timed"] for o in outs]
      runs[check].append([round(t["steps"] / t["seconds"], 2) for t in timed])
      print(f"[multiprocess_train_bench] {check}: {runs[check][-1]} steps/s", file=sys.stderr)
  out = {"processes": args.processes, "devices_per_process": 4 // args.processes, "timed_steps": args.steps,
         "global_batch": 8, "host_cpus": os.cpu_count(), "host_load_avg_1min": round(os.getloadavg()[0], 2),
         "steps_per_s": runs, "min_steps_per_s": {c: [min(r) for r in rs] for c, rs in runs.items()},
         "median_min_steps_per_s": {c: statistics.median(min(r) for r in rs) for c, rs in runs.items()}}
  print(json.dumps(out, indent=2))
  return out


if __name__ == "__main__":
  a = parse_args()
  if a.worker:
    pid, nproc, port, workdir, num_steps = a.worker
    worker(int(pid), int(nproc), port, workdir, int(num_steps), a.data_dir, a.stop_check)
  else:
    main(a)
