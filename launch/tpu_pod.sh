#!/usr/bin/env bash
# Train arsr_jax on a Cloud TPU VM slice, from creating it to deleting it.
#
# Usage: launch/tpu_pod.sh [--dry-run] COMMAND [ARGS...]
#
# Commands, in the order of a first run (launch/README.md explains each):
#   create              request the slice as a queued resource; wait until it is ACTIVE
#   setup               on every host: Python 3.11, gcsfuse, this checkout + jax[tpu] in a venv,
#                       the bucket mounted at $MOUNT
#   data                prepare $DATASET in $DATA_DIR (synthetic_actions on host 0; real video sets
#                       from $MANUAL_DIR, sharded over all hosts, then written by host 0)
#   upload-data DIR     or: copy a TFDS data_dir prepared elsewhere to $BUCKET/tfds
#   train [OVERRIDES]   start `python -m arsr_jax.main ... --distributed` on every host in the
#                       background; extra args are config overrides (--config.train.num_steps=...)
#   logs                follow host 0's log (Ctrl-C stops following, not the training)
#   status              the queued resource's state and whether training runs on each host
#   stop                stop the training on every host (it resumes from its last checkpoint)
#   copy [DEST]         copy results.json, eval/, tensorboard/, config.json of the run to DEST
#                       (default results/$RUN); with ALL=1 the checkpoints too
#   delete              delete the slice and its queued resource (the bucket stays)
#   all                 create, setup, data, train, logs
#
# Options: --dry-run (or DRY_RUN=1) prints every command instead of running it; -h/--help.
#
# Settings come from the environment (defaults below); BUCKET is required, e.g.
#   BUCKET=gs://my-bucket ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 launch/tpu_pod.sh all
# The bucket is mounted with gcsfuse at $MOUNT on every host, so data_dir and workdir are
# plain paths ($MOUNT/tfds, $MOUNT/runs/$RUN) that every host shares.
set -euo pipefail

# ---- settings ----------------------------------------------------------------------------------
PROJECT="${PROJECT:-}"                                 # gcloud project ('' = gcloud's default)
ZONE="${ZONE:-us-central2-b}"                          # a zone that has your TPU type
TPU_NAME="${TPU_NAME:-arsr-tpu}"                       # the TPU VM (node) name
QR_ID="${QR_ID:-${TPU_NAME}-qr}"                       # the queued resource's id
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-32}"          # v4-32: 16 chips on 4 hosts
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"  # v5e: v2-alpha-tpuv5-lite, v6e: v2-alpha-tpuv6e
SPOT="${SPOT:-0}"                                      # 1 = Spot capacity (cheaper, preemptible)
BUCKET="${BUCKET:-}"                                   # gs://BUCKET for data and runs (required)
MOUNT="${MOUNT:-/gcs}"                                 # where every host mounts the bucket
GCSFUSE_FLAGS="${GCSFUSE_FLAGS:---implicit-dirs --rename-dir-limit=200000 --metadata-cache-ttl-secs=0}"
CONFIG="${CONFIG:-configs/sosr_vdsr.py}"               # recipe (path inside the checkout)
RUN="${RUN:-sosr_vdsr}"                                # run name: workdir and log names
DATASET="${DATASET:-synthetic_actions/default}"        # TFDS name/config the run trains on
MANUAL_DIR="${MANUAL_DIR:-}"                           # raw videos of a real dataset, on the mount
DATA_DIR="${DATA_DIR:-$MOUNT/tfds}"                    # TFDS data_dir (a path on the mount)
WORKDIR="${WORKDIR:-$MOUNT/runs/$RUN}"                 # the run's workdir (a path on the mount)
NUM_HOSTS="${NUM_HOSTS:-}"                             # hosts of the slice ('' = ask gcloud)
PYTHON="${PYTHON:-python3.11}"                         # arsr_jax needs Python >= 3.11
JAX_PACKAGE="${JAX_PACKAGE:-jax[tpu]}"
YES="${YES:-0}"                                        # 1 = delete without gcloud's prompt
# ------------------------------------------------------------------------------------------------

source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

gflags=(--zone="$ZONE")
if [[ -n "$PROJECT" ]]; then gflags+=(--project="$PROJECT"); fi
REMOTE_SRC=arsr_jax          # the checkout on each host, under $HOME
REMOTE_VENV=arsr_venv
LOG="arsr_logs/$RUN.log"     # on each host, under $HOME

need_bucket() {
  [[ "$BUCKET" == gs://?* ]] || die "set BUCKET=gs://your-bucket (got '${BUCKET}'): data and runs live there"
}

# on WORKER SCRIPT: runs a one-line bash script on WORKER (all, 0, 1, ...) of the slice.
on() {
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${gflags[@]}" --worker="$1" --command="$2"
}

# gs_of PATH: the gs:// URL of a path on the mount.
gs_of() {
  case "$1" in
    gs://*) printf '%s' "$1" ;;
    "$MOUNT"/*) printf '%s/%s' "${BUCKET%/}" "${1#"$MOUNT"/}" ;;
    *) die "$1 is neither on the bucket mount $MOUNT nor a gs:// URL" ;;
  esac
}

hosts() {
  if [[ -n "$NUM_HOSTS" ]]; then echo "$NUM_HOSTS"; return; fi
  if [[ "$DRY_RUN" == 1 ]]; then
    note "dry run: NUM_HOSTS unset; showing 4 hosts (the real run asks gcloud)"; echo 4; return
  fi
  gcloud compute tpus tpu-vm describe "$TPU_NAME" "${gflags[@]}" --format='value(networkEndpoints[].ipAddress)' \
    | tr ';' '\n' | grep -c .
}

cmd_create() {
  local spot=() state describe
  if [[ "$SPOT" == 1 ]]; then spot=(--spot); fi
  run gcloud compute tpus queued-resources create "$QR_ID" "${gflags[@]}" --node-id="$TPU_NAME" \
    --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" ${spot[@]+"${spot[@]}"}
  note "waiting for $QR_ID to become ACTIVE (capacity permitting: minutes to hours)"
  describe=(gcloud compute tpus queued-resources describe "$QR_ID" "${gflags[@]}" --format='value(state.state)')
  if [[ "$DRY_RUN" == 1 ]]; then trace "${describe[@]}"; return; fi
  while true; do
    state=$(run "${describe[@]}")
    case "$state" in
      ACTIVE) note "$QR_ID is ACTIVE"; return ;;
      FAILED|SUSPENDED) die "$QR_ID is $state; see: gcloud compute tpus queued-resources describe $QR_ID --zone=$ZONE" ;;
    esac
    note "$QR_ID is ${state:-not listed yet}; checking again in 30 s"
    sleep 30
  done
}

cmd_setup() {
  need_bucket
  local archive="/tmp/arsr_jax_src_$$.tgz"
  note "packing the checkout (tracked and untracked, not ignored, files) into $archive"
  trace_line "git -C $(q "$REPO_ROOT") ls-files -z --cached --others --exclude-standard | tar -C $(q "$REPO_ROOT") --null -T - -czf $(q "$archive")"
  if [[ "$DRY_RUN" != 1 ]]; then
    git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard | tar -C "$REPO_ROOT" --null -T - -czf "$archive"
  fi
  run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:arsr_jax_src.tgz" "${gflags[@]}" --worker=all
  local bucket_name="${BUCKET#gs://}"; bucket_name="${bucket_name%%/*}"
  local gcsfuse_repo='gcsfuse-$(lsb_release -c -s)'
  local script
  script="set -e; sudo apt-get update -q; sudo apt-get install -y -q $(q "$PYTHON" "$PYTHON-venv") curl lsb-release fuse"
  script+="; if ! command -v gcsfuse >/dev/null; then echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt $gcsfuse_repo main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list"
  script+=" && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null"
  script+=" && sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; fi"
  script+="; rm -rf ~/$REMOTE_SRC && mkdir -p ~/$REMOTE_SRC ~/arsr_logs && tar -xzf ~/arsr_jax_src.tgz -C ~/$REMOTE_SRC"
  script+="; $(q "$PYTHON") -m venv ~/$REMOTE_VENV && ~/$REMOTE_VENV/bin/pip install -q -U pip"
  script+=" && ~/$REMOTE_VENV/bin/pip install -q -e ~/$REMOTE_SRC $(q "$JAX_PACKAGE")"
  script+="; sudo mkdir -p $(q "$MOUNT") && sudo chown \"\$USER\" $(q "$MOUNT")"
  script+="; mountpoint -q $(q "$MOUNT") || gcsfuse $GCSFUSE_FLAGS $(q "$bucket_name" "$MOUNT")"
  script+="; ~/$REMOTE_VENV/bin/python -c 'import arsr_jax, jax; print(\"arsr_jax ready, jax\", jax.__version__)'"
  on all "$script"
  [[ "$DRY_RUN" == 1 ]] || rm -f "$archive"
}

PY="~/$REMOTE_VENV/bin/python"     # run on the hosts, from ~/$REMOTE_SRC
py() { printf 'cd ~/%s && %s' "$REMOTE_SRC" "$PY"; }

cmd_data() {
  need_bucket
  if [[ "$DATASET" == synthetic_actions/* ]]; then
    local config="${DATASET#synthetic_actions/}"
    on 0 "$(py) -c $(q "from tfds_builders import synthetic_actions; synthetic_actions.prepare(\"$config\", data_dir=\"$DATA_DIR\")")"
    return
  fi
  [[ -n "$MANUAL_DIR" ]] || die "DATASET=$DATASET is a real video set: set MANUAL_DIR to its raw videos on the mount (e.g. $MOUNT/raw/ucf101), or prepare it elsewhere and use 'upload-data'"
  local n i prepare
  n=$(hosts)
  prepare="$(py) -m tfds_builders.prepare $(q --dataset "$DATASET" --manual_dir "$MANUAL_DIR" --data_dir "$DATA_DIR")"
  note "filling the per-video cache: one shard per host ($n hosts), in parallel"
  for ((i = 0; i < n; i++)); do
    if [[ "$DRY_RUN" == 1 ]]; then
      on "$i" "$prepare $(q --num_shards "$n" --shard_index "$i")"
    else
      on "$i" "$prepare $(q --num_shards "$n" --shard_index "$i")" &
    fi
  done
  wait
  note "writing the array_record files on host 0"
  on 0 "$prepare"
}

cmd_upload_data() {
  need_bucket
  local src="${1:?usage: launch/tpu_pod.sh upload-data LOCAL_TFDS_DIR}"
  run gcloud storage rsync --recursive "$src" "$(gs_of "$DATA_DIR")"
}

cmd_train() {
  need_bucket
  local main
  main="$PY -m arsr_jax.main $(q --config "$CONFIG" --workdir "$WORKDIR" --distributed \
    --config.data.name="$DATASET" --config.data.data_dir="$DATA_DIR" "$@")"
  on all "cd ~/$REMOTE_SRC && mkdir -p ~/arsr_logs && (setsid nohup $main > ~/$LOG 2>&1 < /dev/null & echo \$! > ~/$LOG.pid) && echo \"started on \$(hostname), log ~/$LOG\""
  note "training started; follow it with: launch/tpu_pod.sh logs   (results in $WORKDIR)"
}

cmd_logs() { on 0 "tail -n 100 -F ~/$LOG"; }

cmd_status() {
  run gcloud compute tpus queued-resources describe "$QR_ID" "${gflags[@]}" --format='value(state.state)'
  on all "if [ -f ~/$LOG.pid ] && kill -0 \$(cat ~/$LOG.pid) 2>/dev/null; then echo \"\$(hostname): training\"; else echo \"\$(hostname): not running\"; fi; tail -n 2 ~/$LOG 2>/dev/null || true"
}

cmd_stop() { on all "if [ -f ~/$LOG.pid ]; then kill \$(cat ~/$LOG.pid) 2>/dev/null || true; rm -f ~/$LOG.pid; fi"; }

cmd_copy() {
  need_bucket
  local dest="${1:-results/$RUN}" exclude=()
  if [[ "${ALL:-0}" != 1 ]]; then exclude=(--exclude='^checkpoints/'); fi
  run mkdir -p "$dest"
  run gcloud storage rsync --recursive ${exclude[@]+"${exclude[@]}"} "$(gs_of "$WORKDIR")" "$dest"
}

cmd_delete() {
  local quiet=()
  if [[ "$YES" == 1 ]]; then quiet=(--quiet); fi
  run gcloud compute tpus queued-resources delete "$QR_ID" "${gflags[@]}" --force ${quiet[@]+"${quiet[@]}"}
}

main() {
  parse_command "$@"
  local cmd="$COMMAND"
  set -- ${COMMAND_ARGS[@]+"${COMMAND_ARGS[@]}"}
  case "$cmd" in
    create) cmd_create ;;
    setup) cmd_setup ;;
    data) cmd_data ;;
    upload-data) cmd_upload_data "$@" ;;
    train) cmd_train "$@" ;;
    logs) cmd_logs ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    copy) cmd_copy "$@" ;;
    delete) cmd_delete ;;
    all) need_bucket; cmd_create; cmd_setup; cmd_data; cmd_train "$@"; cmd_logs ;;
    *) printf '%s: unknown command %q\n\n' "$(basename "$0")" "$cmd" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
