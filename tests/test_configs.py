"""Every shipped config builds; bad keys fail clearly; the CLI runs end to end."""

import pathlib
import subprocess
import sys

import pytest

from arsr_jax import config_lib, main
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
  from arsr_jax.data import recognition_data
  for arg in (variant, variant + ",smoke"):
    c = _load(ROOT / "configs" / "recognizer.py").get_config(arg)
    config_lib.validate(c)
    kind = recognition_data.input_kind(c.recognizer)
    kwargs = {k: v for k, v in c.recognizer.to_dict().items() if k != "name"}
    if kind in ("flow", "two_stream"):
      kwargs["new_length"] = c.data.flow_stack
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
    sr_job.build(config)


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
