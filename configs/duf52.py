"""VSR-DUF-52 baseline: configs/duf16.py with 52 layers (21 + 3 dense blocks, growth 16)."""

import ml_collections

from arsr_jax import config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  tokens = ",".join(t for t in ["layers=52", *arg.split(",")] if t)
  return config_lib.sibling(__file__, "duf16").get_config(tokens)
