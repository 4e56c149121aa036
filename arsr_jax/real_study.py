"""``python -m arsr_jax.real_study`` (as the README, the console script and the shipped model cards name
it): runs arsr_jax.studies.real_study, or with ``--size corpus`` arsr_jax.studies.corpus_study."""

import runpy
import sys


def _corpus(args: list[str]) -> bool:
  """Whether ``args`` ask for the corpus study; removes that ``--size corpus`` from them."""
  for i, a in enumerate(args):
    if a in ("--size=corpus", "-size=corpus"):
      del args[i]
      return True
    if a in ("--size", "-size") and args[i + 1:i + 2] == ["corpus"]:
      del args[i:i + 2]
      return True
  return False


if __name__ == "__main__":
  module = "corpus_study" if _corpus(sys.argv) else "real_study"
  runpy.run_module(f"arsr_jax.studies.{module}", run_name="__main__", alter_sys=True)
