"""Every shipped config builds; bad keys fail clearly; the CLI runs end to end."""

import json
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import pytest

from arsr_jax import checkpointing, config_lib, losses, main
from arsr_jax.evaluation import frozen
from arsr_jax.jobs import sr as sr_job

ROOT = pathlib.Path(__file__).resolve().parents[1]
# SR recipes; recognizer.py, protocol.py and the attention recipe (which needs a trained
# classifier) are exercised in test_recognition_eval.py.
NOT_SR = ("recognizer", "protocol", "dvsr_progressive_attention")
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.py") if p.stem in config_lib.recipe_names() and p.stem not in NOT_SR)


def _load(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("variant", ["", "smoke"])
def test_config_builds(path, variant):
  config = _load(path).get_config(variant)
  config_lib.validate(config)
  if config.loss.get("perceptual_weight"):  # full recipes fetch ImageNet VGG weights (tests/test_hub.py)
    assert config.loss.perceptual_weights == ("random" if variant == "smoke" else "auto")
    config.loss.perceptual_weights = "random"
  sr_job.build(config)


@pytest.mark.parametrize("variant", ["tsn_rgb", "tsn_flow", "st_resnet", "resnet3d", "wide_resnet3d", "i3d"])
def test_recognizer_configs_build(variant):
  from arsr_jax import recognition
  for arg in (variant, variant + ",smoke"):
    c = _load(ROOT / "configs" / "recognizer.py").get_config(arg)
    config_lib.validate(c)
    kind = recognition.input_kind(c.recognizer)
    kwargs = {k: v for k, v in c.recognizer.to_dict().items() if k != "name"}
    if kind in ("flow", "two_stream"):
      kwargs["flow_stack"] = c.data.flow_stack
    recognition.build_recognizer(c.recognizer.name, num_classes=12, **kwargs)
  with pytest.raises(ValueError, match="pick one model"):
    _load(ROOT / "configs" / "recognizer.py").get_config("tsn_rgb,i3d")


def test_unknown_variant_and_keys_are_rejected():
  module = _load(ROOT / "configs" / "sosr_vdsr.py")
  with pytest.raises(ValueError, match="Unknown variant"):
    module.get_config("smok")
  config = module.get_config("smoke")
  config.train.num_step = 3
  with pytest.raises(ValueError, match=r"'train.num_step' \(did you mean 'train.num_steps'\?\)"):
    config_lib.validate(config)
  config = module.get_config("smoke")
  config.model.num_layer = 3
  with pytest.raises(ValueError, match="no option"):
    sr_job.build(config)
  config = module.get_config("smoke")
  config.mode = "evaluate"
  with pytest.raises(ValueError, match="Unknown mode"):
    main.check(config)  # a run checks its config once, before any work (not sr_job.build)


def _old_names(config) -> dict:
  """A run config as JSON the way runs before the renames wrote it (config_lib.RENAMED)."""
  old = json.loads(config.to_json_best_effort())
  old["evaluate"] = old.pop("protocol")
  old["data"]["new_length"] = old["data"].pop("flow_stack")
  return old


def test_renamed_keys_are_refused_naming_the_new_key():
  config = config_lib.recipe("protocol", "smoke")
  with config.unlocked():
    config.evaluate = config.protocol
    config.data.new_length = 3
  with pytest.raises(ValueError, match=r"'data.new_length' \(renamed: use 'data.flow_stack'\), 'evaluate' "
                                       r"\(renamed: use 'protocol'\)"):
    config_lib.validate(config)
  with pytest.raises(FileNotFoundError, match="--config evaluate: renamed; use protocol"):
    config_lib.resolve_config_path("evaluate")
  config = config_lib.recipe("recognizer", "tsn_flow,smoke")  # a section its consumer checks: still named
  with config.unlocked():
    config.recognizer.new_length = 3
  with pytest.raises(ValueError, match=r"'recognizer.new_length' \(renamed: use 'recognizer.flow_stack'\)"):
    config_lib.validate(config)


def test_stored_configs_and_checkpoint_metas_are_read_under_the_new_names(tmp_path):
  old = _old_names(config_lib.recipe("protocol", "smoke"))
  old["task"], old["data"]["new_length"], old["recognizer"]["new_length"] = "evaluate", 7, 7
  (tmp_path / "config.json").write_text(json.dumps(old))
  cfg = frozen.load_run_config(tmp_path)
  assert cfg.task == "protocol" and cfg.data.flow_stack == 7 and "new_length" not in cfg.data
  assert cfg.recognizer.flow_stack == 7 and "new_length" not in cfg.recognizer
  assert cfg.protocol.views == 1 and "evaluate" not in cfg
  config_lib.validate(cfg)
  # A run whose checkpoints were written before the renames resumes (its data section matches) ...
  config = config_lib.recipe("recognizer", "tsn_flow,smoke")
  with config.unlocked():
    config.recognizer.flow_stack = config.data.flow_stack  # as jobs.recognition.resolve sets it
  meta = tmp_path / "checkpoints" / "4" / "meta" / checkpointing.META_FILE
  meta.parent.mkdir(parents=True)
  identity = checkpointing.run_identity(config)  # what a checkpoint's meta records, as written before
  identity["data"]["new_length"] = identity["data"].pop("flow_stack")
  identity["recognizer"]["new_length"] = identity["recognizer"].pop("flow_stack")
  meta.write_text(json.dumps({"step": 4, **identity}))
  checkpointing.check_identity(tmp_path / "checkpoints", config)
  # ... and one with another flow stack is still another run.
  config.data.flow_stack = 2
  with pytest.raises(config_lib.Mismatch, match="different run: data"):
    checkpointing.check_identity(tmp_path / "checkpoints", config)


@pytest.mark.slow
def test_a_flow_recognizer_workdir_written_before_the_rename_restores_and_resumes(small_data_dir, tmp_path):
  """A TSN flow run whose config.json and checkpoint meta say new_length (data and recognizer) is
  restored frozen with its flow stack and resumes under today's config."""
  config = config_lib.recipe("recognizer", "tsn_flow,smoke")
  config.data.data_dir, config.data.flow_stack = small_data_dir, 3
  config.train.num_steps = config.train.checkpoint_every = config.train.log_every = 2
  config.eval.max_clips = 2
  workdir = tmp_path / "tsn_flow"
  main.run(config, str(workdir))
  stored = [workdir / "config.json", workdir / "checkpoints" / "2" / "meta" / checkpointing.META_FILE]
  for path in stored:  # written as before the renames
    old = json.loads(path.read_text())
    old["data"]["new_length"] = old["data"].pop("flow_stack")
    old["recognizer"]["new_length"] = old["recognizer"].pop("flow_stack")
    path.write_text(json.dumps(old))
  rec = frozen.recognizer_from_workdir(str(workdir), jnp.float32)
  assert (rec.kind, rec.flow_stack, rec.model.flow_stack, rec.step) == ("flow", 3, 3, 2)
  config.train.num_steps = 4
  main.run(config, str(workdir))  # the old meta is the same run: it resumes from step 2
  assert checkpointing.steps(workdir / "checkpoints")[-1] == 4
  assert frozen.load_run_config(workdir).recognizer.flow_stack == 3


@pytest.mark.parametrize("recipe, key, value, message", [
    ("sosr_vdsr_consistency", "temprature", 2.0, r"loss.name='consistency': unknown key\(s\) loss.temprature \(did "
                                                 r"you mean loss.temperature\?\); its keys: feature_layers, "),
    ("tosr1_vdsr", "a", None, r"loss.name='tosr': missing key\(s\) loss.a; its keys: a, b, c, delta, gan_type"),
    ("vdsr", "delta", 0.1, r"loss.name='mse': unknown key\(s\) loss.delta; its keys: gan_type, gan_weight"),
])
def test_loss_keys_are_declared_by_their_objective(recipe, key, value, message):
  config = config_lib.recipe(recipe, "smoke")
  with config.unlocked():
    if value is None:
      del config.loss[key]
    else:
      config.loss[key] = value
  for check in (main.check, lambda c: losses.build_objective(c.loss)):
    with pytest.raises(ValueError, match=message):
      check(config)
  resolved = losses.resolve(config_lib.recipe("spmc", "smoke").loss)  # defaults filled in, set keys kept
  assert (resolved.step_weights, resolved.space, resolved.flow_weight, resolved.gan_weight) == (None, "y", 0.01, 0.0)


@pytest.mark.slow
def test_one_sr_run_validates_its_config_once(small_data_dir, tmp_path, monkeypatch):
  calls = []
  validate = config_lib.validate
  monkeypatch.setattr(config_lib, "validate", lambda c: calls.append(1) or validate(c))
  config = config_lib.recipe("vdsr", "smoke", {"data.data_dir": small_data_dir, "train.num_steps": 1,
                                               "train.batch_size": 8, "eval.batch_size": 8, "eval.max_clips": 1,
                                               "model.num_layers": 2, "model.features": 8})
  assert main.run(config, str(tmp_path))["step"] == 1
  assert len(calls) == 1


def _run_main(*args):
  return subprocess.run([sys.executable, "-m", "arsr_jax.main", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)


@pytest.mark.slow
def test_cli_trains_with_overrides_and_rejects_unknown_flags(small_data_dir, tmp_path):
  common = ["--config", "configs/sosr_vdsr.py:smoke", "--workdir", str(tmp_path),
            f"--config.data.data_dir={small_data_dir}", "--config.train.num_steps=2",
            "--config.model.num_layers=2", "--config.eval.max_clips=1"]
  bad = _run_main(*common, "--config.train.batch_sise=8")
  assert bad.returncode != 0 and "batch_sise" in bad.stderr
  ok = _run_main(*common, "--config.train.batch_size=8")
  assert ok.returncode == 0, ok.stderr[-3000:]
  assert "| vdsr |" in ok.stdout and (tmp_path / "results.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_recipe_trains_two_steps_at_smoke_size(path, small_data_dir, tmp_path):
  config = _load(path).get_config("smoke")
  config.data.data_dir = small_data_dir
  config.train.num_steps = 4
  config.train.steps_per_run = 2
  config.train.batch_size = 8
  result = main.run(config, str(tmp_path))
  assert result == {"step": 2, "finished": False}
