"""corpus_search (issue 24): the x4 -> x8 shuffle expansion, seeds read by train.init_from, the
candidates' configs, paired differences. Tiny sizes, seconds."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsr_jax import checkpointing, config_lib, models
from arsr_jax.studies import corpus_search as cs
from arsr_jax.models import layers, ncnn_import
from arsr_jax.models.srvgg import SRVGGNetCompact, SRVGGNetTemporal


def _random_params(model, lr, seed=0):
  params = model.init(jax.random.key(seed), lr)["params"]
  keys = iter(jax.random.split(jax.random.key(seed + 1), 64))
  return jax.tree.map(lambda p: p + 0.1 * jax.random.normal(next(keys), p.shape), params)  # nonzero biases too


def test_expand_shuffle_is_the_x4_net_then_nearest_x2():
  lr = jax.random.uniform(jax.random.key(2), (2, 5, 7, 3))
  x4 = SRVGGNetCompact(scale=4, features=4, num_conv=1)
  params = _random_params(x4, lr)
  big = cs.expand_shuffle(jax.tree.map(np.asarray, params), 4, 8)
  out8 = SRVGGNetCompact(scale=8, features=4, num_conv=1).apply({"params": big}, lr)
  assert out8.shape == (2, 40, 56, 3)
  out4 = x4.apply({"params": params}, lr)
  np.testing.assert_allclose(out8, layers.upsample_nearest(out4, 2), atol=1e-5)
  # a wrong sub-pixel order would fail: neighbouring x4 output pixels differ
  assert float(jnp.abs(out4[:, ::2] - out4[:, 1::2]).min()) > 1e-4
  with pytest.raises(ValueError, match="not a multiple"):
    cs.expand_shuffle(params, 4, 6)


def test_released_animevideov3_seed_at_x8_is_its_x4_output_upsampled():
  try:
    ncnn_import.models_dir()
  except ModuleNotFoundError:
    pytest.skip("realesrgan extra not installed")
  lr = jax.random.uniform(jax.random.key(0), (1, 6, 6, 3))
  model4, variables = ncnn_import.load("realesr-animevideov3", 4)
  params8 = cs.seed_params("realesr-animevideov3", 8)
  out8 = SRVGGNetCompact(scale=8).apply({"params": params8}, lr)
  np.testing.assert_allclose(out8, layers.upsample_nearest(model4.apply(variables, lr), 2), atol=1e-5)


def test_temporal_net_seeded_by_expand_frames_is_the_frame_net_on_every_frame():
  clip = jax.random.uniform(jax.random.key(3), (2, 5, 6, 7, 3))
  frame_net = SRVGGNetCompact(scale=4, features=4, num_conv=1)
  params = jax.tree.map(np.asarray, _random_params(frame_net, clip[:, 0]))
  net = SRVGGNetTemporal(scale=4, features=4, num_conv=1, frames=3)
  wide = cs.expand_frames(params, 3)
  assert wide["conv_0"]["kernel"].shape == (3, 3, 9, 4)
  init = net.init(jax.random.key(0), clip)["params"]  # the same names and shapes: a checkpoint it restores
  assert jax.tree.map(np.shape, init) == jax.tree.map(np.shape, wide)
  out = net.apply({"params": wide}, clip)
  assert out.shape == (2, 5, 24, 28, 3)
  per_frame = jax.vmap(lambda x: frame_net.apply({"params": params}, x), in_axes=1, out_axes=1)(clip)
  np.testing.assert_allclose(out, per_frame, atol=1e-6)
  # with neighbour weights, frame t sees frames t-1 and t+1 and nothing farther (edges repeat the end frames)
  key = iter(jax.random.split(jax.random.key(4), 4))
  wide["conv_0"]["kernel"] = wide["conv_0"]["kernel"] + 0.1 * np.asarray(jax.random.normal(next(key), (3, 3, 9, 4)))
  base = net.apply({"params": wide}, clip)
  changed = net.apply({"params": wide}, clip.at[:, 3].add(0.2))
  moved = np.abs(np.asarray(changed - base)).max(axis=(0, 2, 3, 4))
  assert moved[0] == moved[1] == 0 and min(moved[2], moved[3], moved[4]) > 1e-4
  # context_gain g scales the neighbour frames' input: the same as g x their conv_0 weights, the centre's kept
  fast = SRVGGNetTemporal(scale=4, features=4, num_conv=1, frames=3, context_gain=100.0)
  np.testing.assert_allclose(fast.apply({"params": cs.expand_frames(params, 3)}, clip), per_frame, atol=1e-6)
  gain = np.repeat([100.0, 1.0, 100.0], 3)[:, None]  # per conv_0 input channel, frame-major
  scaled = dict(wide, conv_0=dict(wide["conv_0"], kernel=wide["conv_0"]["kernel"] * gain))
  with_gain = fast.apply({"params": wide}, clip)
  np.testing.assert_allclose(with_gain, net.apply({"params": scaled}, clip), rtol=1e-5, atol=1e-4)
  assert float(jnp.abs(with_gain - base).max()) > 1e-2
  with pytest.raises(ValueError, match="odd window"):
    cs.expand_frames(params, 2)


def test_released_animevideov3_seed_on_3_frame_windows_is_the_released_net_per_frame():
  try:
    ncnn_import.models_dir()
  except ModuleNotFoundError:
    pytest.skip("realesrgan extra not installed")
  clip = jax.random.uniform(jax.random.key(1), (1, 3, 6, 6, 3))
  model4, variables = ncnn_import.load("realesr-animevideov3", 4)
  out = SRVGGNetTemporal(scale=4, frames=3).apply({"params": cs.seed_params("realesr-animevideov3", 4, 3)}, clip)
  np.testing.assert_allclose(out[0], model4.apply(variables, clip[0]), atol=1e-5)


def _data(scale, tmp):
  return {"data.name": f"cdvl_sr/corpus_x{scale}", "data.data_dir": str(tmp), "scale": scale}


@pytest.mark.parametrize("scale", [4, 8])
def test_candidate_configs_chain_pixel_then_consistency(scale, tmp_path):
  for name, cand in cs.CANDIDATES.items():
    cfg = cs.candidate_configs(name, scale, _data(scale, tmp_path), str(tmp_path / f"x{scale}"))
    for c in cfg.values():
      config_lib.validate(c)
      assert c.model.to_dict() == cand["model"] and c.scale == scale
    assert cfg["pixel"].loss.name == "mse" and cfg["consistency"].loss.name == "consistency"
    assert cfg["consistency"].train.init_from == str(tmp_path / f"x{scale}" / f"{name}_pixel")
    frames = cand["model"].get("frames", 1)
    seed = cand["init"] and cand["init"] + (f"_k{frames}" if frames > 1 else "")
    assert cfg["pixel"].train.init_from == (str(tmp_path / f"x{scale}" / "seeds" / seed) if seed else None)
    pixel_steps, _, steps, _ = cand["schedule"][scale]
    assert (cfg["pixel"].train.num_steps, cfg["consistency"].train.num_steps) == (pixel_steps, steps)
    net = models.build_model(cand["model"]["name"], scale, **{k: v for k, v in cand["model"].items() if k != "name"})
    clip = models.input_ndim(net) == 5
    lr = (1, 5, 4, 4, 3) if clip else (1, 4, 4, 3)
    out = jax.eval_shape(lambda n=net, s=lr: n.init_with_output(jax.random.key(0), jnp.zeros(s))[0])
    assert out.shape == lr[:-3] + (4 * scale, 4 * scale, 3)  # LR-space: features at the input resolution
    # a clip model's pixel stage samples clips, the same frames per batch as the frame models' 8
    p = cfg["pixel"]
    assert (p.data.sampler, p.data.clip_length * p.train.batch_size) == (("clip", 8) if clip else ("frame", 8))
    assert cfg["consistency"].data.sampler == "clip"


def test_seed_restores_and_provenance_follows_init_from(tmp_path):
  lr = jnp.zeros((1, 4, 4, 3))
  params = jax.tree.map(np.asarray, _random_params(SRVGGNetCompact(scale=4, features=4, num_conv=1), lr))
  cfg = cs.candidate_configs("srvgg32", 4, _data(4, tmp_path), str(tmp_path / "x4"))["pixel"]
  seed = str(tmp_path / "seed")
  cs.write_seed(seed, params, cfg, {"seed": "test", "license": "none"})
  step, state = checkpointing.load_latest_state(seed)
  assert step == 0
  jax.tree.map(np.testing.assert_array_equal, state["params"]["generator"], params)
  cs.write_seed(seed, jax.tree.map(np.zeros_like, params), cfg, {"seed": "other"})  # kept, not overwritten
  jax.tree.map(np.testing.assert_array_equal, checkpointing.load_latest_state(seed)[1]["params"]["generator"], params)
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text(json.dumps({"train": {"init_from": seed}}))
  assert cs.provenance(str(run)) == {"seed": "test", "license": "none"}
  assert cs.provenance(str(tmp_path / "x4")) is None


def test_paired_rows_sign_and_interval():
  rng = np.random.default_rng(0)
  hr = rng.normal(size=(12, 400)) * 3
  clips = [k // 2 for k in range(12)]
  rec = {"hr": hr.tolist(), "clips": clips,
         "close": {"logits": (hr + 0.1 * rng.normal(size=hr.shape)).tolist(), "psnr": [30.0] * 12},
         "far": {"logits": (hr + 3.0 * rng.normal(size=hr.shape)).tolist(), "psnr": [28.0] * 12}}
  d = cs.paired_rows(rec, "close", ["far", "close"])
  assert d["far"]["kl"]["high"] < 0 and d["far"]["psnr"]["mean"] == pytest.approx(2.0)
  assert d["close"]["kl"]["mean"] == 0 and d["close"]["kl"]["low"] == d["close"]["kl"]["high"] == 0
  rev = cs.paired_rows(rec, "far", ["close"])["close"]["kl"]
  assert rev["low"] > 0 and rev["mean"] == pytest.approx(-d["far"]["kl"]["mean"])


def test_cli_refuses_unknown_candidates(tmp_path):
  import subprocess
  import sys
  r = subprocess.run([sys.executable, "-m", "arsr_jax.studies.corpus_search", "--study", str(tmp_path), "--videos",
                      str(tmp_path), "--candidates", "nope"], capture_output=True, text=True,
                     env=dict(os.environ), timeout=120)
  assert r.returncode == 2 and "unknown candidates ['nope']" in r.stderr


def test_pick_lowest_validation_kl_above_bicubic_psnr_among_shipped_and_every_run():
  rows = {"bicubic": {"kl_from_hr": 2.2, "psnr_y": 26.0}, "shipped": {"kl_from_hr": 1.76, "psnr_y": 26.6},
          "anime_ft_pixel": {"kl_from_hr": 1.73, "psnr_y": 27.4}, "anime_ft": {"kl_from_hr": 2.05, "psnr_y": 26.9},
          "srvgg32": {"kl_from_hr": 1.0, "psnr_y": 25.0}}  # lowest KL, but below bicubic PSNR-Y
  assert cs.pick(rows, ["shipped", "anime_ft_pixel", "anime_ft", "srvgg32"]) == "anime_ft_pixel"
  rows["shipped"]["kl_from_hr"] = 1.5
  assert cs.pick(rows, ["shipped", "anime_ft_pixel", "anime_ft"]) == "shipped"  # the incumbent stays
  assert cs.run_pair("anime_ft_pixel") == cs.run_pair("anime_ft") == ["anime_ft_pixel", "anime_ft"]
  assert cs.run_pair("shipped") == []


def test_a_new_search_keeps_the_earlier_one_beside_it(tmp_path):
  path = tmp_path / "search_x4.json"
  for k in range(3):
    cs.write_keeping_previous(path, {"chosen": f"run{k}"})
  assert json.loads(path.read_text())["chosen"] == "run2"
  assert [json.loads((tmp_path / f"search_x4.{n}.json").read_text())["chosen"] for n in (1, 2)] == ["run0", "run1"]
