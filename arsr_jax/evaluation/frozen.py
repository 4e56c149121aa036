"""Trained networks restored frozen from their workdirs (evaluation, guidance, enhancement).

A workdir written by ``train_and_evaluate`` holds ``config.json`` (the run's
config, with the resolved class count) and Orbax checkpoints. Restoring
rebuilds the network from the config and takes the latest checkpoint's
parameters (the EMA generator when the run kept one) and BatchNorm
statistics; frozen networks are only ever applied with ``train=False``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections

from arsr_jax import checkpointing, config_lib, fileio, models, precision, recognition
from arsr_jax.models import legacy_layout
from arsr_jax.recognition import i3d

I3D_KINETICS = "i3d_kinetics400"


def load_run_config(workdir: fileio.PathLike) -> ml_collections.ConfigDict:
  """The run config a workdir's ``config.json`` holds (written by the training loop), with keys
  renamed since (config_lib.RENAMED) under their new names."""
  path = fileio.path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{workdir} has no config.json: not a workdir written by arsr_jax.main "
                            "(train it first, or check the path)")
  return ml_collections.ConfigDict(config_lib.upgrade_stored(fileio.read_json(path)))


@dataclasses.dataclass(frozen=True)
class FrozenSR:
  """An SR network and its variables. ``input_frames`` K > 1: it consumes K-frame LR windows."""
  name: str
  model: Any
  variables: Any
  scale: int
  input_frames: int
  call_kwargs: dict[str, Any]
  step: int

  @property
  def is_clip_model(self) -> bool:
    return models.input_ndim(self.model) == 5 and self.input_frames == 1


def load_sr(workdir: str, sharding: jax.sharding.Sharding, dtype) -> FrozenSR:
  """The SR network of an SR workdir (the EMA generator when the run kept one), on ``sharding``."""
  cfg = load_run_config(workdir)
  if cfg.get("task", "sr") != "sr":
    raise ValueError(f"{workdir} holds a {cfg.task!r} run, not an SR network")
  model = models.build_model(cfg.model.name, cfg.scale, **precision.net_kwargs(cfg.model, models.MODELS, dtype))
  step, state = checkpointing.load_latest_state(workdir)
  params = state.get("ema_params") or state["params"]["generator"]
  legacy_layout.refuse_per_block(params, model, workdir)
  variables = jax.device_put({"params": params, **state["model_state"]["generator"]}, sharding)
  fade = {"alpha": 1.0} if cfg.train.get("fade_steps") else {}
  k = cfg.data.input_frames if models.input_ndim(model) == 5 else 1
  return FrozenSR(fileio.path(workdir).name, model, variables, int(cfg.scale), int(k), fade,
                  int(step))


@dataclasses.dataclass(frozen=True)
class FrozenRecognizer:
  """A recognizer, its variables and what it consumes (recognition.KINDS)."""
  model: Any
  variables: Any
  kind: str
  num_classes: int
  flow_stack: int
  step: int
  source: str
  tvl1: Any = None  # TV-L1 parameters of its training flow (dict), None = dataset flow / unknown
  crop_size: int = 0  # its training crop: test inputs are centre-cropped to it (TSN's test crop)
  dataset: str = ""  # the data.name it was trained on ('' = unknown, e.g. the Kinetics-400 I3D)
  input_size: int = 0  # its training frames' data.resize, else its crop (0 = the dataset's frames)


def recognizer_from_workdir(workdir: str, dtype) -> FrozenRecognizer:
  """The recognizer of a recognition run's workdir with host variables, or DeepMind's Kinetics-400
  I3D for ``workdir='i3d_kinetics400'``; its classes unchecked (``load_recognizer`` checks them)."""
  if workdir == I3D_KINETICS:
    return FrozenRecognizer(*i3d.frozen_kinetics400(), "clip", 400, 1, 0, workdir)
  cfg = load_run_config(workdir)
  if cfg.get("task") != "recognition":
    raise ValueError(f"{workdir} holds a {cfg.get('task', 'sr')!r} run, not a recognizer")
  model = recognition.build_recognizer(cfg.recognizer.name,
                                       **precision.net_kwargs(cfg.recognizer, recognition.RECOGNIZERS, dtype))
  step, state = checkpointing.load_latest_state(workdir)
  variables = {"params": state["params"]["recognizer"], **state["model_state"]["recognizer"]}
  crop = int(cfg.data.get("crop_size", 0) or 0)
  return FrozenRecognizer(model, variables, recognition.input_kind(cfg.recognizer),
                          int(cfg.recognizer.num_classes), int(cfg.data.flow_stack), int(step), workdir,
                          tvl1=cfg.data.tvl1.to_dict() if cfg.data.get("flow_source") == "tvl1" else None,
                          crop_size=crop, dataset=str(cfg.data.name), input_size=int(cfg.data.get("resize", 0) or crop))


def load_recognizer(workdir: str, sharding: jax.sharding.Sharding, dtype, num_classes: int) -> FrozenRecognizer:
  """Restores the recognizer of ``workdir`` (or DeepMind's Kinetics-400 I3D) on ``sharding`` and checks its classes."""
  rec = recognizer_from_workdir(workdir, dtype)
  if rec.num_classes != num_classes:
    trained = f", trained on {rec.dataset}" if rec.dataset else ""
    raise config_lib.Mismatch(f"Recognizer {workdir} (step {rec.step}{trained}) predicts {rec.num_classes} classes; "
                              f"the evaluation data has {num_classes}. Use a recognizer trained on this dataset.")
  return dataclasses.replace(rec, variables=jax.device_put(rec.variables, sharding))
