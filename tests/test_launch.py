"""launch/ scripts in --dry-run mode: the printed commands are well-formed; nothing reaches a network.

A fake ``gcloud`` that fails loudly is first on PATH, so a dry run that tried to call it would fail.
"""

import os
import pathlib
import shlex
import subprocess

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parents[1] / "launch"
TPU_ENV = {"BUCKET": "gs://my-bucket", "ZONE": "us-central2-b", "TPU_NAME": "arsr-tpu", "RUN": "sosr_vdsr",
           "ACCELERATOR_TYPE": "v4-32"}


@pytest.fixture()
def env(tmp_path):
  fake = tmp_path / "bin"
  fake.mkdir()
  for tool in ("gcloud", "gsutil", "nvidia-smi"):
    (fake / tool).write_text("#!/bin/sh\necho \"$0 must not run in a dry run\" >&2\nexit 99\n")
    (fake / tool).chmod(0o755)
  base = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
  return dict(base, PATH=f"{fake}:/usr/bin:/bin", **TPU_ENV)


def run(script, *args, env, cwd=None):
  return subprocess.run(["bash", str(LAUNCH / script), *args], env=env, cwd=cwd, capture_output=True,
                        text=True, timeout=60)


def commands(stdout):
  """The traced commands ('+ ...' lines) as argument lists."""
  lines = [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]
  assert lines and len(lines) == len(stdout.splitlines()), stdout
  return [shlex.split(line) for line in lines]


def flag(cmd, name):
  values = [a.split("=", 1)[1] for a in cmd if a.startswith(f"--{name}=")]
  assert len(values) == 1, (name, cmd)
  return values[0]


def assert_valid_bash(script):
  check = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
  assert check.returncode == 0, (script, check.stderr)


def test_tpu_pod_dry_run_all(env, tmp_path):
  out = run("tpu_pod.sh", "--dry-run", "all", "--config.train.num_steps=1000", env=env, cwd=tmp_path)
  assert out.returncode == 0, out.stderr
  cmds = commands(out.stdout)
  state, create, describe, pack, scp, setup, data, check, train, logs = cmds
  assert state == describe  # the state first: a SUSPENDED (preempted) one is deleted (test_cluster.py)
  assert create[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"] and create[5] == "arsr-tpu-qr"
  assert (flag(create, "node-id"), flag(create, "zone"), flag(create, "accelerator-type"),
          flag(create, "runtime-version")) == ("arsr-tpu", "us-central2-b", "v4-32", "tpu-ubuntu2204-base")
  assert "--spot" not in create
  assert describe[:6] == ["gcloud", "compute", "tpus", "queued-resources", "describe", "arsr-tpu-qr"]
  assert pack[:2] == ["git", "-C"] and "|" in pack and "tar" in pack
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and flag(scp, "worker") == "all"
  for ssh in (setup, data, check, train, logs):
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "arsr-tpu"]
    assert flag(ssh, "zone") == "us-central2-b"
    assert_valid_bash(flag(ssh, "command"))
  assert [flag(c, "worker") for c in (setup, data, check, train, logs)] == ["all", "0", "all", "all", "0"]
  assert flag(check, "command").startswith("mountpoint -q /gcs ||")
  assert flag(train, "command").startswith("mountpoint -q /gcs ||")
  assert "gcsfuse --implicit-dirs" in flag(setup, "command") and " my-bucket /gcs" in flag(setup, "command")
  assert "'jax[tpu]'" in flag(setup, "command") and "pip install -q -e ~/arsr_jax'[gcs]'" in flag(setup, "command")
  # gcsfuse serves the data (file cache on); checkpoints go to gs:// directly, not through its renames.
  assert "--file-cache-max-size-mb=" in flag(setup, "command") and "--cache-dir=" in flag(setup, "command")
  assert "rename-dir-limit" not in flag(setup, "command")
  assert 'synthetic_actions.prepare("default", data_dir="/gcs/tfds")' in flag(data, "command")
  assert "JAX_PLATFORMS=cpu ~/arsr_venv/bin/python" in flag(data, "command")  # host 0 alone: not the TPU
  main = flag(train, "command")
  assert ("python -m arsr_jax.main --config configs/sosr_vdsr.py --workdir gs://my-bucket/runs/sosr_vdsr --distributed "
          "--config.data.name=synthetic_actions/default --config.data.data_dir=/gcs/tfds "
          "--config.train.num_steps=1000 > ~/arsr_logs/sosr_vdsr.log") in main
  assert "setsid nohup" in main
  assert "tail" in flag(logs, "command")


def test_tpu_pod_copy_delete_real_data_and_spot(env, tmp_path):
  copy, = commands(run("tpu_pod.sh", "--dry-run", "copy", env=env).stdout)[1:]
  assert copy[:4] == ["gcloud", "storage", "rsync", "--recursive"]
  assert copy[-2:] == ["gs://my-bucket/runs/sosr_vdsr", "results/sosr_vdsr"] and "--exclude=^checkpoints/" in copy
  copy_all, = commands(run("tpu_pod.sh", "--dry-run", "copy", "out", env=dict(env, ALL="1")).stdout)[1:]
  assert not any(a.startswith("--exclude") for a in copy_all) and copy_all[-1] == "out"
  delete, = commands(run("tpu_pod.sh", "--dry-run", "delete", env=dict(env, YES="1", PROJECT="p1")).stdout)
  assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "arsr-tpu-qr"]
  assert {"--force", "--quiet", "--project=p1", "--zone=us-central2-b"} <= set(delete)
  _, spot, _ = commands(run("tpu_pod.sh", "--dry-run", "create", env=dict(env, SPOT="1")).stdout)
  assert "--spot" in spot

  real = dict(env, DATASET="ucf101_sr/split1", MANUAL_DIR="/gcs/raw/ucf101", NUM_HOSTS="2")
  out = run("tpu_pod.sh", "--dry-run", "data", env=real)
  shards = commands(out.stdout)
  assert [flag(c, "worker") for c in shards] == ["0", "1", "0"]
  for k, c in enumerate(shards):
    script = flag(c, "command")
    assert_valid_bash(script)
    assert "-m tfds_builders.prepare --dataset ucf101_sr/split1 --manual_dir /gcs/raw/ucf101" in script
    assert (f"--num_shards 2 --shard_index {k}" in script) == (k < 2)
  upload, = commands(run("tpu_pod.sh", "--dry-run", "upload-data", "/data/tfds", env=env).stdout)
  assert upload == ["gcloud", "storage", "rsync", "--recursive", "/data/tfds", "gs://my-bucket/tfds"]


def test_tpu_pod_help_and_errors(env):
  helped = run("tpu_pod.sh", "--help", env=env)
  assert helped.returncode == 0
  for word in ("create", "setup", "data", "train", "logs", "copy", "delete", "--dry-run", "BUCKET"):
    assert word in helped.stdout
  no_bucket = run("tpu_pod.sh", "--dry-run", "setup", env=dict(env, BUCKET=""))
  assert no_bucket.returncode == 1 and "set BUCKET=gs://" in no_bucket.stderr
  unknown = run("tpu_pod.sh", "launch", env=env)
  assert unknown.returncode == 2 and "unknown command launch" in unknown.stderr
  real = run("tpu_pod.sh", "--dry-run", "data", env=dict(env, DATASET="ucf101_sr/split1"))
  assert real.returncode == 1 and "MANUAL_DIR" in real.stderr
  assert "must not run" not in helped.stderr + no_bucket.stderr + unknown.stderr + real.stderr


def test_multi_gpu_dry_run(env, tmp_path):
  out = run("multi_gpu.sh", "--dry-run", "all", "--config.train.batch_size=128",
            env=dict(env, GPUS="0,1", CONFIG="configs/vdsr.py:smoke", DATASET="synthetic_actions/small"))
  assert out.returncode == 0, out.stderr
  venv, pip_up, install, smi, check, data, mkdir, train, logs = commands(out.stdout)
  assert venv == ["python3", "-m", "venv", ".venv"] and install[-2:] == [".", "jax[cuda12]"]
  assert smi == ["nvidia-smi", "-L"] and check[:2] == ["env", "CUDA_VISIBLE_DEVICES=0,1"]
  assert "synthetic_actions.prepare(\"small\"" in data[-1]
  assert train[:4] == ["env", "CUDA_VISIBLE_DEVICES=0,1", "nohup", ".venv/bin/python"]
  main = train[train.index("-m"):]
  assert main[:6] == ["-m", "arsr_jax.main", "--config", "configs/vdsr.py:smoke", "--workdir", "workdirs/sosr_vdsr"]
  assert "--config.train.batch_size=128" in main and train[-6:] == [">>", "logs/sosr_vdsr.log", "2>&1", "<",
                                                                     "/dev/null", "&"]
  assert logs == ["tail", "-n", "100", "-F", "logs/sosr_vdsr.log"]
  assert run("multi_gpu.sh", "--help", env=env).returncode == 0
  assert run("multi_gpu.sh", "nope", env=env).returncode == 2
