# shellcheck shell=bash
# Sourced by the setup scripts (each defines `log` and `die`): an installer's output goes to a log
# file, never to the terminal, and a long one says every 30 s that it still works.

# logged WHAT LOG COMMAND...: runs COMMAND with its stdout and stderr appended to LOG; while it runs,
# a heartbeat line every 30 s (WORKHUB_HEARTBEAT_SECONDS) with the log's last line; if it fails,
# the log's last 30 lines and its path, then die.
logged() {
  local what="$1" log_file="$2" pid waited=0 every="${WORKHUB_HEARTBEAT_SECONDS:-30}"
  shift 2
  mkdir -p "$(dirname "$log_file")"
  printf '\n--- %s %s\n' "$(date -u +%FT%TZ)" "$what" >>"$log_file"
  "$@" >>"$log_file" 2>&1 </dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    waited=$((waited + 1))
    if ((waited % every == 0)); then
      log "$what: still working ($waited s; last: $(tail -n 1 "$log_file" | cut -c1-100))"
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$log_file" >&2
    die "$what failed (full log: $log_file)"
  fi
}
