"""Entry point: ``python -m arsr_jax.main --config configs/sosr_vdsr.py[:smoke] --workdir DIR``.

The config's ``task`` says what runs: an SR recipe (configs/<recipe>.py), a recognizer
(configs/recognizer.py) or the recognition-based evaluation (configs/evaluate.py).

Any config value can be overridden on the command line, e.g.
``--config.train.batch_size=8`` or ``--config.mode=eval``.
"""

import logging as pylogging

from absl import app, flags, logging
from ml_collections import config_flags

from arsr_jax import sharding, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Python config file, optionally file.py:variant.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and results.")
flags.DEFINE_bool("distributed", False, "Multi-process run: call jax.distributed.initialize() (TPU pods, SLURM).")
flags.mark_flags_as_required(["config", "workdir"])


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
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
