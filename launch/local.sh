#!/usr/bin/env bash
# Train on every accelerator of this machine (1 process, data-parallel over all local devices).
#   launch/local.sh configs/sosr_vdsr.py /path/to/workdir [--config.train.batch_size=128 ...]
set -euo pipefail
config=${1:?usage: launch/local.sh CONFIG WORKDIR [overrides...]}; workdir=${2:?workdir}; shift 2
exec python -m arsr_jax.main --config "$config" --workdir "$workdir" "$@"
