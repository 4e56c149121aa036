"""Entry point: ``python -m arsr_jax.main --config configs/sosr_vdsr.py[:smoke] --workdir DIR``
(installed: ``arsr-train --config sosr_vdsr:smoke --workdir DIR``).

--config takes a recipe file, or a recipe's name (``sosr_vdsr``, the same file shipped in the
package, so it works from a wheel), optionally followed by ``:variant``. The config's ``task``
says what runs: an SR recipe, a recognizer (``recognizer``) or the recognition-based evaluation
(``protocol``).

Any config value can be overridden on the command line, e.g.
``--config.train.batch_size=8`` or ``--config.mode=eval``. ``--print_config`` prints the whole
config (every key a --config.* override can set); without --workdir it then exits. A run logs a
short summary; the full config is in WORKDIR/config.json.

Exit status: 0 done; 2 a config that cannot work (a missing config file, an unknown key or
variant, a bad value, a misspelled dataset config, another device count than --expect_devices,
inputs that do not fit together such as a recognizer trained on other data, a workdir whose
checkpoints belong to another run (another recipe), a batch the device count does not divide, a
workdir another run is using: one line on stderr); 1 with one line on stderr when the data is
missing or damaged (the file is named) or a checkpoint could not be written (e.g. disk full: the
path and the space needed);
128 + signal number (143 SIGTERM, 130 SIGINT) when a signal stopped training cleanly at a
checkpoint: rerun the same command to resume.
"""

from __future__ import annotations

import signal
import sys
from typing import Any, Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

import tfds_builders
from arsr_jax import checkpointing, config_lib, fileio, losses, perceptual, sharding, train, workdir_lock, writers
from arsr_jax.data import pipeline
from arsr_jax.evaluation import protocol
from arsr_jax.jobs import recognition as recognition_job
from arsr_jax.jobs import sr as sr_job

FLAGS = flags.FLAGS

# config.task -> what runs it: (config, workdir) -> results.
TASKS: dict[str, Callable[[ml_collections.ConfigDict, fileio.PathLike], dict[str, Any]]] = {
    "sr": lambda config, workdir: train.train_and_evaluate(config, workdir, sr_job.sr_job(config)),
    "recognition": lambda config, workdir: train.train_and_evaluate(
        config, workdir, recognition_job.recognition_job(config)),
    "protocol": protocol.run,
}


def check(config: ml_collections.ConfigDict) -> None:
  """Refuses a config that cannot work (ValueError, one line): unknown keys or bad values
  (``config_lib.validate``) and, for SR, ``loss.*`` keys its objective does not declare."""
  config_lib.validate(config)
  if config.task == "sr":
    losses.resolve(config.loss)


def run(config: ml_collections.ConfigDict, workdir: fileio.PathLike) -> dict[str, Any]:
  """Runs ``config.task`` in ``workdir`` (train + evaluate, or the protocol); returns its results.

  The config is checked first (``check``), the workdir is locked for the run (``workdir_lock``: a
  second run raises WorkdirInUse), and every dataset split the run reads is opened and checked
  before any work (``pipeline.check_splits``).
  """
  check(config)
  return _run_checked(config, workdir)


def _run_checked(config: ml_collections.ConfigDict, workdir: fileio.PathLike) -> dict[str, Any]:
  """``run`` for a config that ``check`` passed: the components trust it and do not check again."""
  if config.task == "sr" and config.mode != "eval":
    perceptual.check_available(config.loss)  # no VGG weights: refused before any data or workdir exists
  with workdir_lock.hold(workdir):
    pipeline.check_splits(config)
    return TASKS[config.task](config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  writers.quiet_libraries()
  if FLAGS.print_config:
    print(FLAGS.config)
    if FLAGS.workdir is None:
      return
  if FLAGS.workdir is None:
    _exit_usage("--workdir is required (or --print_config alone to print the config and exit)")
  try:
    check(FLAGS.config)
    tfds_builders.check_name(FLAGS.config.data.name)
    sharding.maybe_initialize_distributed(FLAGS.distributed, FLAGS.expect_devices)
  except ValueError as e:
    _exit_usage(str(e))
  logging.info("Config: %s (full config: %s; --print_config prints it)", summary(FLAGS.config),
               fileio.path(FLAGS.workdir) / "config.json")
  try:
    result = _run_checked(FLAGS.config, FLAGS.workdir)
  except (config_lib.Mismatch, workdir_lock.WorkdirInUse) as e:
    _exit_usage(str(e))
  except (pipeline.DataError, checkpointing.SaveFailed) as e:
    print(f"arsr_jax.main: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(1)
  if result.get("stopped_by"):
    print(f"arsr_jax.main: stopped by {result['stopped_by']} at step {result['step']} with a checkpoint in "
          f"{FLAGS.workdir}; rerun the same command to resume.", file=sys.stderr)
    sys.exit(128 + signal.Signals[result["stopped_by"]].value)


def summary(config: ml_collections.ConfigDict) -> str:
  """One line: what runs on which data, how long, with which batch."""
  net = config.recognizer.name if config.task == "recognition" else config.model.name
  what = f"task={config.task} mode={config.mode}"
  if config.task != "protocol":
    what += (f" network={net} scale={config.scale} data={config.data.name} steps={config.train.num_steps}"
             f" batch={config.train.batch_size}")
  else:
    what += f" methods={config.protocol.methods} data={config.data.name}"
  return what


def _exit_usage(message: str) -> None:
  print(f"arsr_jax.main: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a missing config file, a config that fails to load (e.g. an unknown
  variant) or a bad --config.* override is one line on stderr (exit 2), not a traceback."""
  argv = _resolve_config(argv)
  for a in argv:  # an override of a renamed key: one line naming the new key (config_lib.RENAMED)
    key = a[len("--config."):].split("=", 1)[0] if a.startswith("--config.") else ""
    if key and config_lib.renamed_key(key):
      _exit_usage(f"bad --config: --config.{key} was renamed; use --config.{config_lib.renamed_key(key)}")
  try:
    rest = FLAGS(argv)
  except flags.Error as e:  # e.g. get_config raised (unknown variant): its last line is the cause
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    _exit_usage(lines[-1] if lines else type(e).__name__)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    text = " ".join(str(a) for a in e.args).replace("\\n", " ").replace("\\'", "'")
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a KeyError's repr
      text = text[1:-1]
    _exit_usage(f"bad --config: {' '.join(text.split()) or type(e).__name__}")
  try:
    FLAGS.config.get("task")  # a config that failed to load raises here (ml_collections' _ErrorConfig)
  except OSError as e:
    while e.__cause__ is not None:
      e = e.__cause__
    _exit_usage(f"--config failed to load: {' '.join(str(e).split())}")
  return rest


def _resolve_config(argv: list[str]) -> list[str]:
  """``argv`` with --config's file part resolved (a recipe name becomes its file); a name or path
  that is neither exits with one line suggesting the closest (config_lib.resolve_config_path)."""
  argv = list(argv)
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      prefix, value = "--config=", a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      i, prefix, value = i + 1, "", argv[i + 1]
    else:
      continue
    path, sep, variant = value.partition(":")
    try:
      argv[i] = prefix + config_lib.resolve_config_path(path) + sep + variant
    except FileNotFoundError as e:
      _exit_usage(str(e))
    break
  return argv


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  config_flags.DEFINE_config_file(
      "config", None, "A recipe name or Python config file, optionally :variant (sosr_vdsr:smoke, "
      f"configs/sosr_vdsr.py:smoke). Recipes: {', '.join(config_lib.recipe_names())}. A recipe's "
      "variants are in its file's docstring; its keys: --config NAME --print_config.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory (or gs:// URL) for checkpoints, TensorBoard events and results.")
  flags.DEFINE_bool("distributed", False,
                    "Multi-process run: call jax.distributed.initialize() (TPU pods, SLURM).")
  flags.DEFINE_integer("expect_devices", 0,
                       "Exit (status 2) unless the job sees exactly this many devices (0: any); launchers "
                       "pass what they allocated, so a process that sees fewer never trains silently.")
  flags.DEFINE_bool("print_config", False, "Print the whole config (after --config.* overrides); "
                    "without --workdir, print it and exit.")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
