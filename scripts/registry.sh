#!/usr/bin/env bash
# A local npm registry cache (verdaccio) on 127.0.0.1, so builds and tests install hub
# dependencies without going back to the upstream registry each time.
# Usage: scripts/registry.sh up | down [--if-started-here] | url [--bridge] | warm [DIR...] | mark
#                            | stats [--since OFFSET] | logs [N]
#
# Builds run on Docker's bridge network, where the host's loopback is out of reach: once the local
# Docker engine runs, `up` also keeps a forward (tools/forward.py) on the bridge's gateway address,
# same port, that takes connections from the bridge's own network only (the builds; a hub's
# container on its stack's network reaches that address too, and is turned away). `url --bridge`
# prints its URL, the one the local stack's builds use.
#
# Everything lives in ${WORKHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workhub}/verdaccio:
# the verdaccio install, its generated config, its storage (the cached tarballs and metadata,
# kept across runs), its pid, port, logs and the warm markers. One server serves every checkout on
# the machine; the checkout (state directory) whose `up` started it keeps its pid in
# ${WORKHUB_STATE_DIR:-.workhub}/npm-registry.pid, so `scripts/testhost.sh down` there stops it
# (`down --if-started-here`) and leaves one another checkout started alone.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${WORKHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workhub}"
[[ "$CACHE_ROOT" == /* ]] || CACHE_ROOT="$PWD/$CACHE_ROOT"
DIR="$CACHE_ROOT/verdaccio"
# 6.8.0 is the newest verdaccio that runs on Node 20 (6.10 wants Node 22). Its verdaccio-audit
# dependency asks for node-fetch@"cjs", a dist-tag the registry does not have (ETARGET); the
# override pins the CommonJS release it meant.
VERDACCIO_VERSION=6.8.0
NODE_FETCH_OVERRIDE=2.7.0
DEFAULT_PORT=4873
# How long verdaccio trusts cached package metadata before asking the upstream again. Installs
# from a lockfile only need what is cached, so a warm `npm ci` makes no upstream request at all.
MAXAGE="${WORKHUB_REGISTRY_MAXAGE:-1d}"

CONFIG="$DIR/config.yaml"
STORAGE="$DIR/storage"
PIDFILE="$DIR/verdaccio.pid"
PORTFILE="$DIR/port"
LOG="$DIR/verdaccio.log"      # verdaccio's own log: JSON lines, one per HTTP event (see cmd_stats)
OUT="$DIR/verdaccio.out"      # the process's stdout/stderr (startup warnings, crashes)
WARM="$DIR/warm"              # one marker per lockfile hash installed through this storage
STATS_JS="$REPO_ROOT/scripts/lib/registry-stats.js"
FORWARD_PID="$DIR/forward.pid"
FORWARD_AT="$DIR/forward.address"   # ADDRESS PORT NETWORK of the running forward
FORWARD_OUT="$DIR/forward.out"
# Debian's client: the one the test host's engine is driven with.
DOCKER=/usr/bin/docker
STARTED_HERE="${WORKHUB_STATE_DIR:-$REPO_ROOT/.workhub}/npm-registry.pid"

# log: a step that changes something; note: what was found ready, into $INSTALL_LOG only, so a
# warm `up` and `warm` print nothing but their answer. Installers' output goes there too.
INSTALL_LOG="$DIR/install.log"
log() { printf 'registry: %s\n' "$*" >&2; }
note() { mkdir -p "$DIR" && printf '%s registry: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$INSTALL_LOG"; }
die() { log "error: $*"; exit 1; }
# shellcheck source=SCRIPTDIR/lib/logged.sh
source "$REPO_ROOT/scripts/lib/logged.sh"
read_pid() { cat "$1" 2>/dev/null || true; }
# Ours only if its environment carries our marker (verdaccio rewrites its command line to
# "verdaccio", so that cannot tell): a recycled pid is never signalled.
pid_ours() {
  [[ -n "$1" && -r "/proc/$1/environ" ]] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null && return 1
  { tr '\0' '\n' <"/proc/$1/environ"; } 2>/dev/null | grep -qxF -- "WORKHUB_REGISTRY_DIR=$DIR"
}
# The bridge forward is ours by the same mark in its environment.
forward_ours() {
  [[ -n "$1" && -r "/proc/$1/environ" ]] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null && return 1
  { tr '\0' '\n' <"/proc/$1/environ"; } 2>/dev/null | grep -qxF -- "WORKHUB_REGISTRY_FORWARD=$DIR"
}
tcp_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
url_for() { printf 'http://127.0.0.1:%s/\n' "$1"; }
# 0 when GET <url>-/ping answers 200 within 3 s.
# Through bash's /dev/tcp (no process started: a warm `up` and `warm` each ping once); the URL is
# one url_for made, http://127.0.0.1:PORT/.
ping_url() {
  local hostport="${1#http://}" status=""
  hostport="${hostport%/}"
  { exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}"; } 2>/dev/null || return 1
  printf 'GET /-/ping HTTP/1.0\r\nHost: %s\r\n\r\n' "$hostport" >&3 2>/dev/null || { exec 3<&-; return 1; }
  IFS= read -r -t 3 status <&3 || true
  exec 3<&-
  [[ "$status" =~ ^HTTP/1\.[01]\ 200 ]]
}

running_url() {
  local pid port
  pid="$(read_pid "$PIDFILE")"
  pid_ours "$pid" || return 1
  port="$(cat "$PORTFILE" 2>/dev/null)" || return 1
  ping_url "$(url_for "$port")" || return 1
  url_for "$port"
}

ensure_installed() {
  command -v node >/dev/null || die "node is not installed"
  command -v npm >/dev/null || die "npm is not installed"
  mkdir -p "$DIR"
  local want have
  want="$(printf '{\n  "name": "workhub-registry",\n  "private": true,\n  "description": "verdaccio for scripts/registry.sh",\n  "dependencies": { "verdaccio": "%s" },\n  "overrides": { "node-fetch": "%s" }\n}' \
    "$VERDACCIO_VERSION" "$NODE_FETCH_OVERRIDE")"
  have="$(node -p 'require(process.argv[1]).version' "$DIR/node_modules/verdaccio/package.json" 2>/dev/null || true)"
  if [[ "$have" == "$VERDACCIO_VERSION" && "$want" == "$(cat "$DIR/package.json" 2>/dev/null)" ]]; then
    return 0
  fi
  log "installing verdaccio $VERDACCIO_VERSION into $DIR (once; log: $INSTALL_LOG)"
  printf '%s\n' "$want" >"$DIR/package.json"
  rm -rf "$DIR/node_modules" "$DIR/package-lock.json"
  logged "npm install verdaccio" "$INSTALL_LOG" npm install --prefix "$DIR" --no-audit --no-fund --omit=dev
}

# The upstream is whatever npm is configured to use here, read at run time (never hard-coded).
upstream_url() {
  local up
  up="$(cd "$DIR" && npm config get registry)" || die "npm config get registry failed"
  [[ "$up" == http://* || "$up" == https://* ]] || die "npm's registry is not an http(s) URL: '$up'"
  [[ "$up" == */ ]] || up="$up/"
  printf '%s\n' "$up"
}

choose_port() {
  local p
  if [[ -n "${WORKHUB_REGISTRY_PORT:-}" ]]; then
    [[ "$WORKHUB_REGISTRY_PORT" =~ ^[0-9]+$ ]] || die "WORKHUB_REGISTRY_PORT is not a port: '$WORKHUB_REGISTRY_PORT'"
    tcp_open "$WORKHUB_REGISTRY_PORT" && die "WORKHUB_REGISTRY_PORT=$WORKHUB_REGISTRY_PORT: something else listens on 127.0.0.1:$WORKHUB_REGISTRY_PORT"
    echo "$WORKHUB_REGISTRY_PORT"
    return
  fi
  # The port used last time first, so the URL stays the same from run to run.
  for p in "$(cat "$PORTFILE" 2>/dev/null || true)" "$DEFAULT_PORT"; do
    [[ -n "$p" ]] && ! tcp_open "$p" && { echo "$p"; return; }
  done
  free_port
}

yaml_string() { node -e 'console.log(JSON.stringify(process.argv[1]))' "$1"; }

write_config() {
  local port="$1" upstream="$2"
  cat >"$CONFIG" <<EOF
# Generated by workhub scripts/registry.sh on each start; edits are overwritten.
storage: $(yaml_string "$STORAGE")
listen:
  - 127.0.0.1:$port
web:
  enable: false
auth:
  htpasswd:
    file: $(yaml_string "$DIR/htpasswd")
    max_users: -1
uplinks:
  upstream:
    url: $(yaml_string "$upstream")
    # A slow upstream: wait up to 60 s per request, and only after 5 failures in a row treat it
    # as offline for 1 min (meanwhile cached metadata and tarballs are still served).
    timeout: 60s
    max_fails: 5
    fail_timeout: 1m
    cache: true
    maxage: $MAXAGE
    agent_options:
      keepAlive: true
      maxSockets: 16
packages:
  '**':
    access: \$all
    publish: \$authenticated
    proxy: upstream
server:
  keepAliveTimeout: 60
# No audit proxy (it would call a registry host of its own, not the uplink): npm's audit calls
# fail at once here (verdaccio 6.8 answers 500) and npm goes on without a report.
middlewares:
  audit:
    enabled: false
# level http logs every request: a 'requested' line when it arrives (sub: in), a status line
# when it is answered, and a 'making request' line for each upstream call.
log:
  type: file
  path: $(yaml_string "$LOG")
  format: json
  level: http
EOF
}

# One 'up'/'down' at a time, so parallel callers never install verdaccio twice nor start two
# servers on one storage; one 'warm' at a time. A caller that waits says so (hold_lock).
take_lock() {
  local doing="is starting or stopping verdaccio (its install and storage: $DIR)"
  [[ "$1" != warm ]] || doing="is warming the npm registry cache"
  hold_lock "$DIR/.lock-$1" "$doing"
}

# The gateway address and network of the local Docker engine's default bridge, the one builds run
# on ("ADDRESS NETWORK"); nothing when no engine answers.
bridge_network() {
  "$DOCKER" network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}' 2>/dev/null || true
}

# ensure_forward PORT: the forward to 127.0.0.1:PORT on the bridge's gateway, same port, from the
# bridge's network only, runs (once the engine runs; until then nothing).
ensure_forward() {
  local port="$1" bridge address network pid
  bridge="$(bridge_network)"
  read -r address network <<<"$bridge" || true
  [[ -n "${address:-}" && -n "${network:-}" ]] || { note "no Docker bridge yet: no forward for builds"; return 0; }
  pid="$(read_pid "$FORWARD_PID")"
  if forward_ours "$pid"; then
    if [[ "$(cat "$FORWARD_AT" 2>/dev/null)" == "$address $port $network" ]] && tcp_open "$port" "$address"; then
      note "the forward for builds runs at $address:$port"
      return 0
    fi
    stop_forward
  fi
  log "forwarding $address:$port (Docker's bridge, for builds) to 127.0.0.1:$port, from $network only"
  WORKHUB_REGISTRY_FORWARD="$DIR" setsid nohup python3 "$REPO_ROOT/tools/forward.py" --listen "$address" \
    --port "$port" --target "127.0.0.1:$port" --allow "$network" >>"$FORWARD_OUT" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$FORWARD_PID"
  echo "$address $port $network" >"$FORWARD_AT"
  for _ in $(seq 50); do
    tcp_open "$port" "$address" && return 0
    forward_ours "$pid" || break
    sleep 0.2
  done
  tail -n 5 "$FORWARD_OUT" >&2
  die "the forward for builds does not listen on $address:$port (log: $FORWARD_OUT)"
}

stop_forward() {
  local pid
  pid="$(read_pid "$FORWARD_PID")"
  if forward_ours "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do forward_ours "$pid" || break; sleep 0.25; done
  fi
  rm -f "$FORWARD_PID" "$FORWARD_AT"
}

cmd_up() {
  local url
  take_lock up
  if url="$(running_url)"; then
    if [[ -n "${WORKHUB_REGISTRY_PORT:-}" && "$url" != "$(url_for "$WORKHUB_REGISTRY_PORT")" ]]; then
      die "verdaccio already runs at $url, not on WORKHUB_REGISTRY_PORT=$WORKHUB_REGISTRY_PORT; run 'scripts/registry.sh down' first"
    fi
    note "verdaccio already running at $url"
    ensure_forward "$(cat "$PORTFILE")"
    echo "$url"
    return 0
  fi
  ensure_installed
  local pid
  pid="$(read_pid "$PIDFILE")"
  if pid_ours "$pid"; then
    log "verdaccio (pid $pid) does not answer; restarting it"
    stop_pid "$pid"
  fi
  local port upstream
  port="$(choose_port)"
  upstream="$(upstream_url)"
  [[ "$upstream" == "$(url_for "$port")" || "$upstream" == "http://localhost:$port/" ]] \
    && die "npm's registry is this cache itself ($upstream); unset NPM_CONFIG_REGISTRY before 'up'"
  if [[ ! -d "$STORAGE" ]]; then
    # A new, empty storage: markers of earlier warm runs no longer hold.
    rm -rf "$WARM"
    mkdir -p "$STORAGE"
  fi
  write_config "$port" "$upstream"
  echo "$port" >"$PORTFILE"
  # Each request logs ~1 KB; start a new log past 128 MB (offsets from 'mark' before this
  # point are then refused by 'stats').
  if [[ -f "$LOG" ]] && (( $(stat -c %s "$LOG") > 134217728 )); then
    mv -f "$LOG" "$LOG.1"
  fi
  log "starting verdaccio $VERDACCIO_VERSION on 127.0.0.1:$port (upstream: npm's configured registry)"
  # setsid + nohup: the server outlives this shell and its terminal. Its log is appended to, so
  # offsets printed by 'mark' stay valid across restarts (until the rotation above). fd 9 (the
  # lock) is closed for it, or it would hold the lock for as long as it runs.
  printf '\n--- %s start\n' "$(date -u +%FT%TZ)" >>"$OUT"
  WORKHUB_REGISTRY_DIR="$DIR" setsid nohup node "$DIR/node_modules/verdaccio/bin/verdaccio" --config "$CONFIG" >>"$OUT" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PIDFILE"
  (umask 077 && mkdir -p "$(dirname "$STARTED_HERE")" && echo "$pid" >"$STARTED_HERE")
  url="$(url_for "$port")"
  for _ in $(seq 120); do
    ping_url "$url" && { note "verdaccio answers at $url"; ensure_forward "$port"; echo "$url"; return 0; }
    pid_ours "$pid" || { tail -n 30 "$OUT" >&2; die "verdaccio exited during startup (log: $OUT)"; }
    sleep 0.5
  done
  tail -n 30 "$OUT" >&2
  die "verdaccio did not answer $url-/ping within 60 s (log: $OUT)"
}

stop_pid() {
  local pid="$1"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 40); do pid_ours "$pid" || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 40); do pid_ours "$pid" || return 0; sleep 0.25; done
}

cmd_down() {
  local pid
  take_lock up
  pid="$(read_pid "$PIDFILE")"
  if [[ "${1:-}" == --if-started-here ]]; then
    if ! pid_ours "$pid"; then
      rm -f "$STARTED_HERE"
      return 0
    fi
    if [[ "$(read_pid "$STARTED_HERE")" != "$pid" ]]; then
      log "leaving verdaccio (pid $pid) running: another checkout started it ('scripts/registry.sh down' stops it)"
      return 0
    fi
  fi
  rm -f "$STARTED_HERE"
  stop_forward
  if pid_ours "$pid"; then
    log "stopping verdaccio (pid $pid)"
    stop_pid "$pid"
  else
    log "verdaccio is not running"
  fi
  rm -f "$PIDFILE"
}

cmd_url() {
  local url address port _
  url="$(running_url)" || die "the registry is not up; run 'scripts/registry.sh up'"
  if [[ "${1:-}" != --bridge ]]; then
    echo "$url"
    return 0
  fi
  read -r address port _ <"$FORWARD_AT" 2>/dev/null || true
  if ! forward_ours "$(read_pid "$FORWARD_PID")" || [[ -z "${address:-}" ]] || ! tcp_open "$port" "$address"; then
    die "no forward for builds on Docker's bridge; start the Docker engine, then 'scripts/registry.sh up'"
  fi
  echo "http://$address:$port/"
}

# Install each lockfile once through the registry with an empty npm cache, so every tarball it
# names is fetched through verdaccio and lands in its storage. One marker per lockfile hash.
cmd_warm() {
  local url dirs=() d lock hash tmp start
  url="$(cmd_url)"
  if [[ $# -gt 0 ]]; then
    for d in "$@"; do dirs+=("$(cd "$d" && pwd)"); done
  else
    # Every lockfile of the sample hubs (workhub's own `up` names its hubs' folders instead).
    while IFS= read -r lock; do
      dirs+=("$(dirname "$lock")")
    done < <(find "$REPO_ROOT/examples" -name package-lock.json -not -path '*/node_modules/*' | sort)
  fi
  [[ ${#dirs[@]} -gt 0 ]] || die "no lockfiles to warm"
  mkdir -p "$WARM"
  take_lock warm
  for d in "${dirs[@]}"; do
    [[ -f "$d/package.json" && -f "$d/package-lock.json" ]] || die "$d has no package.json + package-lock.json"
    hash="$(cat "$d/package.json" "$d/package-lock.json" | sha256sum | cut -d' ' -f1)"
    if [[ -f "$WARM/$hash" ]]; then
      note "warm already: ${d#"$REPO_ROOT"/}"
      continue
    fi
    log "warming ${d#"$REPO_ROOT"/} through $url (log: $INSTALL_LOG)"
    tmp="$(mktemp -d)"
    cp "$d/package.json" "$d/package-lock.json" "$tmp/"
    start=$SECONDS
    # --cache in the temp dir: nothing comes from ~/.npm, every tarball goes through verdaccio.
    logged "npm ci of ${d#"$REPO_ROOT"/} through $url" "$INSTALL_LOG" \
      env -u NODE_ENV npm ci --prefix "$tmp" --registry "$url" --cache "$tmp/.npm" --include=dev \
      --ignore-scripts --no-audit --no-fund
    rm -rf "$tmp"
    printf '%s\n' "$d" >"$WARM/$hash"
    note "warmed ${d#"$REPO_ROOT"/} in $((SECONDS - start)) s"
  done
}

# Byte offset of the end of verdaccio's log; pass it to 'stats --since' later.
cmd_mark() {
  [[ -f "$LOG" ]] || { echo 0; return; }
  stat -c %s "$LOG"
}

cmd_stats() {
  local since=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --since) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--since needs a byte offset (from 'mark')"; since="$2"; shift 2 ;;
      *) die "stats: unknown argument '$1'" ;;
    esac
  done
  [[ -f "$LOG" ]] || die "no verdaccio log yet ($LOG); run 'scripts/registry.sh up'"
  node "$STATS_JS" "$LOG" "$since"
}

cmd_logs() {
  local n="${1:-50}"
  echo "===== $LOG (last $n lines: time level message) ====="
  if [[ -f "$LOG" ]]; then
    tail -n "$n" "$LOG" | node -e '
const lv = { 10: "trace", 20: "debug", 25: "http", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
require("readline").createInterface({ input: process.stdin }).on("line", (l) => {
  try { const e = JSON.parse(l); console.log(new Date(e.time).toISOString(), lv[e.level] || e.level, e.msg); }
  catch { console.log(l); }
});'
  else
    echo "(missing)"
  fi
  echo "===== $OUT (last $n lines) ====="
  tail -n "$n" "$OUT" 2>/dev/null || echo "(missing)"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down "${2:-}" ;;
  url) cmd_url "${2:-}" ;;
  warm) shift; cmd_warm "$@" ;;
  mark) cmd_mark ;;
  stats) shift; cmd_stats "$@" ;;
  logs) cmd_logs "${2:-}" ;;
  *) echo "usage: $0 up | down [--if-started-here] | url [--bridge] | warm [DIR...] | mark | stats [--since OFFSET] | logs [N]" >&2; exit 2 ;;
esac
