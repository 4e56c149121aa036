"""One run per workdir, failures that say what happened: the workdir lock (two real processes, a
killed holder, gs:// with generation preconditions), a full disk during a save (a real 4 MiB tmpfs),
damaged or missing data found before the first step, a batch the devices do not divide."""

import contextlib
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from etils import epath

from arsr_jax import checkpointing, fileio, main, workdir_lock
from arsr_jax.data import pipeline
from fake_gcs import fake_gcs  # noqa: F401  (pytest fixture)
from test_robustness import TINY_FLAGS
from test_train import _params_close, tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _cli(workdir, *flags, data_dir=None, timeout=300):
  args = [sys.executable, "-m", "arsr_jax.main", "--config", "configs/sosr_vdsr.py:smoke", "--workdir", str(workdir),
          *TINY_FLAGS, *([f"--config.data.data_dir={data_dir}"] if data_dir else []), *flags]
  return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _last_line(stderr: str) -> str:
  return stderr.strip().splitlines()[-1]


# --- 1. one run per workdir -------------------------------------------------------------------

HOLDER = ("import sys, time; sys.path.insert(0, {root!r}); from arsr_jax import workdir_lock; "
          "lock = workdir_lock.acquire({workdir!r}); print('locked', flush=True); time.sleep(600)")


@contextlib.contextmanager
def _holder(workdir):
  """Another process holding ``workdir``'s lock."""
  proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), workdir=str(workdir))],
                          stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "locked"
    yield proc
  finally:
    proc.kill()
    proc.wait()


def test_a_second_run_is_refused_while_another_process_holds_the_workdir(small_data_dir, tmp_path):
  workdir = tmp_path / "w"
  with _holder(workdir) as holder:
    before = sorted(os.listdir(workdir))
    with pytest.raises(workdir_lock.WorkdirInUse,
                       match=rf"workdir {workdir} is in use by pid {holder.pid} on host {socket.gethostname()} "
                             r"\(started .*\); wait for it or use another --workdir"):
      main.run(tiny_config(small_data_dir), str(workdir))
    assert sorted(os.listdir(workdir)) == before == [workdir_lock.LOCK_NAME]  # nothing written


def test_lock_of_a_killed_run_is_taken_over_with_a_message(small_data_dir, tmp_path, caplog):
  workdir = tmp_path / "w"
  with _holder(workdir) as holder:
    holder.send_signal(signal.SIGKILL)  # as kill -9: the kernel drops the flock, the file stays
    holder.wait()
    assert (workdir / workdir_lock.LOCK_NAME).exists()
    with caplog.at_level(logging.WARNING):
      result = main.run(tiny_config(small_data_dir, num_steps=2), str(workdir))
  assert result["step"] == 2
  assert any(f"pid {holder.pid} on host" in r.getMessage() and "no longer running" in r.getMessage()
             for r in caplog.records)
  assert not (workdir / workdir_lock.LOCK_NAME).exists()  # released (and removed) on exit


def test_lock_is_released_on_error_and_a_refused_fresh_workdir_is_not_created(small_data_dir, tmp_path):
  config = tiny_config(small_data_dir)
  config.train.batch_size = 12  # 8 devices
  with pytest.raises(ValueError, match="not divisible"):
    main.run(config, str(tmp_path / "fresh"))
  assert not (tmp_path / "fresh").exists()
  lock = workdir_lock.acquire(tmp_path / "fresh")  # free again
  lock.release()


@pytest.mark.slow
def test_two_cli_runs_on_one_workdir_the_second_exits_2_with_one_line(small_data_dir, tmp_path):
  """The issue's case with two real training runs: the second is refused, the first trains on."""
  workdir = tmp_path / "w"
  first = subprocess.Popen(
      [sys.executable, "-m", "arsr_jax.main", "--config", "configs/sosr_vdsr.py:smoke", "--workdir", str(workdir),
       f"--config.data.data_dir={small_data_dir}", *TINY_FLAGS, "--config.train.num_steps=100000",
       "--config.train.log_every=1", "--config.train.checkpoint_every=1000"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 300
    for line in first.stderr:
      if "step 2/100000" in line:
        break
      assert time.monotonic() < deadline, "no training step logged"
    second = _cli(workdir, "--config.train.num_steps=10", data_dir=small_data_dir)
    assert second.returncode == 2, second.stderr[-3000:]
    assert _last_line(second.stderr) == (
        f"arsr_jax.main: workdir {workdir} is in use by pid {first.pid} on host {socket.gethostname()} "
        f"(started {json.loads((workdir / workdir_lock.LOCK_NAME).read_text())['started']}); wait for it or use "
        "another --workdir")
    assert "Traceback" not in second.stderr and "Resuming" not in second.stderr
    assert first.poll() is None  # still training
    first.send_signal(signal.SIGTERM)
    _, rest = first.communicate(timeout=120)
  finally:
    first.kill()
  assert first.returncode == 128 + signal.SIGTERM, rest[-2000:]
  assert not (workdir / workdir_lock.LOCK_NAME).exists()
  assert len([p for p in (workdir / "tensorboard").iterdir()]) == 1  # the second run wrote no events


def test_gcs_lock_is_exclusive_and_released(fake_gcs):  # noqa: F811
  workdir = f"{fake_gcs}/runs/a"
  lock = workdir_lock.acquire(workdir)
  holder = json.loads(epath.Path(workdir, workdir_lock.LOCK_NAME).read_text())
  assert holder["pid"] == os.getpid()
  with pytest.raises(workdir_lock.WorkdirInUse, match=rf"workdir {workdir} is in use by pid {os.getpid()}"):
    workdir_lock.acquire(workdir)  # the ifGenerationMatch=0 create fails (412): refused
  workdir_lock.acquire(f"{fake_gcs}/runs/b").release()  # another workdir is free
  lock.release()
  assert fake_gcs.list_objects("runs/a/") == []
  workdir_lock.acquire(workdir).release()


def _plant(fake_gcs, workdir, **holder):  # noqa: F811
  """A lock object as another run would have left it."""
  record = {"pid": 1, "host": "elsewhere", "boot_id": "x", "started": "2026-01-01T00:00:00+00:00",
            "heartbeat": time.time(), **holder}
  epath.Path(workdir, workdir_lock.LOCK_NAME).write_text(json.dumps(record))


@pytest.mark.parametrize("holder,stale", [
    ({}, False),                                                        # another host, fresh heartbeat
    ({"heartbeat": time.time() - 2 * workdir_lock.STALE_S}, True),      # another host, heartbeat too old
    ({"host": socket.gethostname(), "boot_id": workdir_lock._boot_id(), "pid": 2**22 + 17}, True),  # dead pid here
    ({"host": socket.gethostname(), "boot_id": workdir_lock._boot_id(), "pid": os.getppid()}, False),  # live pid
])
def test_gcs_stale_lock_is_taken_over_live_one_refused(fake_gcs, holder, stale, caplog):  # noqa: F811
  workdir = f"{fake_gcs}/runs/c"
  _plant(fake_gcs, workdir, **holder)
  if not stale:
    with pytest.raises(workdir_lock.WorkdirInUse, match="is in use by pid"):
      workdir_lock.acquire(workdir)
    return
  with caplog.at_level(logging.WARNING):
    lock = workdir_lock.acquire(workdir)
  assert any("Taking over the stale lock" in r.getMessage() for r in caplog.records)
  assert json.loads(epath.Path(workdir, workdir_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
  lock.release()


def test_gcs_heartbeat_refreshes_and_a_takeover_needs_the_generation_read(fake_gcs, monkeypatch):  # noqa: F811
  monkeypatch.setattr(workdir_lock, "HEARTBEAT_S", 0.2)
  workdir = f"{fake_gcs}/runs/d"
  lock = workdir_lock.acquire(workdir)
  first = lock.generation
  time.sleep(1.0)
  lock._stop.set()
  lock._thread.join()
  assert lock.generation != first  # rewritten by the heartbeat, conditional on its own generation
  beat = json.loads(epath.Path(workdir, workdir_lock.LOCK_NAME).read_text())["heartbeat"]
  assert time.time() - beat < 1.0
  # A taker that read an older generation loses to the holder's rewrite (precondition 412).
  with pytest.raises(FileExistsError):
    lock._write(first)
  lock.release()


def test_multiprocess_run_locks_once_and_a_refusal_reaches_every_process(tmp_path):
  """jax.distributed, 2 processes on one workdir: process 0 takes the lock, both proceed; with the
  workdir held by a third process both are refused (none hangs)."""
  worker = pathlib.Path(__file__).with_name("lock_worker.py")

  def run_pair():
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = str(s.getsockname()[1])
    procs = [subprocess.Popen([sys.executable, str(worker), str(i), port, str(tmp_path / "w")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = []
    for p in procs:
      try:
        out, err = p.communicate(timeout=240)
      except subprocess.TimeoutExpired:
        for q in procs:
          q.kill()
        pytest.fail("a process hung")
      assert p.returncode == 0, err[-2000:]
      outs.append(out.strip().splitlines()[-1])
    return outs

  assert run_pair() == ["held: lock file True", "held: lock file True"]
  assert not (tmp_path / "w" / workdir_lock.LOCK_NAME).exists()
  with _holder(tmp_path / "w") as holder:
    outs = run_pair()
  assert outs[0].startswith(f"refused: workdir {tmp_path / 'w'} is in use by pid {holder.pid}")
  assert outs[1].startswith("refused: workdir") and "process 0 could not lock it" in outs[1]


# --- 2. disk full during a save -----------------------------------------------------------------

@pytest.fixture
def tiny_fs(tmp_path):
  """A 4 MiB tmpfs (needs root and mount; skipped otherwise); unmounted afterwards."""
  mnt = tmp_path / "tiny_fs"
  mnt.mkdir()
  if os.geteuid() != 0 or shutil.which("mount") is None:
    pytest.skip("a small tmpfs needs root")
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
    pytest.skip("mount -t tmpfs is not permitted here")
  try:
    yield mnt
  finally:
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
      subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(mnt, leave: int) -> pathlib.Path:
  st = os.statvfs(mnt)
  filler = mnt / "filler"
  with open(filler, "wb") as f:
    f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
  return filler


def test_write_bytes_on_a_full_disk_leaves_no_temporary_file(tiny_fs):
  target = tiny_fs / "out.json"
  fileio.write_text(target, "old")
  _fill(tiny_fs, 64 * 1024)
  with pytest.raises(OSError, match="No space left"):
    fileio.write_bytes(target, b"x" * 1024 * 1024)
  assert sorted(os.listdir(tiny_fs)) == ["filler", "out.json"] and target.read_text() == "old"


@pytest.mark.slow
def test_disk_full_during_a_save_stops_there_with_one_line_and_resumes(small_data_dir, tiny_fs, tmp_path):
  workdir = tiny_fs / "w"
  main.run(tiny_config(small_data_dir, num_steps=6, steps_per_run=2), str(workdir))
  filler = _fill(tiny_fs, 8 * 1024)
  out = _cli(workdir, "--config.train.num_steps=6", "--config.train.log_every=2", "--config.train.checkpoint_every=2",
             data_dir=small_data_dir)
  assert out.returncode == 1, out.stderr[-3000:]
  line = _last_line(out.stderr)
  assert line.startswith(f"arsr_jax.main: cannot write the checkpoint {workdir}/checkpoints/4: no space left on the "
                         "device (") and "free there, a checkpoint needs about" in line, line
  assert "the last good checkpoint (step 2) is intact" in line
  assert "Traceback" not in out.stderr and "step 5/6" not in out.stderr  # stopped at the failed save
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]  # no temporary directory left
  assert checkpointing.load_latest_state(str(workdir))[0] == 2
  filler.unlink()
  main.run(tiny_config(small_data_dir, num_steps=6), str(workdir))
  main.run(tiny_config(small_data_dir, num_steps=6), str(tmp_path / "straight"))
  _params_close(checkpointing.load_latest_state(str(workdir))[1]["params"],
                checkpointing.load_latest_state(str(tmp_path / "straight"))[1]["params"], rtol=1e-6, atol=1e-7)


def test_a_failed_async_save_stops_at_the_next_step_with_its_path(small_data_dir, tmp_path, monkeypatch):
  """The failure surfaces at the first step after the save failed (simulated ENOSPC in the
  background write), not one checkpoint interval later; its temporary directory is removed."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from arsr_jax import sharding  # pylint: disable=import-outside-toplevel
  original = ocp.JsonCheckpointHandler._save_fn  # runs in Orbax's background commit thread

  async def failing(self, x, directory):
    if "/4.orbax-checkpoint-tmp" in os.fspath(directory):
      raise OSError(28, "No space left on device")
    return await original(self, x, directory)

  monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", failing)
  steps_run, real = [], sharding.to_global
  monkeypatch.setattr(sharding, "to_global", lambda b, m: (steps_run.append(1), real(b, m))[1])
  with pytest.raises(checkpointing.SaveFailed, match=f"cannot write the checkpoint {tmp_path}/checkpoints/4: no space"):
    main.run(tiny_config(small_data_dir, num_steps=100, checkpoint_every=4), str(tmp_path))
  assert len(steps_run) < 8  # stopped before the next save (step 8), where Orbax would have raised
  assert sorted(os.listdir(tmp_path / "checkpoints")) == []  # no temporary directory left


# --- 3. damaged or missing data -----------------------------------------------------------------

@pytest.fixture
def data_copy(small_data_dir, tmp_path):
  target = tmp_path / "tfds"
  shutil.copytree(small_data_dir, target)
  return target


def _shard(data_dir, split):
  return data_dir / "synthetic_actions" / "small" / "1.0.0" / f"synthetic_actions-{split}.array_record-00000-of-00001"


def _flip_middle(p):
  data = bytearray(p.read_bytes())
  for i in range(len(data) // 2, len(data) // 2 + 64):
    data[i] ^= 0xFF
  p.write_bytes(bytes(data))


DAMAGE = {"missing": lambda p: p.unlink(), "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
          "flipped": _flip_middle}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_test_split_is_found_before_the_first_step(damage, data_copy, tmp_path):
  shard = _shard(data_copy, "test")
  DAMAGE[damage](shard)
  config = tiny_config(str(data_copy))
  config.eval.max_clips = None  # every clip: the flip lies in the middle of the split
  with pytest.raises(pipeline.DataError) as e:
    main.run(config, str(tmp_path / "w"))
  assert str(shard) in str(e.value) and "split 'test'" in str(e.value)
  assert f"delete {shard.parent} and run again" in str(e.value)
  assert not (tmp_path / "w").exists()  # before anything was written


def test_damage_inside_a_training_shard_names_the_file(data_copy, tmp_path):
  shard = _shard(data_copy, "train")
  _flip_middle(shard)  # first and last records intact: found when training reads it
  with pytest.raises(pipeline.DataError, match=f"cannot read {shard} \\(record \\d+ of split 'train'\\).*delete"):
    main.run(tiny_config(str(data_copy), num_steps=40), str(tmp_path / "w"))


def test_cli_missing_data_is_one_line(data_copy, tmp_path):
  _shard(data_copy, "test").unlink()
  out = _cli(tmp_path / "w", data_dir=str(data_copy))
  assert out.returncode == 1, out.stderr[-3000:]
  assert _last_line(out.stderr).startswith("arsr_jax.main: Dataset 'synthetic_actions/small' split 'test': ")
  assert "is missing" in out.stderr and "Traceback" not in out.stderr


# --- 4. a batch the device count does not divide -----------------------------------------------

def test_cli_batch_not_divisible_by_devices_is_one_line_exit_2(small_data_dir, tmp_path):
  out = _cli(tmp_path / "w", "--config.train.batch_size=12", data_dir=small_data_dir)  # conftest: 8 devices
  assert out.returncode == 2, out.stderr[-3000:]
  assert _last_line(out.stderr) == ("arsr_jax.main: train.batch_size=12 is not divisible by the 8 devices of the "
                                    "mesh; use a multiple of 8")
  assert "Traceback" not in out.stderr and not (tmp_path / "w").exists()
