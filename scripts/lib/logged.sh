# shellcheck shell=bash
# Sourced by the setup scripts (each defines `log` and `die`): an installer's output goes to a log
# file, never to the terminal, and a long one says every 30 s that it still works; a cache several
# setups share is filled by one at a time, and one that waits for it says so.

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

# hold_lock LOCK DOING: an exclusive flock on LOCK, held through file descriptor 9 of this shell
# until it exits or closes 9 (a daemon it starts must not inherit it: `9>&-`). A setup that finds
# it held says so, and every 30 s (WORKHUB_HEARTBEAT_SECONDS) that it still waits, so a wait never
# looks hung.
hold_lock() {
  local lock="$1" doing="$2" waited=0 every="${WORKHUB_HEARTBEAT_SECONDS:-30}"
  mkdir -p "$(dirname "$lock")"
  exec 9>>"$lock"
  flock -n 9 && return 0
  log "another setup $doing; waiting for it (lock: $lock)"
  until flock -w "$every" 9; do
    waited=$((waited + every))
    log "still waiting ($waited s) for the other setup, which $doing"
  done
  log "the other setup is done; going on"
}

# with_cache_lock LOCK DOING COMMAND...: runs COMMAND in a subshell holding LOCK (hold_lock), a file
# beside a cache this machine's setups share (two checkouts; `scripts/workhub up` started beside
# `scripts/test`), so one fills it at a time; one that waited finds, when COMMAND looks at the cache
# again, what the other made. COMMAND renames what it makes into place once whole, so a setup that
# looks without the lock sees it whole or not at all. Returns COMMAND's status (its `die` ends only
# the subshell).
with_cache_lock() {
  local lock="$1" doing="$2"
  shift 2
  (
    hold_lock "$lock" "$doing"
    "$@"
  )
}
