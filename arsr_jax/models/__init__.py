"""SR networks and GAN discriminators: plain dicts from config name to Flax module class.

SR networks map LR input to SR frames in [0, 1] (unclipped) with
``module.apply(variables, lr, train=...)``:
  frame models (INPUT_NDIM 4): (N, h, w, C) -> (N, h*s, w*s, C);
  DUF (INPUT_NDIM 5):          (N, K, h, w, C) -> (N, h*s, w*s, C), centre frame;
  SPMC (INPUT_NDIM 5):         (N, K, h, w, C) -> (N, h*s, w*s, C), centre frame (train=True: a dict);
  DVSR (INPUT_NDIM 5):         (N, T, h, w, C) -> (N, T', h*s, w*s, C);
  SRVGGNetTemporal (INPUT_NDIM 5): (N, T, h, w, C) -> (N, T, h*s, w*s, C), K-frame windows per frame.
Discriminators map HR frames (N, H, W, C) to logits (N, 1).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from arsr_jax.models.bicubic import Bicubic
from arsr_jax.models.duf import DUF
from arsr_jax.models.dvsr import DVSR, ProgressiveDVSR
from arsr_jax.models.rcan import RCAN
from arsr_jax.models.rrdbnet import RRDBNet, VGGStyleDiscriminator
from arsr_jax.models.spmc import SPMC
from arsr_jax.models.srresnet import SRGANDiscriminator, SRResNet
from arsr_jax.models.srvgg import SRVGGNetCompact, SRVGGNetTemporal
from arsr_jax.models.vdsr import VDSR

MODELS: dict[str, type[nn.Module]] = {
    "bicubic": Bicubic,
    "vdsr": VDSR,
    "srresnet": SRResNet,
    "rrdbnet": RRDBNet,
    "rcan": RCAN,
    "srvgg_compact": SRVGGNetCompact,  # Real-ESRGAN realesr-animevideov3 (models/ncnn_import.py)
    "srvgg_temporal": SRVGGNetTemporal,  # the same on K-frame LR windows (issue 24)
    "duf": DUF,
    "spmc": SPMC,
    "dvsr": DVSR,
    "progressive_dvsr": ProgressiveDVSR,
}

DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "vgg_style": VGGStyleDiscriminator,  # ESRGAN, 128 or 256 px input
    "srgan": SRGANDiscriminator,  # SRGAN, any input size
}


def _fields(cls) -> set[str]:
  return set(cls.__dataclass_fields__) - {"parent", "name"}


def build(family: dict[str, type[nn.Module]], what: str, name: str, **kwargs: Any) -> nn.Module:
  """``family[name](**kwargs)`` with errors naming an unknown network (``what``) or option."""
  if name not in family:
    raise ValueError(f"Unknown {what} {name!r}; known: {sorted(family)}")
  cls = family[name]
  unknown = set(kwargs) - _fields(cls)
  if unknown:
    raise ValueError(f"{what.capitalize()} {name!r} has no option(s) {sorted(unknown)}; "
                     f"it takes {sorted(_fields(cls) - {'scale'})}")
  return cls(**kwargs)


def build_model(name: str, scale: int, **kwargs: Any) -> nn.Module:
  """MODELS[name](scale=scale, **kwargs), with clear errors for bad names or options."""
  return build(MODELS, "model", name, scale=scale, **kwargs)


def build_discriminator(name: str, **kwargs: Any) -> nn.Module:
  return build(DISCRIMINATORS, "discriminator", name, **kwargs)


def accepts(name: str, field: str, family: dict[str, type[nn.Module]] = MODELS) -> bool:
  """Whether network ``name`` of ``family`` has the option ``field`` (e.g. 'scan', 'remat')."""
  return name in family and field in _fields(family[name])


def input_ndim(model: nn.Module) -> int:
  """Rank of one SR network input: 4 for frame models (N, h, w, C), 5 for video models."""
  return getattr(model, "INPUT_NDIM", 4)
