"""The package's layering: every module imports only its own layer or those below, with no cycle.

  1 core      config_lib, precision, io, sharding, checkpointing, writers, optim, weights, hub, workdir_lock,
              save_failures, preemption
  2 pure      models, flow, recognition (networks), losses, perceptual, data, metrics
  3 steps     steps (train/eval/protocol step functions)
  4 jobs      train (the loop), jobs, evaluation (evaluators, protocol, frozen restore, figures)
  5 entry     main, study, real_study, enhance, flow.__main__ (CLIs), cli (console commands)

Read from the source with ``ast`` (no import runs), so a module-level or a
function-local import counts alike.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "arsr_jax"

LAYERS = {  # module prefix -> layer; the longest matching prefix decides
    "arsr_jax": 1,
    "arsr_jax.config_lib": 1, "arsr_jax.precision": 1, "arsr_jax.io": 1, "arsr_jax.sharding": 1,
    "arsr_jax.checkpointing": 1, "arsr_jax.writers": 1, "arsr_jax.optim": 1, "arsr_jax.weights": 1,
    "arsr_jax.hub": 1, "arsr_jax.workdir_lock": 1, "arsr_jax.save_failures": 1, "arsr_jax.preemption": 1,
    "arsr_jax.models": 2, "arsr_jax.flow": 2, "arsr_jax.recognition": 2, "arsr_jax.losses": 2,
    "arsr_jax.perceptual": 2, "arsr_jax.data": 2, "arsr_jax.metrics": 2, "arsr_jax.pretrained": 2,
    "arsr_jax.steps": 3,
    "arsr_jax.train": 4, "arsr_jax.jobs": 4, "arsr_jax.evaluation": 4, "arsr_jax.inference": 4,
    "arsr_jax.main": 5, "arsr_jax.study": 5, "arsr_jax.real_study": 5, "arsr_jax.enhance": 5,
    "arsr_jax.tinyvirat_study": 5,
    "arsr_jax.export_pretrained": 5, "arsr_jax.corpus_search": 5,
    "arsr_jax.flow.__main__": 5, "arsr_jax.cli": 5,
}


def module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def layer_of(module: str) -> int:
  best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
  if best is None:
    raise AssertionError(f"{module} has no layer: add it to LAYERS (and to the README's Architecture)")
  return LAYERS[best]


def imports_of(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The arsr_jax modules ``path`` imports (``from pkg import mod`` resolves to the module)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith("arsr_jax")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("arsr_jax"):
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        found.add(sub if sub in modules else node.module)
  return found


def graph() -> dict[str, set[str]]:
  paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
  return {m: imports_of(p, set(paths)) - {m} for m, p in paths.items()}


def test_every_module_has_a_layer():
  for module in graph():
    layer_of(module)


def test_no_module_imports_a_higher_layer():
  bad = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
         for m, deps in graph().items() for d in deps if layer_of(d) > layer_of(m)]
  assert not bad, "\n".join(bad)


def test_no_import_cycle():
  g = graph()
  # Package __init__ files import their own submodules; a submodule importing its package back is
  # fine only if the package's __init__ does not import it (that is the cycle checked here).
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(m: str) -> None:
    state[m] = 1
    stack.append(m)
    for d in sorted(g.get(m, ())):
      if d not in g:
        continue
      if state.get(d) == 1:
        pytest.fail("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
      if d not in state:
        visit(d)
    stack.pop()
    state[m] = 2

  for m in sorted(g):
    if m not in state:
      visit(m)


def test_the_checker_sees_a_violation(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from arsr_jax import train\nimport arsr_jax.main\n")
  assert imports_of(bad, {"arsr_jax.train", "arsr_jax.main"}) == {"arsr_jax.train", "arsr_jax.main"}
  assert layer_of("arsr_jax.train") > layer_of("arsr_jax.losses")
