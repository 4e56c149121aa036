"""Shipped pretrained models: load, card, and better than bicubic on a held-out clip."""

import pathlib

import jax.numpy as jnp
import ml_collections
import pytest

from arsr_jax import config_lib, pretrained
from arsr_jax.media import degrade, video
from arsr_jax.metrics import image as image_metrics
from arsr_jax.steps import sr as sr_steps

CLIPS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips"
SHIPPED = pretrained.names()


def test_unknown_names_are_refused():
  with pytest.raises(FileNotFoundError, match="no pretrained model 'nope'"):
    pretrained.load("nope")
  with pytest.raises(ValueError, match="x3"):
    pretrained.default(3)


@pytest.mark.skipif(not SHIPPED, reason="no pretrained models in arsr_jax/pretrained")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_use_todays_config_names(name):
  """A card's run config names no key renamed since (config_lib.RENAMED): it reads as written."""
  config = pretrained.card(name)["config"]
  assert config_lib.upgrade_stored(config) == config
  config_lib.validate(ml_collections.ConfigDict(config))


@pytest.mark.skipif(not SHIPPED, reason="no pretrained models in arsr_jax/pretrained")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_beats_bicubic_on_a_held_out_clip(name):
  if not CLIPS.is_dir():
    pytest.skip("needs ../shared/data/clips (held out from the corpus training)")
  card = pretrained.card(name)
  assert {"method", "recipe", "data", "steps", "study_numbers", "reproduce"} <= set(card)
  assert (pathlib.Path(pretrained.DIRECTORY) / f"{name}.msgpack").stat().st_size < 8e6
  model, variables = pretrained.load(name)
  s = int(card["scale"])
  frames = video.read_video(CLIPS / "kinetics_arm_wrestling.mp4")[:4]
  h, w = frames.shape[1:3]
  hr = jnp.asarray(frames[:, h // 2 - 64:h // 2 + 64, w // 2 - 64:w // 2 + 64], jnp.float32) / 255.0
  lr = image_metrics.quantize(degrade.bicubic_downsample(hr, s))
  sr = jnp.clip(sr_steps.apply_sr(model, variables, lr, train=False), 0, 1)
  bic = jnp.clip(degrade.bicubic_upsample(lr, s), 0, 1)
  p_sr, p_bic = float(image_metrics.psnr_y(sr, hr, border=s).mean()), float(image_metrics.psnr_y(bic, hr, border=s).mean())
  assert sr.shape == hr.shape and p_sr > p_bic, (p_sr, p_bic)


@pytest.mark.skipif(not SHIPPED, reason="no pretrained models in arsr_jax/pretrained")
def test_enhance_defaults_to_the_shipped_model():
  from arsr_jax import enhance, sharding
  mesh = sharding.make_mesh()
  sr, clip_length = enhance.load_model(None, mesh)
  assert (sr.name, sr.scale, clip_length) == ("corpus_x4", 4, 1)
  sr, _ = enhance.load_model(None, mesh, 8)
  assert (sr.name, sr.scale) == ("corpus_x8", 8)
