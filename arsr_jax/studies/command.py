"""The studies' command lines: absl flags, with a usage error as one line on stderr and exit status 2.

  if __name__ == "__main__":
    define_flags()
    command.run(main, "arsr_jax.studies.study")

As ``arsr_jax.main`` and ``arsr_jax.enhance``: a bad or missing flag, or an ``app.UsageError`` raised
by ``main`` (e.g. ``--workdir is required``), prints ``PROGRAM: message`` and exits 2 before any work;
absl alone would print the whole help and exit 1.
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags


def usage_error(program: str, message: str) -> None:
  """Exits 2 with ``PROGRAM: message`` (white space folded to one line) on stderr."""
  print(f"{program}: {' '.join(str(message).split()) or 'usage error'}", file=sys.stderr)
  sys.exit(2)


def run(main: Callable[[list[str]], None], program: str) -> None:
  """``app.run(main)`` with flag errors and ``app.UsageError`` as one line, exit status 2."""

  def parse(argv: list[str]) -> list[str]:
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      usage_error(program, str(e))

  def checked(argv: list[str]) -> None:
    try:
      main(argv)
    except app.UsageError as e:
      usage_error(program, str(e))

  app.run(checked, flags_parser=parse)
