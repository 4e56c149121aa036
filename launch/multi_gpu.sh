#!/usr/bin/env bash
# Train arsr_jax on every GPU of one machine: one process, data-parallel over the local GPUs.
#
# Usage: launch/multi_gpu.sh [--dry-run] COMMAND [ARGS...]
#
# Commands, in the order of a first run (launch/README.md explains each):
#   setup               a venv at $VENV with this checkout and $JAX_PACKAGE (CUDA wheels from PyPI)
#   check               the GPUs the driver and JAX see, and the per-GPU batch of $CONFIG
#   data                prepare $DATASET in $DATA_DIR (synthetic_actions; real sets need MANUAL_DIR)
#   train [OVERRIDES]   start `python -m arsr_jax.main` in the background (nohup; survives logout);
#                       extra args are config overrides (--config.train.batch_size=128 ...)
#   logs                follow the log (Ctrl-C stops following, not the training)
#   status              whether the run is alive, and its last log lines
#   stop                stop the run (rerunning `train` resumes from its last checkpoint)
#   all                 setup, check, data, train, logs
#
# Options: --dry-run (or DRY_RUN=1) prints every command instead of running it; -h/--help.
#
# Settings come from the environment (defaults below), e.g.
#   GPUS=0,1,2,3 CONFIG=configs/esrgan.py RUN=esrgan launch/multi_gpu.sh train --config.train.batch_size=64
# The global batch (train.batch_size, eval.batch_size) must be divisible by the number of GPUs.
# Several machines: use launch/slurm_multi_gpu.sbatch (one process per node, --distributed).
set -euo pipefail

# ---- settings ----------------------------------------------------------------------------------
CONFIG="${CONFIG:-configs/sosr_vdsr.py}"          # recipe
RUN="${RUN:-sosr_vdsr}"                           # run name: workdir and log names
WORKDIR="${WORKDIR:-workdirs/$RUN}"               # checkpoints, tensorboard/, results.json
DATASET="${DATASET:-synthetic_actions/default}"   # TFDS name/config the run trains on
DATA_DIR="${DATA_DIR:-$HOME/tensorflow_datasets}" # TFDS data_dir
MANUAL_DIR="${MANUAL_DIR:-}"                      # raw videos of a real dataset (ucf101_sr, ...)
GPUS="${GPUS:-}"                                  # CUDA_VISIBLE_DEVICES ('' = every GPU)
VENV="${VENV:-.venv}"                             # the virtual environment (relative to the checkout)
PYTHON="${PYTHON:-python3}"                       # Python >= 3.11 to create the venv with
JAX_PACKAGE="${JAX_PACKAGE:-jax[cuda12]}"         # jax[cuda13] for CUDA 13 drivers
LOG_DIR="${LOG_DIR:-logs}"                        # $LOG_DIR/$RUN.log and .pid
# ------------------------------------------------------------------------------------------------

source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

cd "$REPO_ROOT"
PY="$VENV/bin/python"
LOG="$LOG_DIR/$RUN.log"
genv=()
if [[ -n "$GPUS" ]]; then genv=(env CUDA_VISIBLE_DEVICES="$GPUS"); fi

cmd_setup() {
  run "$PYTHON" -m venv "$VENV"
  run "$PY" -m pip install -q -U pip
  run "$PY" -m pip install -q -e . "$JAX_PACKAGE"
}

cmd_check() {
  run nvidia-smi -L
  run ${genv[@]+"${genv[@]}"} "$PY" -c "import jax, os; from arsr_jax.config_lib import recipe; \
n = jax.device_count(); print(n, 'devices:', jax.devices()); path, _, variant = '$CONFIG'.partition(':'); \
c = recipe(os.path.splitext(os.path.basename(path))[0], variant); \
[print(f'{k}.batch_size={c[k].batch_size}:', f'{c[k].batch_size // n} per device' if c[k].batch_size % n == 0 \
else f'NOT divisible by {n} devices: override it') for k in ('train', 'eval')]"
}

cmd_data() {
  if [[ "$DATASET" == synthetic_actions/* ]]; then
    run "$PY" -c "from tfds_builders import synthetic_actions; synthetic_actions.prepare(\"${DATASET#synthetic_actions/}\", data_dir=\"$DATA_DIR\")"
    return
  fi
  [[ -n "$MANUAL_DIR" ]] || die "DATASET=$DATASET is a real video set: set MANUAL_DIR to its downloaded videos"
  run "$PY" -m tfds_builders.prepare --dataset "$DATASET" --manual_dir "$MANUAL_DIR" --data_dir "$DATA_DIR"
}

cmd_train() {
  local cmd=(${genv[@]+"${genv[@]}"} nohup "$PY" -m arsr_jax.main --config "$CONFIG" --workdir "$WORKDIR"
             --config.data.name="$DATASET" --config.data.data_dir="$DATA_DIR" "$@")
  if [[ -f "$LOG.pid" ]] && kill -0 "$(cat "$LOG.pid")" 2>/dev/null; then
    die "$RUN is already running (pid $(cat "$LOG.pid")); see: launch/multi_gpu.sh logs"
  fi
  run mkdir -p "$LOG_DIR"
  trace_line "$(q "${cmd[@]}") >> $(q "$LOG") 2>&1 < /dev/null &"
  if [[ "$DRY_RUN" != 1 ]]; then
    "${cmd[@]}" >> "$LOG" 2>&1 < /dev/null &
    echo $! > "$LOG.pid"
    note "started $RUN (pid $!); log $LOG, workdir $WORKDIR"
  fi
}

cmd_logs() { run tail -n 100 -F "$LOG"; }

cmd_status() {
  if [[ -f "$LOG.pid" ]] && kill -0 "$(cat "$LOG.pid")" 2>/dev/null; then
    note "$RUN is running (pid $(cat "$LOG.pid"))"
  else
    note "$RUN is not running"
  fi
  run tail -n 5 "$LOG"
}

cmd_stop() {
  local pid='$(cat '"$LOG.pid"')'
  if [[ "$DRY_RUN" != 1 ]]; then
    [[ -f "$LOG.pid" ]] || die "no $LOG.pid: $RUN was not started by this script"
    pid="$(cat "$LOG.pid")"
  fi
  run kill "$pid"
  run rm -f "$LOG.pid"
}

main() {
  parse_command "$@"
  local cmd="$COMMAND"
  set -- ${COMMAND_ARGS[@]+"${COMMAND_ARGS[@]}"}
  case "$cmd" in
    setup) cmd_setup ;;
    check) cmd_check ;;
    data) cmd_data ;;
    train) cmd_train "$@" ;;
    logs) cmd_logs ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    all) cmd_setup; cmd_check; cmd_data; cmd_train "$@"; cmd_logs ;;
    *) printf '%s: unknown command %q\n\n' "$(basename "$0")" "$cmd" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
