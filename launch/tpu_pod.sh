#!/usr/bin/env bash
# Run on every host of a Cloud TPU VM slice. JAX discovers the other hosts itself
# (--distributed calls jax.distributed.initialize, which auto-detects the slice); every
# host reads its own shard of the data and writes to the same (GCS) workdir.
#   launch/tpu_pod.sh TPU_NAME ZONE configs/sosr_vdsr.py gs://bucket/workdir [overrides...]
# Prerequisites on every host: this repo checked out at ~/arsr_jax and `pip install -e .`,
# the TFDS data prepared under a shared data_dir (e.g. --config.data.data_dir=gs://bucket/tfds).
set -euo pipefail
tpu=${1:?tpu name}; zone=${2:?zone}; config=${3:?config}; workdir=${4:?workdir}; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/arsr_jax && python -m arsr_jax.main --config $config --workdir $workdir --distributed $*"
