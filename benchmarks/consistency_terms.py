"""Sizes of the consistency objective's terms at initialisation (SR ~ bicubic) on the corpus'
validation clips, to balance kl_weight / feature_weight against the pixel term.

  python benchmarks/consistency_terms.py --data_dir TFDS_DIR [--scale 4] [--batches 4]

Prints one JSON object: the mean of each term (mse, kl, feature) over the batches and the weights
that would make each consistency term a given share of the pixel term.
"""

import argparse
import json

from arsr_jax import config_lib
from arsr_jax.jobs import sr as sr_job


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--data_dir", required=True)
  p.add_argument("--scale", type=int, default=4)
  p.add_argument("--batches", type=int, default=4)
  p.add_argument("--layers", type=int, default=8)
  p.add_argument("--features", type=int, default=16)
  a = p.parse_args()
  c = config_lib.recipe("sosr_vdsr_consistency", "", {
      "data.data_dir": a.data_dir, "data.name": f"cdvl_sr/corpus_x{a.scale}", "scale": a.scale,
      "data.train_split": "validation", "model.num_layers": a.layers, "model.features": a.features})
  terms = sr_job.loss_terms_at_init(c, a.batches)
  out = {"scale": a.scale, "batches": a.batches, "batch_size": c.train.batch_size, "terms": terms,
         "weights_for_10pct_of_pixel": {k: 0.1 * terms["mse"] / terms[k] for k in ("kl", "feature") if terms.get(k)}}
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
