"""Pieces of the real-video studies (arsr_jax/studies/: real_study, corpus_study); whole runs are too long for the suite."""

import pathlib

import numpy as np
import pytest

from arsr_jax.studies import corpus_study, real_judge, real_study
from arsr_jax.steps import protocol as protocol_steps

CLIPS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips"


def test_dataset_names_and_runs():
  assert real_study.dataset_name(4, "cpu") == "cdvl_sr/demo"
  assert real_study.dataset_name(8, "cpu") == "cdvl_sr/demo_x8"
  assert real_study.dataset_name(8, "full") == "cdvl_sr/x8"
  runs = real_study.runs(8, "smoke", "/tmp/tfds", "/tmp/w")
  assert list(runs) == ["sosr", "tosr", "dvsr_stage1", "dvsr_stage2", "dvsr_stage3"]
  assert runs["dvsr_stage3"].train.init_from == "/tmp/w/x8/dvsr_stage2" and runs["sosr"].scale == 8
  assert runs["sosr"].data.name == "cdvl_sr/demo_x8" and runs["tosr"].data.sampler == "pair"
  corpus = corpus_study.runs(8, "/tmp/tfds", "/tmp/w")
  assert list(corpus) == list(corpus_study.CORPUS_METHODS) == ["vdsr", "sosr", "tosr", "consistency"]
  assert {c.data.name for c in corpus.values()} == {"cdvl_sr/corpus_x8"}
  assert {(c.model.num_layers, c.model.features) for c in corpus.values()} == {(8, 16)}  # one network
  assert {c.data.eval_split for c in corpus.values()} == {"validation"}  # never the test clips
  assert corpus["consistency"].train.init_from == "/tmp/w/x8/vdsr" and corpus["consistency"].data.sampler == "clip"
  assert corpus["vdsr"].loss.name == "mse" and corpus["sosr"].loss.perceptual_weight == 0.0


@pytest.mark.skipif(not CLIPS.is_dir(), reason="needs ../shared/data/clips")
def test_held_out_videos_windows_and_bicubic():
  held_out = [pathlib.Path(p).name for p in real_study.test_videos(str(CLIPS), 4, "cpu")]
  assert held_out == ["kinetics_arm_wrestling.mp4", "v_Biking_g01_c01.mp4"]  # by file-name hash
  hr = real_judge.hr_windows(str(CLIPS / "kinetics_arm_wrestling.mp4"), 2, consecutive=True)
  assert hr.shape == (2, 16, 224, 224, 3) and hr.dtype == np.uint8
  lr = hr[:, :, ::4, ::4]
  out = real_judge.super_resolver(protocol_steps.BICUBIC)(lr, 4)
  assert out.shape == hr.shape and out.dtype == np.uint8


def test_results_table():
  res = {"scales": {"x4": {"methods": {"bicubic": {"top1_agreement": 0.5, "top5_agreement": 1.0,
                                                   "kl_from_hr": 0.25}, "hr_top1": ["arm wrestling"]}}}}
  table = real_study.results_table(res)
  assert "| x4 | bicubic | 50.0 | 100.0 | 0.250 |" in table and "hr_top1" not in table


def test_gather_merges_summaries_of_several_processes(tmp_path):
  from arsr_jax import fileio
  row = {"top1_agreement": 0.5, "top5_agreement": 1.0, "kl_from_hr": 0.25, "psnr_y": 30.0, "ssim_y": 0.9,
         "gt_top1": None}
  for name, scale in (("corpus_test", 8), ("heldout_clips", 4)):
    fileio.write_json(tmp_path / f"summary_{name}_x{scale}.json", {"methods": {"bicubic": row}})
  res = corpus_study.gather(str(tmp_path), 4)
  assert set(res["tables"]) == {"corpus_test", "heldout_clips"} and list(res["tables"]["heldout_clips"]) == ["x4"]
  assert "| heldout_clips | x4 | bicubic | 50.0 |" in (tmp_path / "results.md").read_text()


def test_export_chooses_lowest_kl_among_methods_beating_bicubic():
  from arsr_jax.studies import export_pretrained
  rows = {"bicubic": {"kl_from_hr": 0.5, "psnr_y": 30.0}, "vdsr": {"kl_from_hr": 0.4, "psnr_y": 31.0},
          "tosr": {"kl_from_hr": 0.3, "psnr_y": 29.0}, "sosr": {"kl_from_hr": 0.45, "psnr_y": 30.5}}
  res = {"tables": {"corpus_test": {"x4": {"methods": rows}}}}
  assert export_pretrained.choose(res, 4) == "vdsr"  # tosr has lower KL but loses to bicubic in PSNR
  rows["realesrgan-x4plus"] = {"kl_from_hr": 0.1, "psnr_y": 32.0}  # a peer judged beside the runs: never shipped
  assert export_pretrained.choose(res, 4, ["vdsr", "sosr", "tosr"]) == "vdsr"
  del rows["realesrgan-x4plus"]
  rows["vdsr"]["psnr_y"] = rows["sosr"]["psnr_y"] = 20.0
  with pytest.raises(ValueError, match="nothing to ship"):
    export_pretrained.choose(res, 4)


def test_judging_redoes_a_method_retrained_since(tmp_path):
  """A windows record judged at step 20 is stale once the run has a step-120 checkpoint."""
  (tmp_path / "x4" / "consistency" / "checkpoints" / "20").mkdir(parents=True)
  old = {"bicubic": {}, "vdsr": {}, "consistency": {}, "steps": {"vdsr": 200, "consistency": 20}}
  assert not corpus_study._stale(old, "consistency", str(tmp_path), 4)
  assert not corpus_study._stale(old, "bicubic", str(tmp_path), 4)
  assert not corpus_study._stale(old, "vdsr", str(tmp_path), 4)  # no run here: nothing newer to judge
  assert corpus_study._stale(old, "sosr", str(tmp_path), 4) and corpus_study._stale(None, "vdsr", str(tmp_path), 4)
  (tmp_path / "x4" / "consistency" / "checkpoints" / "120").mkdir()
  assert corpus_study._stale(old, "consistency", str(tmp_path), 4)


def test_consistency_weight_search_scales_both_weights_and_picks_lowest_kl_above_bicubic():
  base = corpus_study.corpus_runs(4, {"scale": 4}, "/tmp/w/x4")["consistency"]
  triple = corpus_study.corpus_runs(4, {"scale": 4}, "/tmp/w/x4", multiplier=3.0, consistency_steps=7)["consistency"]
  assert triple.loss.kl_weight == pytest.approx(3 * base.loss.kl_weight) and triple.train.num_steps == 7
  assert triple.loss.feature_weight == pytest.approx(3 * base.loss.feature_weight)
  assert base.train.num_steps == corpus_study.SIZES["corpus"]["consistency_steps"]
  row = lambda kl, psnr: {"kl_from_hr": kl, "psnr_y": psnr}  # noqa: E731
  rows = {"bicubic": row(0.9, 30.0), "x0.3": row(0.7, 30.6), "x1": row(0.6, 30.5), "x3": row(0.4, 29.9)}
  assert corpus_study.choose_multiplier(rows, (0.3, 1.0, 3.0)) == 1.0  # x3: lowest KL but below bicubic PSNR
  rows["x1"]["psnr_y"] = rows["x0.3"]["psnr_y"] = 29.0
  assert corpus_study.choose_multiplier(rows, (0.3, 1.0, 3.0)) == 3.0  # none above bicubic: lowest KL
