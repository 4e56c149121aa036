"""Faults as tests: preemption signals, damaged checkpoints, another run's workdir, impossible configs."""

import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from arsr_jax import checkpointing, config_lib, main, sharding
from configs import vdsr
from test_train import _params_close, tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _listing(root) -> dict[str, int]:
  return {os.path.relpath(os.path.join(d, f), root): os.path.getsize(os.path.join(d, f))
          for d, _, files in os.walk(root) for f in files}


def _config(data_dir, **train_overrides):
  """tiny_config with 64 features: arrays big enough for OCDBT to store them outside its
  CRC-checked b-tree nodes, where changed bytes go unnoticed by TensorStore."""
  c = tiny_config(data_dir, **train_overrides)
  c.model.features = 64
  return c


@pytest.fixture(scope="module")
def trained(small_data_dir, tmp_path_factory):
  """A workdir with checkpoints at steps 2 and 4 (tiny SoSR-VDSR, 64 features)."""
  workdir = tmp_path_factory.mktemp("trained")
  main.run(_config(small_data_dir, num_steps=4), str(workdir))
  assert checkpointing.steps(workdir / "checkpoints") == [2, 4]
  return workdir


@pytest.fixture
def copy(trained, tmp_path):
  shutil.copytree(trained, tmp_path / "w")
  return tmp_path / "w"


# --- 4. damaged checkpoints -------------------------------------------------------------------

def _array_file(step_dir):
  """The largest OCDBT data file of the state item: the arrays (state/ocdbt.process_0/d/...)."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  return max(files, key=lambda p: p.stat().st_size)


def _flip(step_dir):
  p = _array_file(step_dir)
  data = bytearray(p.read_bytes())
  for i in range(len(data) // 2, len(data) // 2 + 8):
    data[i] ^= 0xFF
  p.write_bytes(bytes(data))


def _truncate(step_dir):
  p = _array_file(step_dir)
  p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty_meta(step_dir):
  (step_dir / "meta" / checkpointing.META_FILE).write_text("")


def _empty_state_metadata(step_dir):
  (step_dir / "state" / "_METADATA").write_text("")


def _empty_dir(step_dir):
  shutil.rmtree(step_dir)
  step_dir.mkdir()


FAULTS = {"byte_flip": _flip, "truncated": _truncate, "empty_meta": _empty_meta,
          "empty_state_metadata": _empty_state_metadata, "empty_step_dir": _empty_dir}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_damaged_latest_checkpoint_falls_back_with_warning(fault, copy, caplog):
  step4 = copy / "checkpoints" / "4"
  FAULTS[fault](step4)
  with caplog.at_level(logging.WARNING):
    step, state = checkpointing.load_latest_state(str(copy))
  assert step == 2 and int(state["step"]) == 2
  assert any(str(step4) in r.getMessage() and "Damaged checkpoint" in r.getMessage() for r in caplog.records)
  with pytest.raises(checkpointing.CheckpointDamaged, match=str(step4)):
    checkpointing.load_latest_state(str(copy), strict=True)


@pytest.mark.slow
def test_byte_flip_never_passes_silently(copy):
  """What the checksums catch. Where the flipped bytes land depends on OCDBT's write order: in a
  zstd frame header TensorStore notices, inside compressed data Orbax restores them without
  complaint. Either way the damage must be reported, and in the silent case only the checksums can."""
  _flip(copy / "checkpoints" / "4")
  meta = checkpointing.read_meta(copy / "checkpoints", 4)
  assert meta["checksums"]
  try:
    with ocp.CheckpointManager(copy / "checkpoints", item_names=checkpointing.ITEMS,
                               options=ocp.CheckpointManagerOptions(read_only=True)) as mngr:
      state = mngr.restore(4, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  except Exception as e:  # noqa: BLE001 - TensorStore's ValueError, which Orbax may wrap in a bare Exception
    causes, x = [], e
    while x is not None:
      causes.append(str(x).lower())
      x = x.__cause__ or x.__context__
    assert any("corrupt" in c or "error reading" in c for c in causes), e
    return
  with pytest.raises(checkpointing.CheckpointDamaged, match="checksum mismatch"):
    checkpointing.verify(state, meta["checksums"], copy / "checkpoints" / "4")


@pytest.mark.slow
def test_training_resumes_from_intact_checkpoint_and_sets_damaged_aside(copy, small_data_dir, trained, caplog):
  _flip(copy / "checkpoints" / "4")
  with caplog.at_level(logging.WARNING):
    result = main.run(_config(small_data_dir, num_steps=4), str(copy))
  assert result["step"] == 4
  assert any("Fell back to the intact checkpoint at step 2" in r.getMessage() for r in caplog.records)
  assert (copy / "damaged_checkpoints" / "4" / "state").is_dir()
  # Retrained from step 2, the new step 4 equals the original (training is deterministic).
  _params_close(checkpointing.load_latest_state(str(copy))[1]["params"],
                checkpointing.load_latest_state(str(trained))[1]["params"], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_strict_restore_raises_naming_the_checkpoint(copy, small_data_dir):
  _truncate(copy / "checkpoints" / "4")
  config = _config(small_data_dir, num_steps=6, strict_restore=True)
  with pytest.raises(checkpointing.CheckpointDamaged, match=f"{copy / 'checkpoints' / '4'}.*strict_restore"):
    main.run(config, str(copy))
  assert not (copy / "damaged_checkpoints").exists()


@pytest.mark.slow
def test_all_checkpoints_damaged_is_an_error_listing_each(copy):
  for step in (2, 4):
    _empty_meta(copy / "checkpoints" / str(step))
  with pytest.raises(checkpointing.CheckpointDamaged, match="No intact, restorable checkpoint") as e:
    checkpointing.load_latest_state(str(copy))
  assert str(copy / "checkpoints" / "2") in str(e.value) and str(copy / "checkpoints" / "4") in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("change", ["loss_vdsr_recipe", "data_patch_size"])
def test_workdir_of_another_loss_or_data_is_refused_and_untouched(change, copy, small_data_dir):
  if change == "loss_vdsr_recipe":  # the case: a vdsr (MSE) config on a SoSR workdir
    other = vdsr.get_config("smoke")
    for key in ("data", "model", "optimizer", "train", "eval"):
      other[key] = _config(small_data_dir, num_steps=6)[key]
    pattern = "different run: loss"
  else:
    other = _config(small_data_dir, num_steps=6)
    other.data.patch_size = 16
    pattern = "different run: data"
  before = _listing(copy)
  with pytest.raises(ValueError, match=pattern):
    main.run(other, str(copy))
  assert _listing(copy) == before


@pytest.mark.slow
def test_refused_fresh_layout_creates_nothing(copy, small_data_dir):
  """Refusal happens before the TensorBoard writer or the checkpoint manager exist."""
  shutil.rmtree(copy / "tensorboard")
  os.remove(copy / "config.json")
  before = _listing(copy)
  other = _config(small_data_dir, num_steps=6)
  other.model.features = 16
  with pytest.raises(ValueError, match="different run: model"):
    main.run(other, str(copy))
  assert _listing(copy) == before and not (copy / "tensorboard").exists()


@pytest.mark.slow
def test_checkpoint_of_an_older_version_restores_unverified(copy, caplog):
  """Meta written before checksums, loss and data were recorded: restored, with a warning."""
  for step in (2, 4):
    p = copy / "checkpoints" / str(step) / "meta" / checkpointing.META_FILE
    meta = json.loads(p.read_text())
    p.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("checksums", "loss", "data")}))
  with caplog.at_level(logging.WARNING):
    assert checkpointing.load_latest_state(str(copy))[0] == 4
  assert any("has no checksums" in r.getMessage() for r in caplog.records)
  other = _config(None)
  other.loss.name = "mse"
  checkpointing.check_identity(copy / "checkpoints", other)  # loss not recorded: not compared


def test_identity_ignores_keys_that_may_change_on_resume(small_data_dir):
  a, b = tiny_config(small_data_dir), tiny_config("/elsewhere", num_steps=99, log_every=7)
  b.data.worker_count, b.data.eval_split = 2, "train"
  assert checkpointing.run_identity(a) == checkpointing.run_identity(b)
  b.loss.perceptual_weight = 0.5
  assert checkpointing.run_identity(a) != checkpointing.run_identity(b)


# --- 3. preemption and clean stops ------------------------------------------------------------

@pytest.mark.slow
def test_sigint_stops_at_a_checkpoint_and_restores_handlers(small_data_dir, tmp_path, monkeypatch):
  previous = signal.getsignal(signal.SIGINT)
  to_global, calls = sharding.to_global, []

  def interrupting(batch, mesh):
    calls.append(1)
    if len(calls) == 3:
      os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C during step 3
    return to_global(batch, mesh)

  monkeypatch.setattr(sharding, "to_global", interrupting)
  result = main.run(tiny_config(small_data_dir, num_steps=6), str(tmp_path))
  assert result == {"step": 3, "finished": False, "stopped_by": "SIGINT"}
  assert checkpointing.steps(tmp_path / "checkpoints") == [2, 3]
  assert signal.getsignal(signal.SIGINT) is previous
  assert not (tmp_path / "results.json").exists()


# The CLI equivalent of test_train.tiny_config.
TINY_FLAGS = ["--config.model.num_layers=3", "--config.model.features=8", "--config.optimizer.schedule=constant",
              "--config.optimizer.warmup_steps=0", "--config.train.batch_size=8", "--config.eval.batch_size=8",
              "--config.eval.max_clips=2"]


@pytest.mark.slow
def test_sigterm_mid_run_checkpoints_and_resumes_to_the_same_parameters(small_data_dir, tmp_path, caplog):
  workdir = tmp_path / "preempted"
  proc = subprocess.Popen(
      [sys.executable, "-m", "arsr_jax.main", "--config", "configs/sosr_vdsr.py:smoke", "--workdir", str(workdir),
       f"--config.data.data_dir={small_data_dir}", *TINY_FLAGS, "--config.train.num_steps=100000",
       "--config.train.log_every=1", "--config.train.checkpoint_every=1000"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  lines, deadline = [], time.monotonic() + 300
  try:
    for line in proc.stderr:  # absl logs to stderr
      lines.append(line)
      if "step 3/100000" in line:
        break
      assert time.monotonic() < deadline, "no training step logged"
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=120)
  finally:
    proc.kill()
  err = "".join(lines) + rest
  assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
  assert "stopped by SIGTERM" in err and "rerun the same command to resume" in err
  assert "Traceback" not in err
  stopped, _ = checkpointing.load_latest_state(str(workdir))
  assert stopped >= 3 and f"stopped by SIGTERM at step {stopped} " in err  # its own checkpoint
  # Resume (a constant learning rate: num_steps changes nothing else) and compare with a straight run.
  final = stopped + 2
  with caplog.at_level(logging.INFO):
    assert main.run(tiny_config(small_data_dir, num_steps=final), str(workdir))["step"] == final
  assert any(f"Resuming from step {stopped}" in r.getMessage() for r in caplog.records)
  main.run(tiny_config(small_data_dir, num_steps=final), str(tmp_path / "straight"))
  step_a, a = checkpointing.load_latest_state(str(workdir))
  step_b, b = checkpointing.load_latest_state(str(tmp_path / "straight"))
  assert step_a == step_b == final
  _params_close(a["params"], b["params"], rtol=1e-6, atol=1e-7)
  _params_close(a["opt_state"], b["opt_state"], rtol=1e-6, atol=1e-7)


# --- 5. config values that cannot work --------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("train.checkpoint_every", 0), ("train.log_every", 0), ("train.num_steps", -5), ("train.num_steps", 0),
    ("train.batch_size", 0), ("eval.batch_size", -8), ("train.keep_checkpoints", 0), ("train.ema_decay", 1.0),
    ("train.ema_decay", -0.1), ("train.fade_steps", 0), ("train.steps_per_run", 0), ("scale", 5),
    ("optimizer.learning_rate", -1e-4), ("data.patch_size", -32), ("compute_dtype", "float16")])
def test_validate_names_the_bad_key(key, value):
  config = tiny_config(None)
  *section, leaf = key.split(".")
  (config[section[0]] if section else config)[leaf] = value
  with pytest.raises(ValueError, match=rf"Invalid config value\(s\): {key}={value!r} \(must be"):
    config_lib.validate(config)


def test_validate_accepts_every_shipped_default():
  config_lib.validate(config_lib.get_base_config())
  config_lib.validate(tiny_config(None, ema_decay=0.999, fade_steps=10, steps_per_run=1))


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "arsr_jax.main", "--config", "configs/sosr_vdsr.py:smoke", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("flag,message", [
    ("--config.train.batch_sise=8", "bad --config: 'batch_sise' Did you mean \"batch_size\""),
    ("--config.train.checkpoint_every=0", "train.checkpoint_every=0 (must be an integer >= 1)"),
    ("--config.train.num_steps=-5", "train.num_steps=-5 (must be an integer >= 1)")])
def test_cli_bad_config_is_one_line_and_exit_2(flag, message, tmp_path):
  out = _cli("--workdir", str(tmp_path / "w"), flag)
  assert out.returncode == 2, out.stderr[-2000:]
  assert out.stderr.strip().splitlines() == [out.stderr.strip()] and message in out.stderr, out.stderr
  assert not (tmp_path / "w").exists()
