"""The studies' command lines: a usage error is one line on stderr and exit status 2, before any work."""

import os
import subprocess
import sys

import pytest

from arsr_jax.studies import command

STUDIES = {  # module -> (arguments, the one line it prints)
    "arsr_jax.studies.study": ([], "arsr_jax.studies.study: --workdir is required"),
    "arsr_jax.studies.tinyvirat_study": ([], "arsr_jax.studies.tinyvirat_study: --workdir is required"),
    "arsr_jax.studies.real_study": ([], "arsr_jax.studies.real_study: --workdir and --videos are required"),
    "arsr_jax.studies.corpus_study": (["--workdir", "w"], "arsr_jax.studies.corpus_study: --workdir and --videos "
                                      "are required"),
    "arsr_jax.studies.corpus_search": ([], "arsr_jax.studies.corpus_search: --study and --videos are required"),
    "arsr_jax.studies.export_pretrained": ([], "arsr_jax.studies.export_pretrained: --study (the corpus study's "
                                           "workdir) is required"),
}
ALIASES = {"arsr_jax.study": "arsr_jax.studies.study", "arsr_jax.real_study": "arsr_jax.studies.real_study",
           "arsr_jax.tinyvirat_study": "arsr_jax.studies.tinyvirat_study",
           "arsr_jax.export_pretrained": "arsr_jax.studies.export_pretrained"}


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        env=dict(os.environ), timeout=300)


def _lines(text: str) -> list[str]:
  return [line for line in text.splitlines() if line.strip()]


def test_usage_error_is_one_line_and_exit_status_2(capsys):
  with pytest.raises(SystemExit) as e:
    command.usage_error("prog", "--x is\n  required")
  assert e.value.code == 2 and capsys.readouterr().err == "prog: --x is required\n"


@pytest.mark.parametrize("module", ["arsr_jax.studies.study", "arsr_jax.studies.corpus_study"])
def test_a_missing_flag_exits_2_with_one_line(module):
  args, line = STUDIES[module]
  r = _run(module, *args)
  assert (r.returncode, _lines(r.stderr), r.stdout) == (2, [line], "")


def test_a_bad_flag_value_exits_2_with_one_line():
  r = _run("arsr_jax.studies.study", "--workdir", "w", "--size", "huge")
  assert r.returncode == 2 and _lines(r.stderr) == [
      "arsr_jax.studies.study: flag --size=huge: value should be one of <smoke|cpu|full>"]


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(set(STUDIES) - {"arsr_jax.studies.study", "arsr_jax.studies.corpus_study"})
                         + sorted(ALIASES))
def test_every_study_and_old_name_exits_2_with_one_line(module):
  args, line = STUDIES[ALIASES.get(module, module)]
  r = _run(module, *args)
  assert (r.returncode, _lines(r.stderr), r.stdout) == (2, [line], "")
