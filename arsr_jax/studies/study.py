"""The papers' claims checked on the embedded dataset, in one command.

  python -m arsr_jax.studies.study --workdir workdirs/study            # ~15-25 min on a 2-core CPU
  python -m arsr_jax.studies.study --workdir DIR --size smoke           # a minute: plumbing only

Trains, each in its own sub-workdir (so an interrupted study resumes where it stopped):
  recognizers on HR clips: TSN spatial (RGB) and temporal (TV-L1 flow stacks) streams;
  SR (4x): VDSR (MSE), SoSR (VDSR + flow-weighted MSE), ToSR1 (VDSR, siamese warp loss);
then runs the evaluation protocol (configs/protocol.py) for bicubic, VDSR, SoSR, ToSR,
SoSR+ToSR (SoSR frames to the spatial stream, ToSR frames to the temporal one) and HR,
prints the analog of the ICCV'19 paper's Table 3 and checks its claims:
  SoSR > VDSR on the spatial stream; ToSR > VDSR on the temporal stream;
  SoSR+ToSR is the best SR fusion; HR is the ceiling.
Results: DIR/eval/results.json (+ plots/), DIR/claims.json. The default size is CPU-sized (64x64 clips
of synthetic_actions/study, small networks); --size full trains the recipes' own full configs
(configs/*.py, no variant) on synthetic_actions/default, overriding only dataset and run length
(and, for the TSN recognizers, no flips and 112 px crops of the 128 px frames). Every size evaluates
one centre view per segment: mirrored views would swap the synthetic left/right motion classes.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from absl import app, flags, logging

from arsr_jax import config_lib, fileio, main as main_lib, writers
from arsr_jax.config_lib import recipe
from arsr_jax.steps import recognition as rec_steps
from arsr_jax.studies import command

FLAGS = flags.FLAGS


# Run lengths and data per size. smoke/cpu shrink the networks too (the recipes' smoke variants
# with the overrides below); full runs the recipes' own full configs (paper network sizes, patches,
# batches, optimizers, schedules, TV-L1 at OpenCV defaults) with only the dataset and the run length
# chosen here (rec_steps None = the recipe's own, TSN's 4,500 / 20,000 iterations).
SIZES = {
    "smoke": dict(rec_steps=20, sr_steps=20, data="synthetic_actions/small", segments=3, flow_stack=3,
                  width=8, layers=4, features=16, batch=8, crop=48),
    "cpu": dict(rec_steps=800, sr_steps=1500, data="synthetic_actions/study", segments=5, flow_stack=5,
                width=16, layers=8, features=32, batch=16, crop=48),
    "full": dict(rec_steps=None, sr_steps=20000, data="synthetic_actions/default"),
}
SIZE_HELP = ("smoke: plumbing only (tiny nets, 20 steps); cpu: the recipes' smoke variants with small "
             "networks (ResNet-18 x16 TSN, 8-layer VDSR), Adam and light TV-L1 on synthetic_actions/study, "
             "~20 min on 2 cores; full: the recipes' own full configs on synthetic_actions/default, only "
             "the dataset and run length set by the study (TSN: no flips, 112 px crops).")


def _full(name: str, arg: str, data: dict[str, Any], steps: int | None):
  """A recipe's full config with the study's dataset and, if given, run length (schedules scaled)."""
  c = recipe(name, arg, data)
  return config_lib.set_run_length(c, steps) if steps else c


def runs(size: str, data_dir: str | None) -> dict[str, Any]:
  """name -> config of every training run of the study."""
  s = SIZES[size]
  if size == "full":
    data = {"data.name": s["data"], "data.data_dir": data_dir}
    # The synthetic classes tell leftward from rightward motion: no mirroring; TSN's 224 px crops of
    # 256 px frames become 112 px crops of the 128 px synthetic frames.
    rec = dict(data, **{"data.flip": False, "data.crop_size": 112})
    return {"tsn_rgb": _full("recognizer", "tsn_rgb", rec, s["rec_steps"]),
            "tsn_flow": _full("recognizer", "tsn_flow", rec, s["rec_steps"]),
            "vdsr": _full("vdsr", "", data, s["sr_steps"]),
            "sosr": _full("sosr_vdsr", "", data, s["sr_steps"]),
            "tosr": _full("tosr1_vdsr", "", data, s["sr_steps"])}
  common = {"data.name": s["data"], "data.data_dir": data_dir, "train.batch_size": s["batch"],
            "eval.batch_size": s["batch"], "train.checkpoint_every": 500, "train.log_every": 100}
  rec = dict(common, **{"train.num_steps": s["rec_steps"], "data.num_segments": 3,
                        "data.flow_stack": s["flow_stack"], "eval.num_segments": s["segments"],
                        "recognizer.depth": 18, "recognizer.width": s["width"], "data.crop_size": s["crop"],
                        "recognizer.stem_type": "small", "optimizer.name": "adam",
                        "optimizer.learning_rate": 1e-3, "optimizer.schedule": "cosine",
                        "optimizer.weight_decay": 0.0})
  sr = dict(common, **{"train.num_steps": s["sr_steps"], "model.num_layers": s["layers"],
                       "model.features": s["features"], "optimizer.warmup_steps": 50})
  return {
      "tsn_rgb": recipe("recognizer", "tsn_rgb,smoke", rec),
      "tsn_flow": recipe("recognizer", "tsn_flow,smoke", rec),
      "vdsr": recipe("vdsr", "smoke", sr),
      "sosr": recipe("sosr_vdsr", "smoke", sr),
      "tosr": recipe("tosr1_vdsr", "smoke", dict(sr, **{"train.batch_size": s["batch"] // 2})),
  }


def study(workdir: str, size: str = "cpu", data_dir: str | None = None, eval_only: bool = False) -> dict[str, Any]:
  """Runs (or resumes) every training run, then the protocol; returns the claims dict."""
  configs = runs(size, data_dir)
  for name, config in configs.items():
    if eval_only:
      continue
    logging.info("=== study: %s ===", name)
    main_lib.run(config, os.path.join(workdir, name))
  s = SIZES[size]
  w = lambda name: os.path.join(workdir, name)  # noqa: E731
  methods = (f"bicubic,vdsr={w('vdsr')},sosr={w('sosr')},tosr={w('tosr')},"
             f"sosr+tosr={w('sosr')}:{w('tosr')},hr")
  # One (centre) view: mirrored test views would swap the synthetic left/right motion classes.
  over = {"data.name": s["data"], "data.data_dir": data_dir, "protocol.spatial": w("tsn_rgb"),
          "protocol.temporal": w("tsn_flow"), "protocol.methods": methods, "protocol.views": 1}
  if size != "full":  # full: the evaluation recipe's own TSN test protocol (25 segments, 5 flows)
    over.update({"eval.num_segments": s["segments"], "data.flow_stack": s["flow_stack"],
                 "eval.batch_size": s["batch"]})
  ev = recipe("protocol", "", over)
  results = main_lib.run(ev, w("eval"))
  claims = check_claims(results["methods"], dict(np.load(os.path.join(w("eval"), "scores.npz"))))
  fileio.write_json(fileio.path(workdir) / "claims.json", claims)
  print("\nClaims:\n" + "\n".join(f"- {'holds' if c['holds'] else 'FAILS'}: {c['claim']} ({c['evidence']})"
                                  for c in claims.values()))
  return claims


def mcnemar_p(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
  """Two-sided exact McNemar p-value of two classifiers' per-video correctness (paired)."""
  b = int(np.sum(a_correct & ~b_correct))
  c = int(np.sum(~a_correct & b_correct))
  n = b + c
  if n == 0:
    return 1.0
  tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2.0 ** n
  return min(1.0, 2.0 * tail)


def check_claims(m: dict[str, dict[str, Any]], scores: dict[str, np.ndarray] | None = None
                 ) -> dict[str, dict[str, Any]]:
  """The Table-3 claims as booleans with the numbers behind them (and paired McNemar p-values
  from the per-video ``scores`` of the protocol's scores.npz, when given)."""
  def acc(method, stream):
    return m[method][f"{stream}_accuracy"]

  def p_value(a, b, stream):
    if not scores or f"{a}/{stream}" not in scores:
      return ""
    labels = scores["labels"]
    right = lambda k: _predict(scores, k, stream) == labels  # noqa: E731
    return f"; McNemar p={mcnemar_p(right(a), right(b)):.3g}"

  sr_fusion = {k: acc(k, "fusion") for k in m if k not in ("hr", "bicubic")}
  best = max(sr_fusion, key=sr_fusion.get)
  runner_up = max((k for k in sr_fusion if k != best), key=sr_fusion.get, default=best)
  out = {
      "sosr_spatial": (acc("sosr", "spatial") > acc("vdsr", "spatial"), "SoSR beats VDSR on the spatial stream",
                       f"{acc('sosr', 'spatial'):.4f} vs {acc('vdsr', 'spatial'):.4f}"
                       + p_value("sosr", "vdsr", "spatial")),
      "tosr_temporal": (acc("tosr", "temporal") > acc("vdsr", "temporal"),
                        "ToSR beats VDSR on the temporal stream",
                        f"{acc('tosr', 'temporal'):.4f} vs {acc('vdsr', 'temporal'):.4f}"
                        + p_value("tosr", "vdsr", "temporal")),
      "sosr_tosr_best": (best == "sosr+tosr", "SoSR+ToSR is the best SR fusion",
                         ", ".join(f"{k} {v:.4f}" for k, v in sorted(sr_fusion.items(), key=lambda kv: -kv[1]))
                         + p_value(best, runner_up, "fusion")),
      "hr_ceiling": (all(acc("hr", "fusion") >= v for v in sr_fusion.values()), "HR is the ceiling (fusion)",
                     f"HR {acc('hr', 'fusion'):.4f}, bicubic {acc('bicubic', 'fusion'):.4f}"),
  }
  return {k: {"holds": bool(h), "claim": c, "evidence": e} for k, (h, c, e) in out.items()}


def _predict(scores: dict[str, np.ndarray], method: str, stream: str) -> np.ndarray:
  """Per-video class of a stream, the fusion being the protocol's (TSN weights 1 : 1.5)."""
  if stream == "fusion":
    streams = {k: scores[f"{method}/{k}"] for k in ("spatial", "temporal")}
    return np.asarray(rec_steps.scores(streams)).argmax(-1)
  return scores[f"{method}/{stream}"].argmax(-1)


def main(argv):
  del argv
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  writers.quiet_libraries()
  study(FLAGS.workdir, FLAGS.size, FLAGS.data_dir, FLAGS.eval_only)


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  flags.DEFINE_string("workdir", None, "Directory of the study (one sub-directory per run).")
  flags.DEFINE_enum("size", "cpu", ["smoke", "cpu", "full"], SIZE_HELP)
  flags.DEFINE_string("data_dir", None, "TFDS data_dir (None = TFDS default).")
  flags.DEFINE_bool("eval_only", False, "Skip training (the runs exist); re-run the protocol and the claims.")


if __name__ == "__main__":
  define_flags()
  command.run(main, "arsr_jax.studies.study")
