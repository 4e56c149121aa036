"""Workdirs of the older unrolled nets: refused by a run with one line, converted by ``arsr_jax.upgrade``.

The old-layout checkpoint is made here from a current one through the mapping's inverse
(``legacy_layout.to_per_block``), as the unrolled VDSR wrote it (conv1 .. conv{L-2})."""

import json

import jax
import numpy as np
import pytest

from arsr_jax import checkpointing, config_lib, upgrade
from arsr_jax.evaluation import frozen
from arsr_jax.jobs import sr as sr_job
from arsr_jax.models import legacy_layout
from arsr_jax.steps import sr as sr_steps


def _config():
  c = config_lib.recipe("vdsr", "smoke")
  c.model.num_layers, c.model.features = 4, 8
  return c


def _per_block(raw, layouts):
  """The inverse of ``legacy_layout.upgrade_state``: stacked generator dicts -> per-block names."""
  def walk(tree, key=None):
    if isinstance(tree, dict):
      if key in ("generator", "ema_params") and any(lay.name in tree for lay in layouts):
        return legacy_layout.to_per_block(tree, layouts)
      return {k: walk(v, k) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
      return type(tree)(walk(v) for v in tree)
    return tree
  return walk(raw)


def write_old_layout(src, dst, model) -> None:
  """Workdir ``dst``: ``src``'s newest checkpoint (with its data-iterator state) and config.json, in the
  per-block layout of the unrolled ``model`` that older arsr_jax wrote."""
  step, raw = checkpointing.load_latest_state(src)
  per_block = _per_block(raw, legacy_layout.layouts(model))
  meta = checkpointing.read_meta(src / "checkpoints", step)
  meta["checksums"] = checkpointing.checksums(per_block)
  upgrade.write_checkpoint(dst / "checkpoints", step, per_block, meta)
  upgrade._copy_tree(src / "checkpoints" / str(step) / "data", dst / "checkpoints" / str(step) / "data")
  (dst / "config.json").write_text((src / "config.json").read_text())


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  """(config, job, state, current workdir, old-layout workdir), both at step 3."""
  c = _config()
  job = sr_job.sr_job(c)
  state = jax.jit(job.init_fn)(jax.random.key(0))
  rng = np.random.default_rng(0)  # non-zero moments, so their conversion is checked too
  state = state.replace(opt_state=jax.tree.map(lambda x: x + rng.normal(size=np.shape(x)).astype(x.dtype)
                                               if np.issubdtype(x.dtype, np.floating) else x, state.opt_state),
                        step=state.step + 3)
  root = tmp_path_factory.mktemp("upgrade")
  new, old = root / "new", root / "old"
  with checkpointing.manager(new, max_to_keep=2) as mngr:
    checkpointing.save(mngr, 3, state, None, c)
    checkpointing.wait(mngr)
  (new / "config.json").write_text(c.to_json_best_effort())
  write_old_layout(new, old, sr_job.build(c)[0].model)
  generator = checkpointing.load_latest_state(old)[1]["params"]["generator"]
  assert {"conv1", "conv2"} <= set(generator) and "body" not in generator
  return c, job, state, new, old


def _abstract(job):
  repl = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return checkpointing.abstract(jax.eval_shape(job.init_fn, jax.random.key(0)), repl)


def test_a_run_refuses_an_old_layout_workdir_naming_the_upgrade_command(workdirs):
  c, job, state, _, old = workdirs
  before = sorted(p.relative_to(old) for p in old.rglob("*"))
  with checkpointing.manager(old, max_to_keep=2) as mngr:
    with pytest.raises(checkpointing.StateTreeMismatch, match=f"python -m arsr_jax.upgrade {old}") as e:
      checkpointing.restore_latest(mngr, _abstract(job), None)
  assert isinstance(e.value, config_lib.Mismatch) and "\n" not in str(e.value)  # main: one line, exit 2
  assert sorted(p.relative_to(old) for p in old.rglob("*")) == before  # nothing set aside or written
  with pytest.raises(ValueError, match="arsr_jax.upgrade"):  # train.init_from from it
    sr_job.init_from(state, str(old), jax.sharding.SingleDeviceSharding(jax.devices()[0]), sr_job.build(c)[0].model)
  with pytest.raises(ValueError, match="arsr_jax.upgrade"):  # enhance / evaluation
    frozen.load_sr(str(old), jax.sharding.SingleDeviceSharding(jax.devices()[0]), np.float32)


def test_upgrade_command_converts_once_and_the_run_restores_the_same_state(workdirs, tmp_path, capsys):
  c, job, state, new, old = workdirs
  import shutil
  work = tmp_path / "old"
  shutil.copytree(old, work)
  upgrade.main(["upgrade", str(work)])
  assert "resumes from step 3" in capsys.readouterr().out
  assert checkpointing.steps(work / upgrade.BACKUP) == [3]  # the old checkpoint, moved unchanged
  assert sorted(p.relative_to(work / upgrade.BACKUP) for p in (work / upgrade.BACKUP).rglob("*")) == sorted(
      p.relative_to(old / "checkpoints") for p in (old / "checkpoints").rglob("*"))
  with checkpointing.manager(work, max_to_keep=2) as mngr:
    restored, damaged = checkpointing.restore_latest(mngr, _abstract(job), None, strict=True)
  assert not damaged and int(restored.step) == 3
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(state))
  setup, _ = sr_job.build(c)
  lr = np.random.default_rng(1).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  apply = lambda s: sr_steps.apply_sr(setup.model, {"params": s.params["generator"]}, lr, train=False)  # noqa: E731
  np.testing.assert_array_equal(apply(restored), apply(state))

  for workdir, why in ((work, "upgraded before"), (new, "nothing to upgrade"),
                       (tmp_path / "missing", "not a workdir")):
    with pytest.raises(SystemExit) as e:
      upgrade.main(["upgrade", str(workdir)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and why in err and err.count("\n") == 1, err


def test_upgrade_drops_the_unrolled_nets_scan_option_from_config_and_meta(workdirs, tmp_path):
  *_, old = workdirs
  import shutil
  work = tmp_path / "old"
  shutil.copytree(old, work)
  config = json.loads((work / "config.json").read_text())
  config["model"]["scan"] = False  # what a run with --config.model.scan=False recorded
  (work / "config.json").write_text(json.dumps(config))
  meta_file = work / "checkpoints" / "3" / "meta" / checkpointing.META_FILE
  meta = json.loads(meta_file.read_text())
  meta["model"]["scan"] = False
  meta_file.write_text(json.dumps(meta))
  upgrade.upgrade(work)
  assert "scan" not in json.loads((work / "config.json").read_text())["model"]
  assert "scan" not in checkpointing.read_meta(work / "checkpoints", 3)["model"]
  assert json.loads((work / upgrade.BACKUP / "config.json").read_text())["model"]["scan"] is False
  checkpointing.check_identity(work / "checkpoints", _config())  # the recipe resumes it


def test_a_damaged_checkpoint_of_the_current_layout_is_still_damage_not_a_mismatch(workdirs, tmp_path):
  """The layout refusal reads the saved tree's names: a current checkpoint with truncated arrays is
  reported as damaged (and would fall back), not as an older layout."""
  _, job, _, new, _ = workdirs
  import shutil
  work = tmp_path / "new"
  shutil.copytree(new, work)
  files = sorted((f for f in (work / "checkpoints" / "3" / "state").rglob("*") if f.is_file()
                  and "METADATA" not in f.name.upper()), key=lambda f: f.stat().st_size)
  files[-1].write_bytes(files[-1].read_bytes()[:16])
  with checkpointing.manager(work, max_to_keep=2) as mngr:
    with pytest.raises(checkpointing.CheckpointDamaged, match="No intact"):
      checkpointing.restore_latest(mngr, _abstract(job), None)
