"""``python -m arsr_jax.upgrade WORKDIR``: converts an SR workdir of the older unrolled nets once.

VDSR, RRDBNet and RCAN once ran their blocks unrolled, one parameter entry per block
(``conv1`` .. ``conv18``, ``body_0`` .. ``body_22``, ``group_G/rcab_B``); they now run them as
one ``nn.scan`` with stacked parameters (models/legacy_layout.py). A run on such a workdir stops
with one line naming this command. It reads the newest intact checkpoint (step N), stacks the
generator's parameters, EMA and optimizer moments, and writes them as a new ``checkpoints/N``
with that checkpoint's data-iterator state and metadata (checksums of the new arrays). The old
``checkpoints/`` folder is moved, unchanged, to ``checkpoints_before_upgrade/``; ``config.json``
loses ``model.scan`` (the unrolled nets' switch), its old copy kept there too. Training and
evaluation then resume from step N as from any checkpoint.

Exit status: 0 upgraded; 2 with one line when WORKDIR is not an SR workdir, needs no upgrade,
or was upgraded before (``checkpoints_before_upgrade/`` exists).
"""

from __future__ import annotations

import sys

import orbax.checkpoint as ocp
from absl import app, logging

from arsr_jax import checkpointing, config_lib, fileio, models
from arsr_jax.models import legacy_layout

BACKUP = "checkpoints_before_upgrade"


class NothingToUpgrade(ValueError):
  """WORKDIR is not an SR workdir of the unrolled nets (nothing was changed)."""


def upgrade(workdir: fileio.PathLike) -> int:
  """Converts ``workdir`` in place (see the module docstring); returns the converted step."""
  workdir = fileio.path(workdir)
  directory, backup = workdir / "checkpoints", workdir / BACKUP
  if not (workdir / "config.json").exists() or not checkpointing.steps(directory):
    raise NothingToUpgrade(f"{workdir} is not a workdir with checkpoints (no config.json or checkpoints/N)")
  config = fileio.read_json(workdir / "config.json")
  if config.get("task", "sr") != "sr":
    raise NothingToUpgrade(f"{workdir} holds a {config.get('task')!r} run; only SR workdirs have older layouts")
  if backup.exists():
    raise NothingToUpgrade(f"{workdir} was upgraded before ({backup} exists); nothing was changed")
  model_cfg = {k: v for k, v in config["model"].items() if k not in ("name", "scan")}
  model = models.build_model(config["model"]["name"], int(config["scale"]), **model_cfg)
  layouts = legacy_layout.layouts(model)
  step, raw = checkpointing.load_latest_state(workdir)
  if not layouts or not legacy_layout.is_per_block(raw["params"]["generator"], layouts):
    raise NothingToUpgrade(f"{workdir}: the checkpoint at step {step} already has this {config['model']['name']}'s "
                           "parameter layout; nothing to upgrade")
  state = legacy_layout.upgrade_state(raw, layouts)
  meta = checkpointing.read_meta(directory, step)
  meta.get("model", {}).pop("scan", None)
  meta["checksums"] = checkpointing.checksums(state)

  staging = workdir / "checkpoints.upgrading"
  if staging.exists():
    staging.rmtree()  # a previous attempt that stopped before the swap below
  write_checkpoint(staging, step, state, meta)
  _copy_tree(directory / str(step) / "data", staging / str(step) / "data")
  directory.rename(backup)
  staging.rename(directory)
  if "scan" in config["model"]:
    fileio.write_text(backup / "config.json", (workdir / "config.json").read_text())
    del config["model"]["scan"]
    fileio.write_json(workdir / "config.json", config)
  logging.info("Upgraded %s: step %d in the stacked layout; the old checkpoints are in %s", workdir, step, backup)
  return step


def write_checkpoint(directory, step: int, state, meta: dict) -> None:
  """Writes ``state`` (a raw tree of nested dicts and lists, as ``load_latest_state`` returns) and
  ``meta`` as checkpoint ``step`` in ``directory``, in the format ``checkpointing.save`` writes."""
  with ocp.CheckpointManager(directory, item_names=checkpointing.ITEMS,
                             options=ocp.CheckpointManagerOptions(create=True)) as mngr:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()


def _copy_tree(src, dst) -> None:
  """Copies the files under ``src`` (absent: nothing) to ``dst`` (local paths or URLs)."""
  src, dst = fileio.path(src), fileio.path(dst)
  if not src.exists():
    return
  dst.mkdir(parents=True, exist_ok=True)
  for f in src.iterdir():
    if f.is_dir():
      _copy_tree(f, dst / f.name)
    else:
      f.copy(dst / f.name)


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    print("usage: python -m arsr_jax.upgrade WORKDIR", file=sys.stderr)
    sys.exit(2)
  try:
    step = upgrade(argv[1])
  except (NothingToUpgrade, FileNotFoundError, config_lib.Mismatch, checkpointing.CheckpointDamaged) as e:
    print(f"arsr_jax.upgrade: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(2)
  print(f"arsr_jax.upgrade: {argv[1]} now resumes from step {step} in the stacked layout "
        f"(old checkpoints in {fileio.path(argv[1]) / BACKUP})")


if __name__ == "__main__":
  app.run(main)
