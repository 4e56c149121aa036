"""Entry point: ``python -m arsr_jax.main --config configs/sosr_vdsr.py[:smoke] --workdir DIR``.

The config's ``task`` says what runs: an SR recipe (configs/<recipe>.py), a recognizer
(configs/recognizer.py) or the recognition-based evaluation (configs/evaluate.py).

Any config value can be overridden on the command line, e.g.
``--config.train.batch_size=8`` or ``--config.mode=eval``.

Exit status: 0 done; 2 a config that cannot work (unknown key, bad value: one line on stderr);
128 + signal number (143 SIGTERM, 130 SIGINT) when a signal stopped training cleanly at a
checkpoint: rerun the same command to resume.
"""

from __future__ import annotations

import logging as pylogging
import signal
import sys
from typing import Any, Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from arsr_jax import config_lib, io, sharding, train
from arsr_jax.evaluation import protocol
from arsr_jax.jobs import recognition as recognition_job
from arsr_jax.jobs import sr as sr_job

FLAGS = flags.FLAGS

# config.task -> what runs it: (config, workdir) -> results.
TASKS: dict[str, Callable[[ml_collections.ConfigDict, io.PathLike], dict[str, Any]]] = {
    "sr": lambda config, workdir: train.train_and_evaluate(config, workdir, sr_job.sr_job(config)),
    "recognition": lambda config, workdir: train.train_and_evaluate(
        config, workdir, recognition_job.recognition_job(config)),
    "evaluate": protocol.run,
}


def run(config: ml_collections.ConfigDict, workdir: io.PathLike) -> dict[str, Any]:
  """Runs ``config.task`` in ``workdir`` (train + evaluate, or the protocol); returns its results."""
  config_lib.validate(config)
  return TASKS[config.task](config, workdir)


class _QuietLibraries(pylogging.Filter):
  """Keeps only warnings and errors from chatty libraries (Orbax logs every file it writes)."""
  NOISY = ("/orbax/", "/tensorflow_datasets/", "/grain/", "/etils/")

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or not any(s in record.pathname for s in self.NOISY)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  sharding.maybe_initialize_distributed(FLAGS.distributed)
  try:
    config_lib.validate(FLAGS.config)
  except ValueError as e:
    _exit_usage(str(e))
  logging.info("Config:\n%s", FLAGS.config)
  result = run(FLAGS.config, FLAGS.workdir)
  if result.get("stopped_by"):
    print(f"arsr_jax.main: stopped by {result['stopped_by']} at step {result['step']} with a checkpoint in "
          f"{FLAGS.workdir}; rerun the same command to resume.", file=sys.stderr)
    sys.exit(128 + signal.Signals[result["stopped_by"]].value)


def _exit_usage(message: str) -> None:
  print(f"arsr_jax.main: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a bad --config.* override is one line on stderr (exit 2), not a traceback."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    text = " ".join(str(a) for a in e.args).replace("\\n", " ").replace("\\'", "'")
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a KeyError's repr
      text = text[1:-1]
    _exit_usage(f"bad --config: {' '.join(text.split()) or type(e).__name__}")


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  config_flags.DEFINE_config_file("config", None, "Python config file, optionally file.py:variant.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory (or gs:// URL) for checkpoints, TensorBoard events and results.")
  flags.DEFINE_bool("distributed", False,
                    "Multi-process run: call jax.distributed.initialize() (TPU pods, SLURM).")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
