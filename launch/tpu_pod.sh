#!/usr/bin/env bash
# Train arsr_jax on a Cloud TPU VM slice, from creating it to deleting it.
#
# Usage: launch/tpu_pod.sh [--dry-run] COMMAND [ARGS...]
#
# Commands, in the order of a first run (launch/README.md explains each):
#   create              request the slice as a queued resource; wait until it is ACTIVE (one that
#                       was preempted, SUSPENDED, or FAILED is deleted and requested again)
#   setup               on every host: Python 3.11, gcsfuse, this checkout + jax[tpu] in a venv,
#                       the bucket mounted at $MOUNT
#   data                prepare $DATASET in $DATA_DIR (synthetic_actions on host 0; real video sets
#                       from $MANUAL_DIR, sharded over all hosts, then written by host 0), with JAX
#                       on the hosts' CPUs (a TPU runtime started on one host of a slice hangs)
#   upload-data DIR     or: copy a TFDS data_dir prepared elsewhere to $BUCKET/tfds
#   train [OVERRIDES]   start `python -m arsr_jax.main ... --distributed` on every host in the
#                       background; extra args are config overrides (--config.train.num_steps=...);
#                       refuses to start while $MOUNT is not mounted on every host
#   resume [OVERRIDES]  after a Spot preemption (or a stop): create, setup, train; training
#                       continues from the last checkpoint in $WORKDIR
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
# The workdir is a gs:// URL ($BUCKET/runs/$RUN: checkpoints through TensorStore, atomic). The
# bucket is also mounted with gcsfuse (file cache on) at $MOUNT on every host for the TFDS data
# ($MOUNT/tfds), a path every host shares.
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
GCSFUSE_FLAGS="${GCSFUSE_FLAGS:---implicit-dirs --metadata-cache-ttl-secs=0 --cache-dir=/tmp/gcsfuse_cache --file-cache-max-size-mb=50000 --file-cache-cache-file-for-range-read=true}"
CONFIG="${CONFIG:-configs/sosr_vdsr.py}"               # recipe (path inside the checkout)
RUN="${RUN:-sosr_vdsr}"                                # run name: workdir and log names
DATASET="${DATASET:-synthetic_actions/default}"        # TFDS name/config the run trains on
MANUAL_DIR="${MANUAL_DIR:-}"                           # raw videos of a real dataset, on the mount
DATA_DIR="${DATA_DIR:-$MOUNT/tfds}"                    # TFDS data_dir (a path on the mount)
WORKDIR="${WORKDIR:-${BUCKET%/}/runs/$RUN}"            # the run's workdir (a gs:// URL)
NUM_HOSTS="${NUM_HOSTS:-}"                             # hosts of the slice ('' = ask gcloud)
PYTHON="${PYTHON:-python3.11}"                         # arsr_jax needs Python >= 3.11
JAX_PACKAGE="${JAX_PACKAGE:-jax[tpu]}"
YES="${YES:-0}"                                        # 1 = delete without gcloud's prompt
POLL_S="${POLL_S:-30}"                                 # seconds between queued-resource state checks
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

# qr_state: the queued resource's state (ACTIVE, SUSPENDED, ...), NONE when it does not exist.
qr_state() {
  local out err=/tmp/arsr_qr_describe_$$.err
  trace gcloud compute tpus queued-resources describe "$QR_ID" "${gflags[@]}" --format='value(state.state)'
  if out=$(gcloud compute tpus queued-resources describe "$QR_ID" "${gflags[@]}" --format='value(state.state)' 2>"$err"); then
    rm -f "$err"; echo "${out:-UNKNOWN}"; return
  fi
  if grep -q NOT_FOUND "$err"; then rm -f "$err"; echo NONE; return; fi
  cat "$err" >&2; rm -f "$err"
  die "could not read the state of queued resource $QR_ID (gcloud's error above)"
}

wait_active() {
  local state
  note "waiting for $QR_ID to become ACTIVE (capacity permitting: minutes to hours)"
  while true; do
    state=$(qr_state)
    case "$state" in
      ACTIVE) note "$QR_ID is ACTIVE"; return ;;
      FAILED|SUSPENDED|SUSPENDING|NONE)
        die "$QR_ID is $state; see: gcloud compute tpus queued-resources describe $QR_ID --zone=$ZONE (rerun 'create' to request it again)" ;;
    esac
    note "$QR_ID is $state; checking again in $POLL_S s"
    sleep "$POLL_S"
  done
}

cmd_create() {
  local spot=() state create
  if [[ "$SPOT" == 1 ]]; then spot=(--spot); fi
  create=(gcloud compute tpus queued-resources create "$QR_ID" "${gflags[@]}" --node-id="$TPU_NAME"
          --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" ${spot[@]+"${spot[@]}"})
  if [[ "$DRY_RUN" == 1 ]]; then
    note "dry run: the real run reads the state first: ACTIVE is kept, SUSPENDED (preempted) or FAILED is deleted, then created"
    trace gcloud compute tpus queued-resources describe "$QR_ID" "${gflags[@]}" --format='value(state.state)'
    trace "${create[@]}"
    trace gcloud compute tpus queued-resources describe "$QR_ID" "${gflags[@]}" --format='value(state.state)'
    return
  fi
  state=$(qr_state)
  while [[ "$state" == SUSPENDING || "$state" == DELETING ]]; do
    note "$QR_ID is $state; checking again in $POLL_S s"
    sleep "$POLL_S"
    state=$(qr_state)
  done
  case "$state" in
    NONE) ;;
    ACTIVE) note "$QR_ID is already ACTIVE"; return ;;
    SUSPENDED|FAILED)
      # A preempted Spot slice leaves its queued resource SUSPENDED, a failed request FAILED: neither is
      # allocated again, and 'create' with the same id fails while it exists (cloud.google.com/tpu/docs/queued-resources).
      note "$QR_ID is $state (preempted or failed): deleting it to request it again"
      run gcloud compute tpus queued-resources delete "$QR_ID" "${gflags[@]}" --force --quiet
      state=$(qr_state)
      [[ "$state" == NONE ]] || die "$QR_ID is still $state after its deletion; delete it (launch/tpu_pod.sh delete) and rerun create"
      ;;
    *) note "$QR_ID was already requested ($state)"; wait_active; return ;;
  esac
  run "${create[@]}"
  wait_active
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
  script+=" && ~/$REMOTE_VENV/bin/pip install -q -e ~/$REMOTE_SRC'[gcs]' $(q "$JAX_PACKAGE")"
  script+="; sudo mkdir -p $(q "$MOUNT") /tmp/gcsfuse_cache && sudo chown \"\$USER\" $(q "$MOUNT") /tmp/gcsfuse_cache"
  script+="; mountpoint -q $(q "$MOUNT") || gcsfuse $GCSFUSE_FLAGS $(q "$bucket_name" "$MOUNT")"
  script+="; ~/$REMOTE_VENV/bin/python -c 'import arsr_jax, jax; print(\"arsr_jax ready, jax\", jax.__version__)'"
  on all "$script"
  [[ "$DRY_RUN" == 1 ]] || rm -f "$archive"
}

PY="~/$REMOTE_VENV/bin/python"     # run on the hosts, from ~/$REMOTE_SRC
# py_cpu: the host's Python with JAX on its CPU, for work that does not run on every host as one
# jax.distributed program (data preparation): the TPU runtime started on one host of a slice hangs.
py_cpu() { printf '%s && cd ~/%s && JAX_PLATFORMS=cpu %s' "$(mounted)" "$REMOTE_SRC" "$PY"; }

# mounted: a check, run on a host, that the bucket is mounted at $MOUNT. After a reboot it is a
# plain local directory: a run would silently read and write the local disk.
mounted() {
  printf 'mountpoint -q %s || { echo "$(hostname): %s is not mounted (the bucket is mounted by setup; a reboot unmounts it): run launch/tpu_pod.sh setup" >&2; exit 1; }' \
    "$(q "$MOUNT")" "$MOUNT"
}

cmd_data() {
  need_bucket
  if [[ "$DATASET" == synthetic_actions/* ]]; then
    local config="${DATASET#synthetic_actions/}"
    on 0 "$(py_cpu) -c $(q "from tfds_builders import synthetic_actions; synthetic_actions.prepare(\"$config\", data_dir=\"$DATA_DIR\")")"
    return
  fi
  [[ -n "$MANUAL_DIR" ]] || die "DATASET=$DATASET is a real video set: set MANUAL_DIR to its raw videos on the mount (e.g. $MOUNT/raw/ucf101), or prepare it elsewhere and use 'upload-data'"
  local n i prepare
  n=$(hosts)
  prepare="$(py_cpu) -m tfds_builders.prepare $(q --dataset "$DATASET" --manual_dir "$MANUAL_DIR" --data_dir "$DATA_DIR")"
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
  [[ "$WORKDIR" == gs://?* ]] || die "WORKDIR must be a gs:// URL (got '$WORKDIR'): a host's local path is not shared, and checkpoints through the gcsfuse mount rely on directory renames it does not make atomic"
  local main
  main="$PY -m arsr_jax.main $(q --config "$CONFIG" --workdir "$WORKDIR" --distributed \
    --config.data.name="$DATASET" --config.data.data_dir="$DATA_DIR" "$@")"
  note "checking that $MOUNT is mounted on every host"
  on all "$(mounted) && echo \"\$(hostname): $MOUNT mounted\""
  on all "$(mounted) && cd ~/$REMOTE_SRC && mkdir -p ~/arsr_logs && (setsid nohup $main > ~/$LOG 2>&1 < /dev/null & echo \$! > ~/$LOG.pid) && echo \"started on \$(hostname), log ~/$LOG\""
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
    resume) need_bucket; cmd_create; cmd_setup; cmd_train "$@" ;;
    all) need_bucket; cmd_create; cmd_setup; cmd_data; cmd_train "$@"; cmd_logs ;;
    *) printf '%s: unknown command %q\n\n' "$(basename "$0")" "$cmd" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
