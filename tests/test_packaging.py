"""What an installed package offers: recipes by name (from a wheel too), console commands, and
one-line refusals of a workdir that holds another run."""

import os
import pathlib
import subprocess
import sys
import tomllib
import zipfile

import pytest

import numpy as np

from arsr_jax import cli, config_lib
from arsr_jax.media import video

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_is_listed_in_pyproject():
  found = {".".join(p.parent.relative_to(REPO).parts) for root in ("arsr_jax", "tfds_builders")
           for p in (REPO / root).rglob("__init__.py")}
  listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
  assert found - listed == set(), "add them to [tool.setuptools] packages"
  assert listed - found == {"arsr_jax.configs"}
  assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"arsr_jax.configs": "configs"}


def test_console_commands_match_cli():
  scripts = PYPROJECT["project"]["scripts"]
  assert scripts == {name: f"arsr_jax.cli:{fn.__name__}" for name, fn in cli.COMMANDS.items()}


def test_config_is_a_path_or_a_recipe_name(tmp_path):
  names = config_lib.recipe_names()
  assert {"sosr_vdsr", "vdsr", "recognizer", "protocol"} <= set(names) and "config_lib" not in names
  assert config_lib.resolve_config_path("sosr_vdsr") == os.path.join(config_lib.CONFIGS_DIR, "sosr_vdsr.py")
  own = tmp_path / "mine.py"
  own.write_text("")
  assert config_lib.resolve_config_path(str(own)) == str(own)
  with pytest.raises(FileNotFoundError, match="--config sosr_vdrs: no such file or recipe; did you mean sosr_vdsr?"):
    config_lib.resolve_config_path("sosr_vdrs")
  with pytest.raises(FileNotFoundError, match=r"no such file or recipe \(recipes: "):
    config_lib.resolve_config_path("zzzz")
  with pytest.raises(FileNotFoundError, match="no such file; did you mean configs/sosr_vdsr.py"):
    config_lib.resolve_config_path(os.path.relpath(REPO / "configs" / "sosr_vdr.py"))


def _run(args, cwd, env=None):
  return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, **(env or {})))


def test_main_print_config_and_help(tmp_path):
  env = {"PYTHONPATH": str(REPO)}
  r = _run([sys.executable, "-m", "arsr_jax.main", "--config", "vdsr:smoke", "--print_config",
            "--config.train.batch_size=8"], tmp_path, env)
  assert r.returncode == 0, r.stderr
  assert "batch_size: 8" in r.stdout and "num_layers: 8" in r.stdout
  r = _run([sys.executable, "-m", "arsr_jax.main", "--help"], tmp_path, env)
  assert "sosr_vdsr" in r.stdout and "--print_config" in r.stdout


@pytest.mark.slow
def test_another_recipe_in_a_workdir_is_one_line_exit_2(small_data_dir, tmp_path):
  env = {"PYTHONPATH": str(REPO)}
  workdir = tmp_path / "w"
  common = ["--workdir", str(workdir), f"--config.data.data_dir={small_data_dir}", "--config.train.num_steps=2",
            "--config.train.steps_per_run=1", "--config.train.batch_size=8"]
  r = _run([sys.executable, "-m", "arsr_jax.main", "--config", "vdsr:smoke", *common], tmp_path, env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert len(r.stderr.splitlines()) < 40, r.stderr  # a summary line, not the whole config
  assert "Config: task=sr mode=train network=vdsr" in r.stderr
  r = _run([sys.executable, "-m", "arsr_jax.main", "--config", "rcan:smoke", *common], tmp_path, env)
  last = r.stderr.splitlines()[-1]
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
  assert last.startswith(f"arsr_jax.main: The checkpoint at step 1 in {workdir}") and "different run: model" in last


@pytest.mark.slow
def test_wheel_ships_recipes_and_commands(tmp_path, small_data_dir):
  """The wheel, installed alone (no source tree on the path), loads recipes by name, trains one by
  name, and its console commands run: degrade, then enhance with the shipped model, on a real clip."""
  wheels, target, cwd = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
  cwd.mkdir()
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                 check=True, timeout=600)
  (wheel,) = wheels.glob("arsr_jax-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  assert "arsr_jax/configs/sosr_vdsr.py" in names and "arsr_jax/configs/recognizer.py" in names
  assert not any(n.startswith(("configs/", "tests/")) for n in names)
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                 check=True, timeout=600)
  env = {"PYTHONPATH": str(target)}
  r = _run([sys.executable, "-c", "import arsr_jax.config_lib as c; print(c.__file__); print(c.CONFIGS_DIR)"], cwd, env)
  assert r.stdout.split() == [str(target / "arsr_jax" / "config_lib.py"), str(target / "arsr_jax" / "configs")], r
  for command in cli.COMMANDS:
    assert (target / "bin" / command).is_file(), command
  r = _run([str(target / "bin" / "arsr-train"), "--config", "sosr_vdsr:smoke", "--print_config"], cwd, env)
  assert r.returncode == 0 and "name: sosr" in r.stdout, r.stderr
  r = _run([str(target / "bin" / "arsr-train"), "--config", "sosr_vdrs", "--workdir", "w"], cwd, env)
  assert r.returncode == 2 and "did you mean sosr_vdsr?" in r.stderr, r.stderr
  for command in ("arsr-enhance", "arsr-degrade", "arsr-flow", "arsr-study", "arsr-real-study", "arsr-corpus-study",
                  "arsr-export-pretrained", "arsr-upgrade",
                  "arsr-prepare"):
    r = _run([str(target / "bin" / command), "--help"], cwd, env)  # absl's --help exits 1, argparse's 0
    assert r.returncode in (0, 1) and "--" in r.stdout and "Traceback" not in r.stderr, (command, r.stderr[-2000:])
  r = _run([str(target / "bin" / "arsr-train"), "--config", "vdsr:smoke", "--workdir", "w", "--config.train.num_steps=1",
            f"--config.data.data_dir={small_data_dir}", "--config.train.batch_size=8", "--config.eval.max_clips=2"], cwd, env)
  assert r.returncode == 0 and (cwd / "w" / "results.json").is_file(), r.stderr[-3000:]
  hr = np.random.default_rng(0).integers(0, 256, (3, 48, 64, 3), np.uint8)
  video.write_video(cwd / "hr.mp4", hr, fps=10)
  r = _run([str(target / "bin" / "arsr-degrade"), "-i", "hr.mp4", "-o", "lr.mp4", "-s", "4"], cwd, env)
  assert r.returncode == 0, r.stderr[-3000:]
  r = _run([str(target / "bin" / "arsr-enhance"), "-i", "lr.mp4", "-o", "sr.mp4"], cwd, env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert video.read_video(cwd / "sr.mp4").shape == (3, 48, 64, 3)


@pytest.mark.slow
def test_generating_data_into_a_file_leaves_no_bars_or_unknown_size(tmp_path):
  """stderr and stdout redirected (not a terminal): no tqdm escape codes or carriage returns, no
  'Unknown size' download line; the project's own line says what is rendered where."""
  code = ("from absl import logging; logging.use_absl_handler(); logging.set_verbosity('info'); "
          "from arsr_jax import writers; from arsr_jax.data import pipeline; writers.quiet_libraries(); "
          f"pipeline.get_builder('synthetic_actions/small', {str(tmp_path / 'tfds')!r})")
  r = _run([sys.executable, "-c", code], tmp_path, {"PYTHONPATH": str(REPO)})
  assert r.returncode == 0, r.stderr[-3000:]
  out = r.stdout + r.stderr
  assert "Unknown size" not in out and "\r" not in out and "\x1b[" not in out, out[-3000:]
  assert "synthetic_actions/small: rendering 64 train + 32 test clips locally into" in r.stderr
