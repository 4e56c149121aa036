# Helpers shared by the launch scripts (sourced, not run): dry-run aware command runner, errors.
# shellcheck shell=bash

DRY_RUN="${DRY_RUN:-0}"

# trace CMD ARGS...: '+ CMD ARGS', shell-quoted (copy-pastable): on stdout in a dry run (the
# commands are the output), on stderr otherwise (like set -x; stdout keeps the commands' output).
trace() {
  local line
  line=" $(q "$@")"
  if [[ "$DRY_RUN" == 1 ]]; then printf '+%s\n' "$line"; else printf '+%s\n' "$line" >&2; fi
}

# trace_line TEXT: traces a pipeline or redirection already written as shell text.
trace_line() {
  if [[ "$DRY_RUN" == 1 ]]; then printf '+ %s\n' "$1"; else printf '+ %s\n' "$1" >&2; fi
}

# run CMD ARGS...: traces the command and runs it, unless dry-run.
run() {
  trace "$@"
  if [[ "$DRY_RUN" != 1 ]]; then
    "$@"
  fi
}

# note MESSAGE: progress text for the user, on stderr (stdout holds only the commands).
note() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# q ARGS...: the arguments shell-quoted into one string (plain words as they are, others in single
# quotes), for commands run on another host and for traces.
q() {
  local arg out=() sq="'"
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=("$arg"); else out+=("'${arg//$sq/$sq\\$sq$sq}'"); fi
  done
  printf '%s' "${out[*]}"
}

# parse_command ARGS...: handles --dry-run and -h/--help before the subcommand; sets COMMAND to the
# subcommand and COMMAND_ARGS to what follows it (usage and exit 2 when there is none).
parse_command() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dry-run) DRY_RUN=1; shift ;;
      -h|--help|help) usage; exit 0 ;;
      *) break ;;
    esac
  done
  COMMAND="${1:-}"
  [[ -n "$COMMAND" ]] || { usage >&2; exit 2; }
  shift
  COMMAND_ARGS=("$@")
}

# The repository root (the parent of launch/).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
