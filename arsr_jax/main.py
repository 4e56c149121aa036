"""Entry point: ``python -m arsr_jax.main --config configs/sosr_vdsr.py[:smoke] --workdir DIR``.

The config's ``task`` says what runs: an SR recipe (configs/<recipe>.py), a recognizer
(configs/recognizer.py) or the recognition-based evaluation (configs/evaluate.py).

Any config value can be overridden on the command line, e.g.
``--config.train.batch_size=8`` or ``--config.mode=eval``.
"""

from __future__ import annotations

import logging as pylogging
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
  logging.info("Config:\n%s", FLAGS.config)
  run(FLAGS.config, FLAGS.workdir)


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
  app.run(main)
