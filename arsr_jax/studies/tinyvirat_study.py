"""TinyVIRAT's Tables II/V protocol in one command: a classifier trained on each SR method's outputs.

  python -m arsr_jax.studies.tinyvirat_study --workdir W --data_dir D \\
      --methods 'bicubic,dvsr=W_DVSR,prog_dvsr=W_STAGE2,prog_dvsr_att=W_ATT' --classifiers i3d,resnet3d
  python -m arsr_jax.studies.tinyvirat_study --workdir W --data_dir D --size smoke --methods bicubic,dvsr=W_DVSR

For every classifier (configs/recognizer.py variant) and SR method ('bicubic' or NAME=SR_WORKDIR):
  1. train the classifier on the method's outputs (TinyVIRAT eq. 4, Sec. IV-B: "classifier is trained by
     using final DVSR network outputs"): LR clips -> frozen SR -> classifier (data.sr_input), in
     W/<classifier>/<method>;
  2. evaluate SR + classifier end to end on the eval split with the TinyVIRAT protocol (the clip path of
     configs/protocol.py: sigmoid, max over consecutive clip_length-frame windows, threshold 0.5,
     macro F1 over classes), in W/<classifier>/<method>/eval.
Then prints the macro-F1 table (one row per SR method, one column per classifier) and writes
W/table.json. Each run has its own workdir, so an interrupted study resumes where it stopped.
Sizes: 'full' = the recognizer recipes' own configs at the paper's sizes (16-frame clips; LR resized to
112 / scale px, SR output at 112 x 112: Sec. V-C "resized to 112x112"); 'smoke' = tiny networks and
4-frame clips at 16 x 16 px, a few steps (plumbing only, CPU).
The paper's classifiers start from Charades (I3D) / Kinetics (3D ResNets) weights; here they start
from scratch unless the recognizer recipe loads weights (deliberate: no such checkpoints here).
"""

from __future__ import annotations

import os
from typing import Any

from absl import flags, logging

from arsr_jax import config_lib, fileio, main as main_lib, writers
from arsr_jax.config_lib import recipe
from arsr_jax.evaluation import frozen
from arsr_jax.studies import command

FLAGS = flags.FLAGS
PAPER_INPUT = 112  # TinyVIRAT Sec. V-C: clips resized to 112x112 for the classifiers
SIZES = {
    "smoke": dict(steps=4, clip_length=4, input_size=16, batch=8, variant=",smoke"),
    "full": dict(steps=None, clip_length=16, input_size=PAPER_INPUT, batch=None, variant=""),
}


def parse_methods(spec: str) -> dict[str, str]:
  """'bicubic,dvsr=W' -> {'bicubic': 'bicubic', 'dvsr': 'W'}; names unique, workdirs SR runs."""
  out: dict[str, str] = {}
  for item in (t.strip() for t in spec.split(",") if t.strip()):
    name, _, src = item.partition("=")
    src = src or name
    if src != "bicubic" and not src:
      raise ValueError(f"Method {item!r}: use 'bicubic' or NAME=SR_WORKDIR")
    if src != "bicubic" and name == src:
      raise ValueError(f"Method {item!r}: name SR workdirs, e.g. dvsr={item}")
    if name in out:
      raise ValueError(f"Method {name!r} appears twice in {spec!r}")
    out[name] = src
  if not out:
    raise ValueError("--methods is empty; e.g. 'bicubic,dvsr=W_DVSR'")
  return out


def scale_of(src: str, default: int) -> int:
  """The SR workdir's scale (its config.json), or ``default`` for bicubic."""
  return default if src == "bicubic" else int(frozen.load_run_config(src).scale)


def runs(classifiers: list[str], methods: dict[str, str], size: str, dataset: str, data_dir: str | None,
         workdir: str, scale: int = 4, steps: int | None = None, eval_split: str = "test"
         ) -> dict[tuple[str, str], dict[str, Any]]:
  """(classifier, method) -> {'train': recognizer config, 'eval': protocol config, 'workdir': ...}."""
  s = SIZES[size]
  out = {}
  for clf in classifiers:
    for name, src in methods.items():
      sc = scale_of(src, scale)
      if s["input_size"] % sc:
        raise ValueError(f"Method {name}: scale {sc} does not divide the {s['input_size']} px classifier input")
      lr_size = s["input_size"] // sc
      data = {"data.name": dataset, "data.data_dir": data_dir, "scale": sc, "data.eval_split": eval_split}
      over = dict(data, **{"data.sr_input": src, "data.lr_size": lr_size, "data.clip_length": s["clip_length"],
                           "data.crop_size": 0})
      if steps or s["steps"]:
        n = steps or s["steps"]
        over.update({"train.num_steps": n, "train.checkpoint_every": n, "train.log_every": max(1, n // 4)})
      if s["batch"]:
        over.update({"train.batch_size": s["batch"], "eval.batch_size": s["batch"]})
      if size == "smoke" and clf in ("resnet3d", "wide_resnet3d"):
        over["recognizer.width"] = 4  # tiny, for speed: plumbing only
      rec = recipe("recognizer", clf + s["variant"], over)
      # The SR output (input_size px) goes to the classifier at the recipe's own input size when it has
      # one (I3D: 224 px for its 7x7 pooling), else as it is.
      rec.data.resize = int(rec.data.resize) or s["input_size"]
      run_dir = os.path.join(workdir, clf, name)
      ev = recipe("protocol", "", dict(data, **{
          "protocol.clip": run_dir, "protocol.methods": src if src == "bicubic" else f"{name}={src}",
          "protocol.lr_size": lr_size, "protocol.input_size": rec.data.resize,
          "protocol.clip_length": s["clip_length"],
          "eval.batch_size": rec.eval.batch_size, "protocol.profiles": 0}))
      out[(clf, name)] = {"train": rec, "eval": ev, "workdir": run_dir}
  return out


def study(workdir: str, classifiers: list[str], methods: dict[str, str], size: str = "full",
          dataset: str = "tiny_virat/v1", data_dir: str | None = None, scale: int = 4,
          steps: int | None = None, eval_split: str = "test") -> dict[str, Any]:
  """Trains (or resumes) every classifier on every method's outputs, evaluates each, prints the table."""
  table: dict[str, dict[str, float]] = {name: {} for name in methods}
  metric = "clip_macro_f1"
  for (clf, name), r in runs(classifiers, methods, size, dataset, data_dir, workdir, scale, steps,
                             eval_split).items():
    logging.info("=== tinyvirat study: %s on %s outputs ===", clf, name)
    trained = main_lib.run(r["train"], r["workdir"])
    if trained.get("finished") is False:  # stopped early (signal, steps_per_run): never evaluate half a run
      print(f"Stopped while training {r['workdir']} (step {trained['step']}); rerun the same command to resume.")
      return {"finished": False, "workdir": r["workdir"], "step": trained["step"]}
    res = main_lib.run(r["eval"], os.path.join(r["workdir"], "eval"))
    scores = res["methods"]["bicubic" if methods[name] == "bicubic" else name]
    # Multi-label data (TinyVIRAT): macro F1; single-label data (UCF101, HMDB51; Tables III-IV): accuracy.
    metric = "clip_macro_f1" if "clip_macro_f1" in scores else "clip_accuracy"
    table[name][clf] = float(scores[metric])
  result = {"dataset": dataset, "split": eval_split, "size": size, "metric": metric,
            "classifiers": classifiers, "methods": methods, "table": table}
  fileio.write_json(fileio.path(workdir) / "table.json", result)
  print(format_table(table, classifiers, dataset, metric))
  return result


def format_table(table: dict[str, dict[str, float]], classifiers: list[str], dataset: str,
                 metric: str = "clip_macro_f1") -> str:
  """Markdown: one row per SR method, the metric (%) per classifier trained on that method's outputs."""
  what = "macro F1" if metric == "clip_macro_f1" else "accuracy"
  rows = [[name, *(f"{100 * scores[c]:.2f}" for c in classifiers)] for name, scores in table.items()]
  return (f"\nTinyVIRAT protocol on {dataset}: {what} (%), classifier trained and tested on each "
          "method's outputs\n" + writers.markdown_table(["SR method", *classifiers], rows))


def main(argv):
  if len(argv) > 1:
    _exit_usage(f"unexpected arguments {argv[1:]}")
  if not FLAGS.workdir:
    _exit_usage("--workdir is required")
  classifiers = [c for c in FLAGS.classifiers.split(",") if c]
  writers.quiet_libraries()
  try:  # every run's config before any training: bad methods, workdirs or classifiers fail here
    if not classifiers:
      raise ValueError("--classifiers is empty; e.g. i3d,resnet3d")
    methods = parse_methods(FLAGS.methods)
    for r in runs(classifiers, methods, FLAGS.size, FLAGS.dataset, FLAGS.data_dir, FLAGS.workdir, FLAGS.scale,
                  FLAGS.steps, FLAGS.eval_split).values():
      config_lib.validate(r["train"])
      config_lib.validate(r["eval"])
  except (ValueError, FileNotFoundError) as e:
    _exit_usage(str(e).splitlines()[0] if str(e) else type(e).__name__)
  try:
    study(FLAGS.workdir, classifiers, methods, FLAGS.size, FLAGS.dataset, FLAGS.data_dir, FLAGS.scale,
          FLAGS.steps, FLAGS.eval_split)
  except config_lib.Mismatch as e:  # e.g. an SR workdir of another scale than the study's data
    _exit_usage(str(e))


def _exit_usage(message: str) -> None:
  command.usage_error("arsr_jax.studies.tinyvirat_study", message)


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  flags.DEFINE_string("workdir", None, "Directory of the study (one sub-directory per run).")
  flags.DEFINE_string("methods", "bicubic", "Comma-separated 'bicubic' or NAME=SR_WORKDIR.")
  flags.DEFINE_string("classifiers", "i3d", "Comma-separated configs/recognizer.py clip variants.")
  flags.DEFINE_enum("size", "full", list(SIZES), "full: the recipes at the paper's sizes; smoke: plumbing.")
  flags.DEFINE_string("dataset", "tiny_virat/v1", "TFDS dataset (tiny_virat/v1 or v2).")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir (None = TFDS default).")
  flags.DEFINE_string("eval_split", "test", "Labelled split the table is measured on (v2: 'val').")
  flags.DEFINE_integer("scale", 4, "Bicubic's factor (SR methods use their own; all must divide 112).")
  flags.DEFINE_integer("steps", None, "Training steps per classifier (default: the size's / recipe's).")


if __name__ == "__main__":
  define_flags()
  command.run(main, "arsr_jax.studies.tinyvirat_study")
