"""SoSR's loss weight alpha from the loss terms at initialisation: prints one JSON object.

The ICCV'19 paper (Sec. 4, SoSR) picks alpha = 5.29e-5 "to make the resulting WMSE and perceptual
loss to be at the same scale" in its Caffe units. This measures both terms of configs/sosr_vdsr.py
for the freshly initialised VDSR (SR ~ bicubic: the global residual) on the training data and
solves (1 - a) WMSE = a P, i.e. a = WMSE / (WMSE + P):

  python benchmarks/sosr_alpha.py [--config_arg ''] [--batches 8] [--batch_size 16] [--data_dir DIR]
"""

from __future__ import annotations

import argparse
import json

from arsr_jax import config_lib
from arsr_jax.jobs import sr as sr_job


def equal_scale_alpha(wmse: float, perceptual: float) -> float:
  """a with (1 - a) * wmse == a * perceptual."""
  return wmse / (wmse + perceptual)


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--config_arg", default="")
  p.add_argument("--batches", type=int, default=8)
  p.add_argument("--batch_size", type=int, default=16)
  p.add_argument("--data_dir", default=None)
  a = p.parse_args()
  c = config_lib.recipe("sosr_vdsr", a.config_arg, {"train.batch_size": a.batch_size, "data.data_dir": a.data_dir,
                                                    "loss.perceptual_weight": 0.5, "compute_dtype": "float32"})
  terms = sr_job.loss_terms_at_init(c, a.batches)
  print(json.dumps({"config": f"sosr_vdsr:{a.config_arg}", "data": c.data.name, "patch_size": c.data.patch_size,
                    "batches": a.batches, "batch_size": a.batch_size, "perceptual_weights": c.loss.perceptual_weights,
                    **terms, "alpha": equal_scale_alpha(terms["wmse"], terms["perceptual"])}))


if __name__ == "__main__":
  main()
