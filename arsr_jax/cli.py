"""Console commands (pyproject.toml's [project.scripts]): each runs a module as ``python -m`` does.

  arsr-train               python -m arsr_jax.main
  arsr-enhance             python -m arsr_jax.enhance
  arsr-degrade             python -m arsr_jax.degrade
  arsr-flow                python -m arsr_jax.flow
  arsr-study               python -m arsr_jax.studies.study
  arsr-real-study          python -m arsr_jax.real_study (studies.real_study; --size corpus: studies.corpus_study)
  arsr-corpus-study        python -m arsr_jax.studies.corpus_study
  arsr-export-pretrained   python -m arsr_jax.studies.export_pretrained
  arsr-prepare             python -m tfds_builders.prepare
  arsr-upgrade             python -m arsr_jax.upgrade

Running the module's ``__main__`` block (runpy) keeps one definition of each command's flags,
parsing and exit statuses: the module's own.
"""

from __future__ import annotations

import runpy


def _run_module(name: str) -> None:
  runpy.run_module(name, run_name="__main__", alter_sys=True)


def train() -> None:
  _run_module("arsr_jax.main")


def enhance() -> None:
  _run_module("arsr_jax.enhance")


def degrade() -> None:
  _run_module("arsr_jax.degrade")


def flow() -> None:
  _run_module("arsr_jax.flow")


def study() -> None:
  _run_module("arsr_jax.studies.study")


def real_study() -> None:
  _run_module("arsr_jax.real_study")


def corpus_study() -> None:
  _run_module("arsr_jax.studies.corpus_study")


def export_pretrained() -> None:
  _run_module("arsr_jax.studies.export_pretrained")


def prepare() -> None:
  _run_module("tfds_builders.prepare")


def upgrade() -> None:
  _run_module("arsr_jax.upgrade")


# Command name -> function, as in pyproject.toml (tests/test_packaging.py checks they agree).
COMMANDS = {"arsr-train": train, "arsr-enhance": enhance, "arsr-degrade": degrade, "arsr-flow": flow,
            "arsr-study": study, "arsr-real-study": real_study, "arsr-corpus-study": corpus_study,
            "arsr-export-pretrained": export_pretrained, "arsr-upgrade": upgrade,
            "arsr-prepare": prepare}
