"""The packages' layering: every module imports only its own layer or those below, with no cycle.

  1 core      config_lib, precision, fileio, sharding, checkpointing, writers, optim, weights, hub, workdir_lock,
              save_failures, preemption
    1.5 media video files and the degradation model (media.video, media.degrade)
  2 pure      models, flow, recognition (networks), losses, perceptual, metrics, pretrained
    2.3       tfds_builders (the datasets: read video and degrade with media, flow parameters from flow)
    2.6 input data (data.pipeline, data.recognition_data: the input pipelines that read the datasets)
  3 steps     steps (train/eval/protocol step functions)
  4 jobs      train (the loop), jobs, evaluation (evaluators, protocol, frozen restore, figures), inference
  5 entry     main, enhance (+ enhance_io, enhance_frames, enhance_recognize), degrade, flow.__main__ (CLIs),
              cli (console commands), upgrade, the old study command names;
              studies (the project's studies, on top of the library: nothing below imports them)

The same holds between packages (``arsr_jax.<package>`` and ``tfds_builders`` as a whole): their
arrows run one way, with no cycle.
Read from the source with ``ast`` (no import runs), so a module-level or a
function-local import counts alike.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("arsr_jax", "tfds_builders")

LAYERS = {  # module prefix -> layer; the longest matching prefix decides
    "arsr_jax": 1,
    "arsr_jax.config_lib": 1, "arsr_jax.precision": 1, "arsr_jax.fileio": 1, "arsr_jax.sharding": 1,
    "arsr_jax.checkpointing": 1, "arsr_jax.writers": 1, "arsr_jax.optim": 1, "arsr_jax.weights": 1,
    "arsr_jax.hub": 1, "arsr_jax.workdir_lock": 1, "arsr_jax.save_failures": 1, "arsr_jax.preemption": 1,
    "arsr_jax.media": 1.5,
    "arsr_jax.models": 2, "arsr_jax.flow": 2, "arsr_jax.recognition": 2, "arsr_jax.losses": 2,
    "arsr_jax.perceptual": 2, "arsr_jax.metrics": 2, "arsr_jax.pretrained": 2,
    "tfds_builders": 2.3, "arsr_jax.data": 2.6,
    "arsr_jax.steps": 3,
    "arsr_jax.train": 4, "arsr_jax.jobs": 4, "arsr_jax.evaluation": 4, "arsr_jax.inference": 4,
    "arsr_jax.main": 5, "arsr_jax.enhance": 5, "arsr_jax.flow.__main__": 5, "arsr_jax.cli": 5,
    "arsr_jax.enhance_io": 5, "arsr_jax.enhance_frames": 5, "arsr_jax.enhance_recognize": 5, "arsr_jax.degrade": 5,
    "arsr_jax.study": 5, "arsr_jax.real_study": 5, "arsr_jax.tinyvirat_study": 5, "arsr_jax.export_pretrained": 5,
    "arsr_jax.studies": 5, "arsr_jax.upgrade": 5,
}


def module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def layer_of(module: str) -> int:
  best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
  if best is None:
    raise AssertionError(f"{module} has no layer: add it to LAYERS (and to the README's Architecture)")
  return LAYERS[best]


def imports_of(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The arsr_jax / tfds_builders modules ``path`` imports (``from pkg import mod`` resolves to the module)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith(PACKAGES)}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGES):
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        found.add(sub if sub in modules else node.module)
  return found


def graph() -> dict[str, set[str]]:
  paths = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
  return {m: imports_of(p, set(paths)) - {m} for m, p in paths.items()}


def test_every_module_has_a_layer():
  for module in graph():
    layer_of(module)


def test_no_module_imports_a_higher_layer():
  bad = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
         for m, deps in graph().items() for d in deps if layer_of(d) > layer_of(m)]
  assert not bad, "\n".join(bad)


def package_of(module: str) -> str:
  """The package a module belongs to: ``arsr_jax.<first name>`` (a top-level module is its own), or
  ``tfds_builders`` as a whole."""
  parts = module.split(".")
  return "tfds_builders" if parts[0] == "tfds_builders" else ".".join(parts[:2])


def package_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
  out: dict[str, set[str]] = {}
  for m, deps in g.items():
    out.setdefault(package_of(m), set()).update(package_of(d) for d in deps if package_of(d) != package_of(m))
  return out


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
  """One cycle of ``g`` as [a, b, ..., a], or None."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(m: str) -> list[str] | None:
    state[m] = 1
    stack.append(m)
    for d in sorted(g.get(m, ())):
      if d not in g:
        continue
      if state.get(d) == 1:
        return stack[stack.index(d):] + [d]
      if d not in state:
        found = visit(d)
        if found:
          return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(g):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def test_no_import_cycle():
  # Package __init__ files import their own submodules; a submodule importing its package back is
  # fine only if the package's __init__ does not import it (that is the cycle checked here).
  cycle = find_cycle(graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_packages_import_one_way():
  """No two packages import each other, directly or around a loop (e.g. the input pipelines in data/
  read the datasets of tfds_builders, so tfds_builders must not import data/)."""
  cycle = find_cycle(package_graph(graph()))
  assert cycle is None, "packages import each other: " + " -> ".join(cycle)


def test_the_checker_sees_a_violation(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from arsr_jax import train\nimport arsr_jax.main\n")
  assert imports_of(bad, {"arsr_jax.train", "arsr_jax.main"}) == {"arsr_jax.train", "arsr_jax.main"}
  assert layer_of("arsr_jax.train") > layer_of("arsr_jax.losses")
  # Two packages importing each other through different modules (what arsr_jax.data and tfds_builders
  # did while video.py and degrade.py lived in data/): no module cycle, but a package cycle.
  g = {"arsr_jax.data.pipeline": {"tfds_builders.cdvl_sr"}, "tfds_builders.cdvl_sr": {"arsr_jax.data.degrade"},
       "arsr_jax.data.degrade": set()}
  assert find_cycle(g) is None
  assert find_cycle(package_graph(g)) == ["arsr_jax.data", "tfds_builders", "arsr_jax.data"]


def test_datasets_sit_between_media_and_the_input_pipeline_and_studies_on_top():
  """tfds_builders reads and degrades video with arsr_jax.media and is read by the input pipelines
  (arsr_jax.data), never the other way round; the studies sit on top, beside the entry points."""
  g = graph()
  assert "arsr_jax.media.degrade" in g["tfds_builders.video_prep"] and "tfds_builders" in g["arsr_jax.data.pipeline"]
  assert layer_of("arsr_jax.media.degrade") < layer_of("arsr_jax.models.vdsr") < layer_of("tfds_builders.cdvl_sr")
  assert layer_of("tfds_builders.cdvl_sr") < layer_of("arsr_jax.data.pipeline") < layer_of("arsr_jax.steps.sr")
  assert not any(d.startswith("arsr_jax.data") for m, deps in g.items() if m.startswith("tfds_builders")
                 for d in deps)
  assert layer_of("arsr_jax.studies.corpus_study") > layer_of("arsr_jax.inference")
