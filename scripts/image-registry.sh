#!/usr/bin/env bash
# A throwaway image registry on 127.0.0.1 (Debian's docker-registry), with a login, for the
# registry build mode's end-to-end tests: they push there as CI would, and the test host pulls.
# Usage: scripts/image-registry.sh up | env | down [--purge] | logs
#
# `up` prints how to reach it as JSON: {"server": "127.0.0.1:PORT", "username", "password_file"}.
# Its config, storage, password and log live in ${WORKHUB_STATE_DIR:-.workhub}/image-registry.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=SCRIPTDIR/lib/daemon.sh
source "$REPO_ROOT/scripts/lib/daemon.sh"
STATE="${WORKHUB_STATE_DIR:-$REPO_ROOT/.workhub}/image-registry"
REGISTRY=/usr/bin/docker-registry
USER_NAME=workhub-ci
# The address it listens on: loopback, or (for the Swarm test bed) the bridge its nodes share.
ADDRESS="${WORKHUB_IMAGE_REGISTRY_ADDRESS:-127.0.0.1}"
# Its config, storage, password and log are this user's alone.
umask 077

log() { printf 'image-registry: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
read_pid() { cat "$1" 2>/dev/null || true; }
pid_running() {
  [[ -n "$1" && -d "/proc/$1" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null \
    && [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == docker-registry ]]
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The registry answers /v2/ (401 without a login): it is up.
answers() {
  local status
  status="$( (exec 3<>"/dev/tcp/$ADDRESS/$1" && printf 'GET /v2/ HTTP/1.0\r\nHost: %s\r\n\r\n' "$ADDRESS" >&3 \
    && head -n 1 <&3) 2>/dev/null || true)"
  [[ "$status" == "HTTP/1."[01]" 401"* || "$status" == "HTTP/1."[01]" 200"* ]]
}

ensure_package() {
  [[ -x "$REGISTRY" ]] && return 0
  log "installing docker-registry"
  apt-get update -qq >&2
  NEEDRESTART_SUSPEND=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >&2
  # The package's own service listens on every interface; only ours, on 127.0.0.1, may run.
  if pgrep -f "^$REGISTRY serve /etc/docker/registry/config.yml" >/dev/null; then
    log "stopping the docker-registry service the package started"
    /etc/init.d/docker-registry stop >&2 || pkill -f "^$REGISTRY serve /etc/docker/registry/config.yml" || true
  fi
}

ensure_login() {
  [[ -s "$STATE/password" ]] || (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(24), end="")' >"$STATE/password")
  [[ -s "$STATE/htpasswd" ]] && return 0
  # The registry reads bcrypt entries only; Python's crypt makes them without apache2-utils. The
  # registry checks the entry on every request (a pull or push makes dozens), and at bcrypt's usual
  # cost (2^12 rounds) each check costs about 0.25 s of CPU. The lowest cost (2^4 rounds, 16 to
  # mksalt) is enough here: the password is 24 random bytes, which no guessing reaches whatever the
  # cost, and the file never leaves this state directory (0600).
  PASSWORD_FILE="$STATE/password" USER_NAME="$USER_NAME" python3 -W ignore -c '
import crypt, os
password = open(os.environ["PASSWORD_FILE"]).read()
print(os.environ["USER_NAME"] + ":" + crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' >"$STATE/htpasswd"
}

write_config() {
  cat <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $STATE/storage
  delete:
    enabled: true
http:
  addr: $ADDRESS:$1
  secret: $(cat "$STATE/http-secret")
auth:
  htpasswd:
    realm: workhub-test
    path: $STATE/htpasswd
EOF
}

cmd_up() {
  mkdir -p "$STATE/storage"
  STATE="$(cd "$STATE" && pwd)"
  ensure_package
  ensure_login
  [[ -s "$STATE/http-secret" ]] || (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' >"$STATE/http-secret")
  [[ -s "$STATE/port" ]] || free_port >"$STATE/port"
  local port
  port="$(cat "$STATE/port")"
  write_config "$port" >"$STATE/config.yml"
  if ! pid_running "$(read_pid "$STATE/registry.pid")"; then
    log "starting docker-registry on $ADDRESS:$port"
    (close_inherited_fds && exec setsid nohup "$REGISTRY" serve "$STATE/config.yml") >>"$STATE/registry.log" 2>&1 </dev/null &
    echo $! >"$STATE/registry.pid"
  fi
  for _ in $(seq 50); do answers "$port" && break; sleep 0.2; done
  answers "$port" || { tail -n 30 "$STATE/registry.log" >&2; die "docker-registry does not answer on $ADDRESS:$port"; }
  print_env
}

print_env() {
  [[ -s "$STATE/port" ]] || die "no image registry in $STATE; run '$0 up' first"
  printf '{"server": "%s:%s", "username": "%s", "password_file": "%s", "storage": "%s"}\n' \
    "$ADDRESS" "$(cat "$STATE/port")" "$USER_NAME" "$STATE/password" "$STATE/storage"
}

cmd_down() {
  [[ -d "$STATE" ]] || { log "nothing to stop"; return 0; }
  local pid
  pid="$(read_pid "$STATE/registry.pid")"
  if pid_running "$pid"; then
    log "stopping docker-registry"
    kill "$pid"
    for _ in $(seq 50); do pid_running "$pid" || break; sleep 0.2; done
    if pid_running "$pid"; then kill -9 "$pid"; fi
  fi
  rm -f "$STATE/registry.pid"
  if [[ "${1:-}" == --purge ]]; then
    rm -rf "$STATE"
  fi
}

[[ -d "$STATE" ]] && STATE="$(cd "$STATE" && pwd)"
case "${1:-}" in
  up) cmd_up ;;
  env) print_env ;;
  down) cmd_down "${2:-}" ;;
  logs) tail -n 200 "$STATE/registry.log" 2>/dev/null || echo "(no registry log in $STATE)" ;;
  *) echo "usage: $0 up | env | down [--purge] | logs" >&2; exit 2 ;;
esac
