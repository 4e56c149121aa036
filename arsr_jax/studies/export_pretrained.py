"""Writes the shipped pretrained models (arsr_jax/pretrained/) from a finished corpus study.

  python -m arsr_jax.studies.corpus_study --workdir workdirs/real13 --videos ../shared/data/corpus \
      --heldout ../shared/data/clips
  python -m arsr_jax.studies.export_pretrained --study workdirs/real13

Per scale, the learned method with the lowest mean KL(HR || method) on the corpus' own test clips
among those beating bicubic's PSNR-Y there (set 'corpus_test'; ../shared/data/clips is never used
to choose) is stored as
``pretrained/corpus_x{s}.msgpack`` (flax msgpack of its variables, float32) with a card
``corpus_x{s}.json`` (recipe, network, data, steps, the study's rows of both held-out sets, and the
commands above).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import serialization

from arsr_jax import fileio, models, precision, pretrained, sharding
from arsr_jax.studies import command, corpus_search
from arsr_jax.evaluation import frozen

FLAGS = flags.FLAGS
SELECT_SET = "corpus_test"


def choose(results: dict, scale: int, runs: list[str] | None = None) -> str:
  """The learned method with the lowest KL(HR||method) on the corpus test clips at ``scale`` among
  those whose PSNR-Y beats bicubic there (a shipped SR model must at least beat bicubic); ``runs``:
  only these (the study's trained runs, not peers or the shipped model judged beside them)."""
  rows = results["tables"][SELECT_SET][f"x{scale}"]["methods"]
  learned = {m: r["kl_from_hr"] for m, r in rows.items()
             if m != "bicubic" and r["psnr_y"] > rows["bicubic"]["psnr_y"] and (runs is None or m in runs)}
  if not learned:
    raise ValueError(f"x{scale}: no learned method beats bicubic PSNR-Y on {SELECT_SET}; nothing to ship")
  return min(learned, key=learned.get)


def export(study: str, scale: int, out_dir: str, command: str) -> dict:
  results = fileio.read_json(fileio.path(study) / "results.json")
  scale_dir = os.path.join(study, f"x{scale}")
  method = choose(results, scale, [m for m in os.listdir(scale_dir) if (fileio.path(scale_dir) / m / "config.json").exists()])
  workdir = os.path.join(scale_dir, method)
  cfg = frozen.load_run_config(workdir)
  sr = frozen.load_sr(workdir, sharding.replicated(sharding.make_mesh()), jnp.float32)
  kwargs = {k: v for k, v in precision.net_kwargs(cfg.model, models.MODELS, None).items() if k != "dtype"}
  name = pretrained.default(scale)
  variables = jax.tree.map(lambda x: np.asarray(x, np.float32), jax.device_get(sr.variables))
  blob = serialization.msgpack_serialize(serialization.to_state_dict(variables))
  fileio.write_bytes(fileio.path(out_dir) / f"{name}.msgpack", blob)
  numbers = {s: {"clips": t[f"x{scale}"]["videos"], "windows": t[f"x{scale}"]["windows"],
                 method: t[f"x{scale}"]["methods"][method], "bicubic": t[f"x{scale}"]["methods"]["bicubic"]}
             for s, t in results["tables"].items() if f"x{scale}" in t}
  card = {"name": name, "scale": scale, "method": method,
          "recipe": {"vdsr": "configs/vdsr.py:smoke (MSE)", "sosr": "configs/sosr_vdsr.py:smoke (WMSE)",
                     "tosr": "configs/tosr1_vdsr.py:smoke", "consistency": "configs/sosr_vdsr_consistency.py"}.get(
                         method, f"arsr_jax/studies/corpus_search.py candidate {method!r}: MSE run, then "
                         "configs/sosr_vdsr_consistency.py fine-tuned from it")
                    + " with arsr_jax.studies.corpus_study's overrides (config.json below)",
          "model": {"name": cfg.model.name, "kwargs": kwargs},
          "parameters": int(sum(np.size(x) for x in jax.tree.leaves(variables["params"]))),
          "input": "frames (..., h, w, 3) RGB in [0, 1]; output (..., h*s, w*s, 3)",
          "data": {"dataset": cfg.data.name, "source": "../shared/data/corpus (48 real-camera clips, see its SOURCES.md)",
                   "split": "by clip: cdvl_sr corpus_x4/x8 test 15%, validation 10% (file-name hash)"},
          "steps": int(sr.step),
          "chosen_by": f"lowest mean KL(HR||method) on {SELECT_SET} among the study's methods beating bicubic PSNR-Y",
          "study_numbers": numbers, "config": cfg.to_dict(),
          "reproduce": [command, f"python -m arsr_jax.studies.export_pretrained --study {study}"]}
  seed = corpus_search.provenance(workdir)
  if seed:  # derived from released third-party weights: their source and license travel with the card
    card["provenance"], card["license"] = seed, seed["license"]
  if method in corpus_search.CANDIDATES:
    card["reproduce"][1:1] = [f"python -m arsr_jax.studies.corpus_search --study {study} --videos ../shared/data/corpus "
                              f"--scale {scale} --stages train,choose,judge --heldout ../shared/data/clips"]
  fileio.write_json(fileio.path(out_dir) / f"{name}.json", card)
  print(f"{name}: {method} from {workdir} (step {sr.step}), {len(blob) / 1e6:.2f} MB")
  return card


def main(argv):
  del argv
  if not FLAGS.study:
    raise app.UsageError("--study (the corpus study's workdir) is required")
  for scale in (int(s) for s in FLAGS.scales.split(",")):
    export(FLAGS.study, scale, FLAGS.out, FLAGS.study_command.format(study=FLAGS.study))


def define_flags() -> None:
  flags.DEFINE_string("study", None, "Workdir of a finished `python -m arsr_jax.studies.corpus_study` run.")
  flags.DEFINE_string("scales", "4,8", "Comma-separated scales to export.")
  flags.DEFINE_string("out", pretrained.DIRECTORY, "Where the .msgpack and .json files go.")
  flags.DEFINE_string("study_command", "python -m arsr_jax.studies.corpus_study --workdir {study} --videos "
                      "../shared/data/corpus --heldout ../shared/data/clips",
                      "The study's command line, recorded in the cards.")


if __name__ == "__main__":
  define_flags()
  command.run(main, "arsr_jax.studies.export_pretrained")
