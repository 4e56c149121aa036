"""Cluster paths simulated on one machine: SLURM jobs (local processes with SLURM's environment
variables, the sbatch script run by bash with a fake srun and scontrol) and Cloud TPU slices (tpu_pod.sh
against a fake gcloud that logs its arguments and runs the remote scripts on a fake host)."""

import json
import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = pathlib.Path(__file__).with_name("cluster_worker.py")
SBATCH = ROOT / "launch" / "slurm_multi_gpu.sbatch"
TPU_POD = ROOT / "launch" / "tpu_pod.sh"
SLURM_PORT_BASE = 65536 - 2**12  # jax/_src/clusters/slurm_cluster.py: port = 61440 + SLURM_JOB_ID % 4096


def _slurm_job_id() -> int:
  """A SLURM_JOB_ID whose derived coordinator port is free on 127.0.0.1."""
  for _ in range(100):
    job = random.randrange(10**5, 10**6)
    with socket.socket() as s:
      try:
        s.bind(("127.0.0.1", SLURM_PORT_BASE + job % 2**12))
      except OSError:
        continue
    return job
  pytest.skip("no free port in SLURM's coordinator range")


def _slurm_env(job: int, ntasks: int, **extra) -> dict[str, str]:
  """The variables SLURM sets in a one-node job (and its step: srun) of ``ntasks`` tasks."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "XLA_", "JAX_"))}
  env.update(SLURM_JOB_ID=str(job), SLURM_JOB_NUM_NODES="1", SLURM_NTASKS=str(ntasks),
             SLURM_STEP_NODELIST="localhost", SLURM_STEP_NUM_NODES="1", SLURM_NODELIST="localhost",
             PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  env.update(extra)
  return env


def _task_env(env: dict[str, str], task: int) -> dict[str, str]:
  return dict(env, SLURM_PROCID=str(task), SLURM_LOCALID=str(task))


def _run_tasks(args, env, ntasks=2, timeout=600):
  procs = [subprocess.Popen([sys.executable, str(WORKER), *[a.format(task=i) for a in args]],
                            env=_task_env(env, i), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(ntasks)]
  try:
    errs = [p.communicate(timeout=timeout)[1] for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, err in zip(procs, errs):
    assert p.returncode == 0, err[-3000:]
  return errs


# --- SLURM: devices, coordinator, the same step as one process ------------------------------------

@pytest.mark.slow
def test_slurm_tasks_find_the_coordinator_see_every_device_and_match_one_process(tmp_path):
  single = subprocess.run([sys.executable, str(WORKER.with_name("multiprocess_worker.py")), "0", "1", "0",
                           str(tmp_path / "single.npz")], capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-2000:]
  job = _slurm_job_id()
  errs = _run_tasks(["step", str(tmp_path / "p{task}.json"), "2", str(tmp_path / "p{task}.npz")],
                    _slurm_env(job, 2))
  for i in range(2):
    got = json.loads((tmp_path / f"p{i}.json").read_text())
    assert got["coordinator"] == f"localhost:{SLURM_PORT_BASE + job % 4096}"  # from SLURM's variables alone
    assert (got["process"], got["processes"], got["local"], got["global"]) == (i, 2, 2, 4)
    # Under SLURM JAX gives task i GPU i of its node (SLURM_LOCALID): one task per GPU is needed to use them all.
    assert got["cuda_visible_devices"] == str(i)
    assert "the job sees 4 devices" in got["wrong_count"] and "allocated 16" in got["wrong_count"]
    assert f"process {i} of 2 sees 2 local cpu device(s); the job sees 4" in errs[i]
  want = np.load(tmp_path / "single.npz")
  for i in range(2):
    got = np.load(tmp_path / f"p{i}.npz")
    assert set(got.files) == set(want.files)
    for k in want.files:
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-7)


def _sbatch_options(text: str) -> dict[str, str]:
  opts = {}
  for line in text.splitlines():
    if line.startswith("#SBATCH"):
      key, _, value = line.split(None, 1)[1].lstrip("-").partition("=")
      opts[key] = value
  return opts


def _seconds(limit: str) -> int:
  days, _, hms = limit.rpartition("-")
  h, m, s = (int(x) for x in hms.split(":"))
  return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def test_sbatch_layout_one_task_per_gpu_time_limit_signal_requeue():
  text = SBATCH.read_text()
  opts = _sbatch_options(text)
  assert opts["ntasks-per-node"] == opts["gpus-per-node"]  # JAX: task i drives GPU SLURM_LOCALID = i
  assert int(opts["cpus-per-task"]) >= 8  # the input pipeline (benchmarks/README.md: 3-19 cores per GPU)
  warn = re.fullmatch(r"B:USR1@(\d+)", opts["signal"])
  assert warn and 60 <= int(warn.group(1)) < _seconds(opts["time"])
  assert "requeue" in opts and opts["open-mode"] == "append"
  # The #SBATCH block must come before the first command, or sbatch ignores it.
  first_command = next(i for i, line in enumerate(text.splitlines()) if line and not line.startswith("#"))
  assert max(i for i, line in enumerate(text.splitlines()) if line.startswith("#SBATCH")) < first_command
  assert "--expect_devices=" in text and "--distributed" in text and "--gpu-bind=none" in text


def _fake_slurm(tmp_path: pathlib.Path) -> pathlib.Path:
  """srun: starts SLURM_NTASKS local tasks with SLURM's per-task variables, forwards SIGTERM to them
  and exits with the highest status (as srun); scontrol: logs its arguments."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / "srun").write_text(f"""#!{sys.executable}
import os, signal, subprocess, sys
log = os.environ["FAKE_SLURM_LOG"]
args = sys.argv[1:]
with open(log + ".srun", "w") as f:
  f.write(" ".join(args))
while args[0].startswith("--"):
  args = args[1:]
procs = []
for i in range(int(os.environ["SLURM_NTASKS"])):
  env = dict(os.environ, SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_STEP_NODELIST=os.environ["SLURM_NODELIST"],
             SLURM_STEP_NUM_NODES=os.environ["SLURM_JOB_NUM_NODES"])
  procs.append(subprocess.Popen(args, env=env, stderr=open(f"{{log}}.task{{i}}", "w")))
with open(log + ".pids", "w") as f:
  f.write(" ".join(str(p.pid) for p in procs))
signal.signal(signal.SIGTERM, lambda *_: [p.send_signal(signal.SIGTERM) for p in procs])
sys.exit(max(p.wait() for p in procs))
""")
  (bin_dir / "scontrol").write_text('#!/bin/sh\necho "$@" >> "$FAKE_SLURM_LOG.scontrol"\n')
  for tool in ("srun", "scontrol"):
    (bin_dir / tool).chmod(0o755)
  return bin_dir


def test_sbatch_refuses_a_layout_that_leaves_gpus_idle(tmp_path):
  bin_dir = _fake_slurm(tmp_path)
  env = _slurm_env(1, 2, SLURM_JOB_NUM_NODES="2", SLURM_GPUS_ON_NODE="8", FAKE_SLURM_LOG=str(tmp_path / "log"),
                   PATH=f"{bin_dir}:{os.environ['PATH']}")
  out = subprocess.run(["bash", str(SBATCH), "configs/sosr_vdsr.py", str(tmp_path / "w")], env=env,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 2 and "2 tasks for 16 GPUs" in out.stderr
  assert not (tmp_path / "log.srun").exists()
  no_gpus = dict(env)
  del no_gpus["SLURM_GPUS_ON_NODE"]
  out = subprocess.run(["bash", str(SBATCH), "configs/sosr_vdsr.py", str(tmp_path / "w")], env=no_gpus,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode != 0 and "no GPUs allocated" in out.stderr


# --- data prepared once -------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_prepare_the_data_and_the_tvl1_cache_once(tmp_path):
  data_dir = tmp_path / "tfds"  # empty: process 0 generates, process 1 waits
  errs = _run_tasks(["data", str(tmp_path / "p{task}.json"), str(data_dir)], _slurm_env(_slurm_job_id(), 2))
  p0, p1 = (json.loads((tmp_path / f"p{i}.json").read_text()) for i in range(2))
  assert p0["generated"] == ["synthetic_actions"] and p1["generated"] == []
  assert "process 1 waits for process 0 generating synthetic_actions/small" in errs[1]
  assert p0["ids"] == p1["ids"] and p0["num_examples"] == p1["num_examples"] > 0
  # TV-L1 of 4 clips: two each, joined once into the shared cache, read back by both.
  assert (p0["computed"], p1["computed"]) == ([0, 1], [2, 3])
  assert p0["flows_shape"] == p1["flows_shape"] == [4, 7, 64, 64, 2] and p0["flows_sum"] == p1["flows_sum"]
  cache = list((data_dir / "synthetic_actions" / "small").glob("*/tvl1/*"))
  assert len(cache) == 1 and cache[0].name.startswith("train-") and cache[0].suffix == ".npy"
  # The joined cache is the flow of clips 0-3 in order, as one process computes it.
  from arsr_jax.data import pipeline, recognition_data
  from arsr_jax.flow import tvl1
  config = _tvl1_config(str(data_dir))
  source = pipeline.get_source("synthetic_actions/small", "train", str(data_dir))
  want = recognition_data._compute_flows(config.data, "train", source, range(4),
                                         tvl1.TVL1Params.from_config(config.data.tvl1), 64)
  np.testing.assert_allclose(np.load(cache[0]).astype(np.float32), want.astype(np.float32), atol=2e-2)
  assert np.abs(want.astype(np.float64)).sum() > 0


def _tvl1_config(data_dir):
  import ml_collections
  return ml_collections.ConfigDict({"data": {  # as cluster_worker.py
      "name": "synthetic_actions/small", "data_dir": data_dir,
      "tvl1": {"nscales": 1, "warps": 1, "outer_iterations": 1, "inner_iterations": 2}}})


@pytest.mark.slow
def test_tvl1_cache_one_process_computes_once_then_reads_the_cache(small_data_dir, tmp_path, monkeypatch):
  import shutil
  from arsr_jax.data import pipeline, recognition_data
  data_dir = tmp_path / "tfds"
  shutil.copytree(small_data_dir, data_dir)
  full = pipeline.get_source("synthetic_actions/small", "train", str(data_dir))
  source = [full[i] for i in range(3)]  # 3 clips: fast
  config, compute, computed = _tvl1_config(str(data_dir)), recognition_data._compute_flows, []

  def recording(config, split, source, clips, *args):
    computed.append(list(clips))
    return compute(config, split, source, clips, *args)

  monkeypatch.setattr(recognition_data, "_compute_flows", recording)
  first = recognition_data.tvl1_flows(config.data, "train", source, batch_pairs=7)
  again = recognition_data.tvl1_flows(config.data, "train", source, batch_pairs=7)
  assert computed == [[0, 1, 2]] and first.shape == (3, 7, 64, 64, 2)
  np.testing.assert_array_equal(first, again)
  assert [f.name for f in (data_dir / "synthetic_actions" / "small").glob("*/tvl1/*")] == [
      pathlib.Path(recognition_data.os.path.basename(again.filename)).name]


# --- Cloud TPU: tpu_pod.sh against a fake gcloud and a fake host --------------------------------

TPU_ENV = {"BUCKET": "gs://my-bucket", "ZONE": "us-central2-b", "TPU_NAME": "arsr-tpu", "RUN": "sosr_vdsr",
           "ACCELERATOR_TYPE": "v4-32", "POLL_S": "0"}

FAKE_GCLOUD = f"""#!{sys.executable}
# Logs its arguments. Queued resources: 'state' holds the states describe reports in turn (the last one
# stays; NONE = does not exist); create fails while one exists, as gcloud does; delete removes it.
# tpu-vm ssh runs --command on the fake host (HOME=host/), except setup's package installation.
import json, os, pathlib, subprocess, sys
args, fake = sys.argv[1:], pathlib.Path(os.environ["FAKE_GCLOUD_DIR"])
with open(fake / "calls", "a") as f:
  f.write(json.dumps(args) + "\\n")
state = fake / "state"
states = state.read_text().split() if state.exists() else ["NONE"]
if args[:3] == ["compute", "tpus", "queued-resources"]:
  if args[3] == "describe":
    if states[0] == "NONE":
      print("ERROR: (gcloud.compute.tpus.queued-resources.describe) NOT_FOUND: not found", file=sys.stderr)
      sys.exit(1)
    print(states[0])
    state.write_text(" ".join(states[1:] or states))
  elif args[3] == "create":
    if states[0] != "NONE":
      print("ERROR: (gcloud.compute.tpus.queued-resources.create) ALREADY_EXISTS", file=sys.stderr)
      sys.exit(1)
    state.write_text("WAITING_FOR_RESOURCES PROVISIONING ACTIVE")
  elif args[3] == "delete":
    state.write_text("NONE")
elif args[:4] == ["compute", "tpus", "tpu-vm", "ssh"]:
  script = next(a for a in args if a.startswith("--command="))[len("--command="):]
  if "apt-get" not in script:
    sys.exit(subprocess.run(["bash", "-c", script], env=dict(os.environ, HOME=str(fake / "host"))).returncode)
"""

FAKE_PYTHON = """#!/bin/sh
echo "JAX_PLATFORMS=${JAX_PLATFORMS:-} $*" >> "$HOME/python.log"
"""


@pytest.fixture()
def tpu(tmp_path):
  """(run, fake dir): run(*args, mounted=True, **env) runs tpu_pod.sh against the fake gcloud and host."""
  fake = tmp_path / "fake"
  (fake / "bin").mkdir(parents=True)
  (fake / "host" / "arsr_jax").mkdir(parents=True)
  (fake / "host" / "arsr_venv" / "bin").mkdir(parents=True)
  for path, text in ((fake / "bin" / "gcloud", FAKE_GCLOUD),
                     (fake / "host" / "arsr_venv" / "bin" / "python", FAKE_PYTHON),
                     (fake / "bin" / "mountpoint", '#!/bin/sh\nexit "$FAKE_UNMOUNTED"\n')):
    path.write_text(text)
    path.chmod(0o755)

  def run(*args, mounted=True, **extra):
    env = dict({k: os.environ[k] for k in ("LANG", "TMPDIR") if k in os.environ}, **TPU_ENV,
               PATH=f"{fake / 'bin'}:/usr/bin:/bin", HOME=str(tmp_path), FAKE_GCLOUD_DIR=str(fake),
               FAKE_UNMOUNTED="0" if mounted else "1")
    return subprocess.run(["bash", str(TPU_POD), *args], env=dict(env, **extra), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
  return run, fake


def _calls(fake):
  path = fake / "calls"
  return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _verbs(fake):
  """'describe', 'create', 'ssh', ... in call order."""
  return [c[3] if c[2] == "queued-resources" else c[3] if c[2] == "tpu-vm" else c[1] for c in _calls(fake)]


def _python_calls(fake, count, timeout=10):
  """The fake host's python invocations (train runs in the background: wait for them)."""
  log, deadline = fake / "host" / "python.log", time.monotonic() + timeout
  while time.monotonic() < deadline:
    lines = log.read_text().splitlines() if log.exists() else []
    if len(lines) >= count:
      return lines
    time.sleep(0.1)
  return lines


@pytest.mark.parametrize("states,verbs", [
    ("SUSPENDED", ["describe", "delete", "describe", "create", "describe", "describe", "describe"]),
    ("FAILED", ["describe", "delete", "describe", "create", "describe", "describe", "describe"]),
    ("NONE", ["describe", "create", "describe", "describe", "describe"]),
    ("ACTIVE", ["describe"]),
    ("SUSPENDING SUSPENDED", ["describe", "describe", "delete", "describe", "create", "describe", "describe",
                              "describe"]),
    ("PROVISIONING ACTIVE", ["describe", "describe"]),
])
def test_tpu_create_deletes_a_preempted_queued_resource_before_requesting_it_again(tpu, states, verbs):
  run, fake = tpu
  (fake / "state").write_text(states)
  out = run("create", SPOT="1")
  assert out.returncode == 0, out.stderr
  assert _verbs(fake) == verbs
  assert (fake / "state").read_text() == "ACTIVE"
  if "create" in verbs:
    create = _calls(fake)[verbs.index("create")]
    assert create[4] == "arsr-tpu-qr" and "--spot" in create and "--node-id=arsr-tpu" in create
  if "delete" in verbs:
    assert {"--force", "--quiet"} <= set(_calls(fake)[verbs.index("delete")])


@pytest.mark.slow
def test_tpu_resume_after_a_spot_preemption_recreates_sets_up_and_trains(tpu):
  run, fake = tpu
  (fake / "state").write_text("SUSPENDED")
  out = run("resume", "--config.train.num_steps=100")
  assert out.returncode == 0, out.stderr
  verbs = _verbs(fake)
  assert verbs[:4] == ["describe", "delete", "describe", "create"] and verbs[-4:] == ["scp", "ssh", "ssh", "ssh"]
  train, = _python_calls(fake, 1)
  assert train == ("JAX_PLATFORMS= -m arsr_jax.main --config configs/sosr_vdsr.py --workdir gs://my-bucket/runs/"
                   "sosr_vdsr --distributed --config.data.name=synthetic_actions/default "
                   "--config.data.data_dir=/gcs/tfds --config.train.num_steps=100")


def test_tpu_train_and_data_refuse_an_unmounted_bucket(tpu):
  run, fake = tpu
  for command in ("train", "data"):
    out = run(command, mounted=False)
    assert out.returncode != 0 and "/gcs is not mounted" in out.stderr and "run launch/tpu_pod.sh setup" in out.stderr
    assert _verbs(fake) == ["ssh"]  # train: the check on every host; nothing started
    assert not (fake / "host" / "python.log").exists()
    (fake / "calls").unlink()
  out = run("train", WORKDIR="/gcs/runs/sosr_vdsr")
  assert out.returncode == 1 and "WORKDIR must be a gs:// URL" in out.stderr and not _calls(fake)


def test_tpu_data_steps_run_jax_on_the_cpu(tpu):
  run, fake = tpu
  assert run("data").returncode == 0
  real = run("data", DATASET="ucf101_sr/split1", MANUAL_DIR="/gcs/raw/ucf101", NUM_HOSTS="2")
  assert real.returncode == 0, real.stderr
  calls = _python_calls(fake, 4)
  assert len(calls) == 4 and all(c.startswith("JAX_PLATFORMS=cpu ") for c in calls)
  assert 'synthetic_actions.prepare("default", data_dir="/gcs/tfds")' in calls[0]
  assert sorted(c.split(" ", 1)[1] for c in calls[1:]) == sorted(
      f"-m tfds_builders.prepare --dataset ucf101_sr/split1 --manual_dir /gcs/raw/ucf101 --data_dir /gcs/tfds{s}"
      for s in (" --num_shards 2 --shard_index 0", " --num_shards 2 --shard_index 1", ""))


# --- SLURM end to end: the sbatch script, 2 training tasks, stops and requeues -------------------

TINY_FLAGS = ["--config.model.num_layers=3", "--config.model.features=8", "--config.optimizer.schedule=constant",
              "--config.optimizer.warmup_steps=0", "--config.train.batch_size=8", "--config.eval.batch_size=8",
              "--config.eval.max_clips=2", "--config.train.log_every=1", "--config.train.checkpoint_every=1000"]


def _sbatch(tmp_path, data_dir, job, num_steps, **extra):
  """Starts the sbatch script as SLURM would (one node, 2 'GPUs', 2 tasks of one CPU device each)."""
  bin_dir = _fake_slurm(tmp_path)
  env = _slurm_env(job, 2, SLURM_GPUS_ON_NODE="2", FAKE_SLURM_LOG=str(tmp_path / "log"),
                   PATH=f"{bin_dir}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
                   XLA_FLAGS="--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false", **extra)
  return subprocess.Popen(["bash", str(SBATCH), "configs/sosr_vdsr.py:smoke", str(tmp_path / "workdir"),
                           f"--config.data.data_dir={data_dir}", *TINY_FLAGS, f"--config.train.num_steps={num_steps}"],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _task_logs(tmp_path):
  return [(tmp_path / f"log.task{i}").read_text() if (tmp_path / f"log.task{i}").exists() else "" for i in range(2)]


def _wait_for_step(tmp_path, proc, step, timeout=400):
  deadline = time.monotonic() + timeout
  while f"step {step}/" not in _task_logs(tmp_path)[0]:
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      logs = "\n".join(_task_logs(tmp_path))
      pytest.fail(f"no step {step} logged (sbatch status {proc.returncode}):\n{logs[-4000:]}")
    time.sleep(0.5)


def _stopped_step(tmp_path) -> int:
  """The step at which both tasks stopped on SIGTERM (the same in both), with its checkpoint."""
  from arsr_jax import checkpointing
  logs = _task_logs(tmp_path)
  steps = [re.findall(r"stopped by SIGTERM at step (\d+) ", log) for log in logs]
  assert all(len(s) == 1 for s in steps), "\n".join(log[-2000:] for log in logs)
  assert steps[0] == steps[1], steps
  stopped = int(steps[0][0])
  assert stopped >= 3 and checkpointing.steps(tmp_path / "workdir" / "checkpoints")[-1] == stopped
  return stopped


@pytest.mark.slow
def test_sbatch_time_limit_stops_every_task_at_one_checkpoint_requeues_and_resumes(small_data_dir, tmp_path):
  job = _slurm_job_id()
  proc = _sbatch(tmp_path, small_data_dir, job, 100000)
  _wait_for_step(tmp_path, proc, 3)
  proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@300 sends 300 s before the time limit
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 143, out + err
  assert "time limit near" in out and (tmp_path / "log.scontrol").read_text() == f"requeue {job}\n"
  srun = (tmp_path / "log.srun").read_text()
  assert srun.startswith("--gpu-bind=none python -m arsr_jax.main") and "--distributed --expect_devices=2" in srun
  for i, log in enumerate(_task_logs(tmp_path)):
    assert f"process {i} of 2 sees 1 local cpu device(s); the job sees 2" in log
  stopped = _stopped_step(tmp_path)
  # SLURM starts the requeued job again: it resumes from that checkpoint and finishes (no requeue).
  (tmp_path / "log.scontrol").unlink()
  proc = _sbatch(tmp_path, small_data_dir, job, stopped + 1, SLURM_RESTART_COUNT="1")
  out, err = proc.communicate(timeout=400)
  assert proc.returncode == 0, out + err + "\n".join(_task_logs(tmp_path))[-4000:]
  assert f"Resuming from step {stopped}" in _task_logs(tmp_path)[0] and not (tmp_path / "log.scontrol").exists()


@pytest.mark.slow
def test_sigterm_to_one_of_two_tasks_stops_both_at_the_same_checkpointed_step(small_data_dir, tmp_path):
  job = _slurm_job_id()
  proc = _sbatch(tmp_path, small_data_dir, job, 100000)
  _wait_for_step(tmp_path, proc, 3)
  _, task1 = (tmp_path / "log.pids").read_text().split()
  os.kill(int(task1), signal.SIGTERM)  # e.g. a preempted node: only its task is told
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 143, out + err
  _stopped_step(tmp_path)
  assert (tmp_path / "log.scontrol").read_text() == f"requeue {job}\n"
