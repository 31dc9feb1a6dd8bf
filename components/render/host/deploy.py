"""Pure builders of the scripts that run a hub on the host: deploy (start beside, check, switch,
drain), stop, status, and the data scripts (purge, backup, restore). Typed config in, script text out;
config values enter only through `shell.script`, the documents they write come from `compose`.

A deploy never sends a request to a container that has not answered its health path, and never
stops the old container while it has requests in flight:

1. the new version starts in the slot that is not live (blue or green), beside the old one, with
   the same volumes, its settings in an env file only the deploy user can read;
2. it must answer its health path with 200 `healthyPasses` times in a row, probed directly on the
   stack's network, within `healthTimeoutSeconds`; if it does not, it is removed, the old one never
   stopped serving, and the deploy fails saying what the probes saw and the new container's last
   log lines;
3. the hub's proxy (HAProxy, which owns the host port) switches its backend to the new slot through
   its runtime API (the new container's address, then its state), with no reload and no wait for
   its DNS resolver: new requests go there, requests in flight finish on the old one, and no client
   connection is closed;
4. once the proxy holds no request to the old container (or `stopGraceSeconds` passed), the old one
   gets SIGTERM and the same grace period, and is removed with its env file.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.render.host.documents import (BACKEND, LIVE_MARK, LOOKUP_S, PROXY_API_PORT, RELOAD_WAIT_S, SLOTS,
                                              base_name, env_file, network_name, proxy_compose, proxy_config,
                                              proxy_container, slot_compose)
from components.config.models import DEFAULT_HELPER_IMAGE, DeploySettings, Hub, run_uid
from components.constants import DRIFT_MARK
from components.config.runtime import Runtime, volume_name
from components.render.host.build import PRIVATE_STATE, SERVING_IMAGE, STACK_IMAGES
from components.render.shell import Value, script

# Paths on the host, and the Compose project every hub of every stack belongs to: one file per
# container under ~/.workhub/compose, all named in its .env, so `docker compose ps` (or `logs`)
# there shows exactly what Pulumi deployed.
_LAYOUT = r"""
state="$HOME/.workhub"
compose_dir="$state/compose"
env_dir="$state/env"
secrets_dir="$state/secrets"
proxy_dir="$state/proxy/$base"
compose() { (cd "$compose_dir" && docker compose "$@"); }
exists() { docker container inspect "$1" >/dev/null 2>&1; }
running() { [ "$(docker container inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
# The .env naming every Compose file and every stack's profile (run with the compose lock held).
publish_files() {
  local files profiles
  files=$(cd "$compose_dir" && for file in *.yml; do [ ! -e "$file" ] || printf '%s\n' "$file"; done | paste -sd: -) || true
  profiles=$(cd "$compose_dir" && sed -n 's/.*"\{0,1\}workhub\.stack"\{0,1\}: "\([^"]*\)".*/\1/p' ./*.yml 2>/dev/null \
    | sort -u | paste -sd, -) || true
  printf 'COMPOSE_PROJECT_NAME=workhub\nCOMPOSE_FILE=%s\nCOMPOSE_PROFILES=%s\n' "$files" "$profiles" >"$compose_dir/.env.tmp"
  mv "$compose_dir/.env.tmp" "$compose_dir/.env"
}
# put_file NAME TEXT: the Compose file NAME.yml holds TEXT; drop_file NAME: it is gone. Under a
# lock, since the hubs of a stack deploy side by side.
put_file() {
  mkdir -p "$compose_dir"
  (
    flock 8
    printf '%s\n' "$2" >"$compose_dir/$1.yml.tmp"
    mv "$compose_dir/$1.yml.tmp" "$compose_dir/$1.yml"
    publish_files
  ) 8>>"$compose_dir/.lock"
}
drop_file() {
  [ -d "$compose_dir" ] || return 0
  (
    flock 8
    rm -f "$compose_dir/$1.yml"
    publish_files
  ) 8>>"$compose_dir/.lock"
}
# The slot whose container the proxy's config names (what it serves, even after a reboot); none
# before the first deploy.
live_slot() {
  case "$(sed -n "s/^$live_mark//p" "$proxy_dir/haproxy.cfg" 2>/dev/null | head -n 1)" in
    blue) echo blue ;; green) echo green ;;
  esac
}
# remove_slot CONTAINER: the container, its Compose file, env file and secret files are gone.
remove_slot() {
  docker rm -f "$1" >/dev/null 2>&1 || true
  drop_file "$1"
  rm -rf "${env_dir:?}/$1.env" "${secrets_dir:?}/$1"
}
"""

# `probe HOST PORT PATH` prints the HTTP status HOST:PORT answers PATH with, or why there is none
# (refused, no-answer). Plain bash, since the host may have no curl; run under `timeout`, so a
# probe never hangs.
PROBE_FUNCTION = r"""
# shellcheck disable=SC2016  # the probe's own text: bash -c expands it, with the probe's arguments
probe_src='exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || { echo refused; exit 0; }
printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
IFS= read -r line <&3 || { echo no-answer; exit 0; }
case "$line" in HTTP/1.[01]\ [0-9][0-9][0-9]*) echo "${line:9:3}" ;; *) echo no-answer ;; esac'
probe() { timeout 5 bash -c "$probe_src" probe "$@" 2>/dev/null || echo no-answer; }
"""
_PROBE = PROBE_FUNCTION + r"""probe_host=$publish_address
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1
"""

# `point_proxy SLOT`: the hub's running proxy sends new requests for SLOT to its container at the
# address Docker gave it now, and takes SLOT out of maintenance; for whenever a slot's container
# (re)starts while the proxy runs. The address goes in through the runtime API, not Docker's DNS:
# HAProxy replaces a server's address, but gives none to a server that has none (never found, or
# dropped after its container was gone for longer than the resolver's holds). Such a server keeps
# no old address either, so the resolver's first answer sets it: a wait of at most one lookup
# (resolve_wait). Fails, saying why, when the container has no address or the proxy does not take
# it. With it: `api COMMAND` (one command to the runtime API; its answer on stdout; fails on an
# error) and `ip_of CONTAINER`. Needs `say` and the values proxy, proxy_api_port, backend, base,
# network, port, resolve_wait (`proxy_values` and `_hub_values`).
POINT_PROXY = r"""
ip_of() {
  docker container inspect --format "{{with index .NetworkSettings.Networks \"$network\"}}{{.IPAddress}}{{end}}" "$1" 2>/dev/null
}
api() {
  local answer
  answer=$(docker exec "$proxy" bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$2" && printf "%s\n" "$1" >&3 && cat <&3' \
    api "$1" "$proxy_api_port" 2>&1) || { printf '%s\n' "$answer" >&2; return 1; }
  case "$answer" in
    *"No such"* | *"Unknown command"* | *"Require "* | *"nvalid"* | *"not allowed"* | *"Permission denied"*)
      printf 'the proxy refused "%s": %s\n' "$1" "$answer" >&2
      return 1 ;;
  esac
  printf '%s\n' "$answer"
}
# The address the proxy sends SLOT's requests to ("-" for none).
server_address() { api "show servers state $backend" | awk -v server="$1" '$4 == server { print $5 }'; }
point_proxy() {
  local ip start
  ip=$(ip_of "$base-$1") || ip=""
  if [ -z "$ip" ]; then
    say "$base-$1 has no address on $network"
    return 1
  fi
  api "set server $backend/$1 addr $ip port $port" >/dev/null || return 1
  if [ "$(server_address "$1")" != "$ip" ]; then
    start=$(date +%s%3N)
    until [ "$(server_address "$1")" = "$ip" ]; do
      if [ $(( $(date +%s%3N) - start )) -ge $(( resolve_wait * 1000 )) ]; then
        say "the proxy had no address for $base-$1, and its resolver did not find it at $ip within $resolve_wait s"
        return 1
      fi
      sleep 0.1
    done
    say "the proxy had no address for $base-$1: its resolver found it at $ip $(( $(date +%s%3N) - start )) ms later"
  fi
  api "set server $backend/$1 state ready" >/dev/null
}
"""

# slot_file SLOT: the Compose file a deploy writes for SLOT's container.
_SLOT_FILE = r"""
slot_file() { if [ "$1" = blue ]; then printf '%s' "$compose_blue"; else printf '%s' "$compose_green"; fi; }
"""

# Who owns the files of a hub's volumes. A hub runs as a uid of its own (config.run_uid); the files
# of its volumes must belong to it, also those a hub deployed before that had (owned by the image's
# user, uid 1000, or root), and again when its uid changes. ~/.workhub/owners/<volume> records the
# uid they were given to, so each volume is walked once per uid; a volume workhub makes anew (a
# deploy, a restore) forgets its record first. (Docker keeps no creation time of a volume to tell a
# volume made again by hand: its CreatedAt is its directory's last change.) A throwaway container of
# $helper_image does the walk, root but with no capability beyond changing owners and reading every
# directory, and no network.
OWNERS = r"""
owners_dir="$HOME/.workhub/owners"
# owned VOLUME UID: the files of VOLUME were given to UID.
owned() { [ "$(cat "$owners_dir/$1" 2>/dev/null)" = "$2" ]; }
# mark_owned VOLUME UID: recorded, so the next deploy does not walk VOLUME again.
mark_owned() {
  mkdir -p "$owners_dir"
  printf '%s\n' "$2" >"$owners_dir/$1.tmp"
  mv "$owners_dir/$1.tmp" "$owners_dir/$1"
}
# forget_owner VOLUME: VOLUME is new (or gone); its files are walked at the next chance.
forget_owner() { rm -f "$owners_dir/$1"; }
"""
REOWN = OWNERS + r"""
# reown VOLUME UID:GID: every file of VOLUME belongs to UID:GID (a link itself, never what it points to).
reown() {
  docker run --rm --network none --user 0 --cap-drop ALL --cap-add CHOWN --cap-add DAC_READ_SEARCH \
    --security-opt no-new-privileges -v "$1:/data" --entrypoint chown "$helper_image" -R -h "$2" /data
}
"""

# new_volume [--label L]... NAME: a volume of the hub's, labelled as the deploy labels its volumes
# (a restore's staged and kept copies, one host and Swarm).
NEW_VOLUME = r"""
new_volume() {
  docker volume create --label "workhub.stack=$stack" --label "workhub.hub=$hub" --label "workhub.volume=$volume_key" \
    "$@" >/dev/null
}
"""

_DEPLOY = _LAYOUT + _SLOT_FILE + _PROBE + POINT_PROXY + REOWN + r"""
say() { printf 'run: %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
proxy_config() { if [ "$1" = blue ]; then printf '%s' "$proxy_blue"; else printf '%s' "$proxy_green"; fi; }
# write_proxy_config SLOT: the proxy's config file, with SLOT live. The proxy's user in its container
# (the official image's haproxy, uid 99) reads it, so it alone is readable by all: it holds no
# secret, and ~/.workhub (0700) keeps the host's other accounts out.
write_proxy_config() {
  install -d -m 755 "$proxy_dir"
  proxy_config "$1" >"$proxy_dir/haproxy.cfg.tmp"
  chmod 644 "$proxy_dir/haproxy.cfg.tmp"
  mv "$proxy_dir/haproxy.cfg.tmp" "$proxy_dir/haproxy.cfg"
}

# What the probes of a new container saw, as words, with how long each went on (from its first
# probe to its last): "answered 500 for 58 s (116 times), refused the connection (1 time)".
declare -A seen=() seen_first=() seen_last=()
saw() {
  seen[$1]=$(( ${seen[$1]:-0} + 1 ))
  seen_first[$1]=${seen_first[$1]:-$(now_ms)}
  seen_last[$1]=$(now_ms)
}
what_was_seen() {
  local key words=() span
  for key in "${!seen[@]}"; do
    span=$(( (seen_last[$key] - seen_first[$key] + 500) / 1000 ))
    case "$key" in
      refused) words+=("${seen[$key]}:$span:refused the connection") ;;
      no-answer) words+=("${seen[$key]}:$span:gave no answer") ;;
      stopped) words+=("${seen[$key]}:$span:was not running") ;;
      crash-looping) ;;  # said on its own
      *) words+=("${seen[$key]}:$span:answered $key") ;;
    esac
  done
  [ "${#words[@]}" -gt 0 ] || { printf 'exited before a probe reached it'; return 0; }
  printf '%s\n' "${words[@]}" | sort -t: -k1,1nr | awk -F: '{
    printf "%s%s%s (%s time%s)", (NR > 1 ? ", " : ""), $3, ($2 > 0 ? " for " $2 " s" : ""), $1, ($1 == 1 ? "" : "s") }'
}
# passes PROBE PAUSE [EACH]: the function PROBE (it prints what one probe saw) sees 200 healthy_passes
# times in a row within health_timeout seconds, PAUSE seconds apart; what it saw is counted in `seen`.
# A probe that sees `crash-looping` ends the wait at once. The function EACH, if given, runs before
# each probe.
passes() {
  local deadline count=0 outcome
  deadline=$(( $(date +%s) + health_timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    [ -z "${3:-}" ] || "$3"
    outcome=$("$1")
    saw "$outcome"
    [ "$outcome" = crash-looping ] && return 1
    if [ "$outcome" = 200 ]; then
      count=$((count + 1))
      [ "$count" -ge "$healthy_passes" ] && return 0
    else
      count=0
    fi
    sleep "$2"
  done
  return 1
}
# A new container that Docker has restarted this many times (it exits at start, and its restart
# policy starts it again) is crash-looping: the deploy fails then, with its exit code and its log,
# instead of waiting out the rest of health_timeout for an app that cannot come up.
crash_loop_restarts=3
# The exit code of the new container's last run. Docker keeps it only while it waits to restart the
# container (State.Restarting; a container started again has none yet): read then, waiting at most 5 s.
last_exit_code() {
  local state tries=50
  while state=$(docker container inspect --format '{{.State.Restarting}} {{.State.Running}} {{.State.ExitCode}}' \
    "$new_container" 2>/dev/null); do
    case "$state" in "true "* | "false false "*) echo "${state##* }"; return 0 ;; esac
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || break
    sleep 0.1
  done
  echo unknown
}
# The new container's health path, probed directly on the stack's network.
new_container_answers() {
  local state
  state=$(docker container inspect --format '{{.State.Running}} {{.RestartCount}}' "$new_container" 2>/dev/null) \
    || state="false 0"
  if [ "${state#* }" -ge "$crash_loop_restarts" ]; then
    echo crash-looping
  elif [ "${state% *}" = true ]; then
    probe "$(ip_of "$new_container")" "$port" "$health_path"
  else
    echo stopped
  fi
}
# The hub's health path through its host port (the proxy).
host_port_answers() { probe "$probe_host" "$host_port" "$health_path"; }
# The new container's own log lines, each once, as they come: "<container> | <line>" on stderr,
# between the deploy's own lines. Read at each probe with Docker's timestamps (of fixed width, so they
# compare as text), from the last one shown on: the lines of every run of the container, also when
# Docker restarts it (each run's log is a stream of its own, which `docker logs --follow` would leave).
app_logged=""
show_app_log() {
  local line stamp
  while IFS= read -r line; do
    stamp=${line%% *}
    [[ "$stamp" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+)$ ]] && [[ "$stamp" > "$app_logged" ]] || continue
    app_logged=$stamp
    printf '%s | %s\n' "$new_container" "${line#* }" >&2
  done < <(docker logs --timestamps ${app_logged:+--since "$app_logged"} "$new_container" 2>&1)
}
# (Its lines up to the end of a wait that failed are shown once it has stopped: see below.)
wait_healthy() { passes new_container_answers "$health_interval" show_app_log && show_app_log; }
through_proxy() { passes host_port_answers 0.2; }
# switch_to SLOT: the proxy sends every new request to SLOT's container and none to the other's
# (requests in flight finish where they are; no connection is closed), and its config file says so
# for its next start.
switch_to() {
  local other
  if [ "$1" = blue ]; then other=green; else other=blue; fi
  write_proxy_config "$1"
  running "$proxy" || return 0
  point_proxy "$1" && api "set server $backend/$other state maint" >/dev/null
}
# The process of the proxy that answers its runtime API (a reload starts another).
worker_pid() { api "show info" 2>/dev/null | sed -n 's/^Pid: //p'; }
# reload_to SLOT: the running proxy takes its new config, with SLOT live, in a graceful reload: a
# new process gets the listening sockets and serves SLOT, the old one finishes its requests.
reload_to() {
  local before now deadline
  write_proxy_config "$1"
  before=$(worker_pid)
  docker kill --signal USR2 "$proxy" >/dev/null
  deadline=$(( $(date +%s) + reload_wait ))
  until now=$(worker_pid) && [ -n "$now" ] && [ "$now" != "$before" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "the proxy's new process did not answer its runtime API within $reload_wait s of the reload"
      return 1
    fi
    sleep 0.2
  done
  point_proxy "$1"
}
# drain SLOT: wait until the proxy has no request in flight on SLOT's server, for at most
# stop_grace seconds.
drain() {
  local deadline current
  deadline=$(( $(date +%s) + stop_grace ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    current=$(api "show stat" | awk -F, -v backend="$backend" -v server="$1" '$1 == backend && $2 == server { print $5 }') \
      || return 0
    [ "${current:-0}" -eq 0 ] && return 0
    sleep 0.5
  done
  say "$base-$1 still had requests in flight after $stop_grace s (workhub:deploy.stopGraceSeconds); stopping it anyway"
}
# stop_old CONTAINER: it gets SIGTERM and stop_grace seconds to exit. One that Docker had to kill
# then (exit code 137 after the whole grace) ignores SIGTERM: every deploy waits that long for it,
# which is said, once, with the fix; the deploy goes on.
stop_old() {
  local start code took
  start=$(now_ms)
  docker stop --time "$stop_grace" "$1" >/dev/null 2>&1 || true
  took=$(( $(now_ms) - start ))
  code=$(docker container inspect --format '{{.State.ExitCode}}' "$1" 2>/dev/null) || return 0
  if [ "$stop_grace" -gt 0 ] && [ "$code" = 137 ] && [ "$took" -ge $(( stop_grace * 1000 )) ]; then
    say "note: $1 ignored SIGTERM: Docker killed it (exit code 137) after the $stop_grace s of workhub:deploy.stopGraceSeconds, a wait every deploy of $hub makes once the old container has drained (Node as PID 1 ignores SIGTERM unless the app handles it). The deploy succeeded; to end the wait, handle SIGTERM in the app (close the server, then exit), or start it under an init process (tini or dumb-init as the image's ENTRYPOINT; workhub has no per-hub setting for Docker's init), or lower workhub:deploy.stopGraceSeconds (it also bounds how long requests in flight may take)"
  fi
}
new_container=""
started=false
switched=false
abandon_new() {
  started=false
  say "removing $new_container; ${live_container:-nothing} keeps serving"
  remove_slot "$new_container"
}
# Volumes whose files this deploy gave to the hub's uid, and the uid:gid the container serving until
# the switch runs as (when it is another).
reowned=()
old_owner=""
# Once the new container serves, its volumes are recorded as its uid's; before, the container that
# keeps serving gets their files back, so it can write to them as it did.
settle_owners() {
  local volume
  for volume in "${reowned[@]}"; do
    if [ "$switched" = true ]; then
      mark_owned "$volume" "$uid"
    elif [ -n "$old_owner" ]; then
      if reown "$volume" "$old_owner"; then
        say "gave the files of $volume back to uid $old_owner, as $live_container runs"
      else
        say "could not give the files of $volume back to uid $old_owner; $live_container may fail to write to them"
      fi
    fi
  done
}
# A deploy that failed is recorded beside the builds (~/.workhub/deploys.jsonl, in the shape of a
# build record), so `status` tells a built image that never took over from one that serves.
log=""
record_failed_deploy() {
  printf '{"hub": "%s", "stack": "%s", "image": "%s", "end_ms": %s, "result": "deploy failed", "log": "%s"}\n' \
    "$hub" "$stack" "$image" "$(now_ms)" "$log" >>"$state/deploys.jsonl" 2>/dev/null || true
}
# However the script ends, a new container that never got traffic does not stay behind.
finish() {
  local code=$?
  if [ "$started" = true ] && [ "$switched" = false ]; then abandon_new; fi
  settle_owners
  [ "$code" -eq 0 ] || record_failed_deploy
  rm -rf "$work"
}
work=$(mktemp -d)
trap finish EXIT
""" + PRIVATE_STATE + r"""
install -d -m 755 "$proxy_dir"
install -d -m 700 "$env_dir" "$secrets_dir"
# One deploy of this hub at a time: an interrupted one may still be finishing on the host.
exec 7>>"$state/deploy-$base.lock"
if ! flock -n 7; then
  say "waiting for another deploy of $base to finish"
  flock 7
fi
if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "FAILED: $image is not on the host; build or promote it first"
  exit 1
fi
if ! docker image inspect "$proxy_image" >/dev/null 2>&1; then
  say "pulling the proxy image $proxy_image"
  docker pull --quiet "$proxy_image" >&2 || { say "FAILED: cannot pull $proxy_image; set workhub:proxyImage to an image the host has"; exit 1; }
fi
docker network inspect "$network" >/dev/null 2>&1 \
  || docker network create --label "workhub.stack=$stack" "$network" >/dev/null 2>&1 \
  || docker network inspect "$network" >/dev/null

# What serves now: the live slot behind the proxy, or a container from before workhub ran a proxy.
live=$(live_slot)
live_container=""
# A live slot whose container was removed or stopped by hand (drift): its files go once the new one serves.
stale=""
[ -n "$live" ] && ! running "$base-$live" && stale="$base-$live"
if [ -n "$live" ] && running "$base-$live"; then
  live_container="$base-$live"
  if running "$proxy" && [ "$(cat "$compose_dir/$proxy.yml" 2>/dev/null)" = "$proxy_file" ] \
    && [ "$(cat "$proxy_dir/haproxy.cfg")" = "$(proxy_config "$live")" ]; then
    # The proxy runs as its config says (an interrupted deploy may have written it and not switched).
    switch_to "$live"
  fi
fi
legacy=""
if exists "$base" && [ -z "$(docker container inspect --format '{{index .Config.Labels "workhub.slot"}}' "$base")" ]; then
  legacy=$base
  [ -n "$live_container" ] || live_container=$legacy
fi
previous=""
[ -n "$live_container" ] && previous=$(docker container inspect --format '{{.Config.Image}}' "$live_container")
if [ "$live" = blue ]; then slot=green; else slot=blue; fi
new_container="$base-$slot"
if exists "$new_container"; then
  say "removing $new_container, left from an earlier deploy that did not finish"
  # An interrupted deploy may have left it serving next to the live one: out of rotation first,
  # then its requests in flight finish.
  if running "$proxy"; then
    api "set server $backend/$slot state maint" >/dev/null 2>&1 || true
    drain "$slot"
  fi
  remove_slot "$new_container"
fi

# Named volumes: created on the first deploy, never removed by a deploy, with one exception: the
# move from a container from before the proxy. While that container still serves, its data is the
# truth, and each volume gets a copy of it (that container stops for the copy, so nothing it writes
# meanwhile is lost: the one pause of the move). A copy counts only once verified: ~/.workhub/seeded/
# <volume> then records the container's ID and when it stopped. (A record on the host, since a
# Docker volume's labels cannot change after it is made, and the volume is made before the copy.) A
# volume without that record (an attempt that failed or was interrupted, also by a workhub from
# before this check), or whose container served again since (its stop time changed), holds no copy
# of the data as it is now: it is removed and made again, and the copy runs again.
seeded_dir="$state/seeded"
legacy_stopped() { docker container inspect --format '{{.Id}} {{.State.FinishedAt}}' "$legacy"; }
seeded() { ! running "$legacy" && [ "$(cat "$seeded_dir/$1" 2>/dev/null)" = "$(legacy_stopped)" ]; }
stop_legacy() {
  if running "$legacy"; then
    say "stopping $legacy (from before the proxy) to move its data into workhub's volumes"
    docker stop --time "$stop_grace" "$legacy" >/dev/null
  fi
}
# seed_failed VOLUME TARGET WHY: the half-filled VOLUME goes (unrecorded, so the next `up` copies
# again even if it stays), the container from before the proxy serves again, and the deploy fails.
seed_failed() {
  rm -f "$seeded_dir/$1"
  forget_owner "$1"
  docker volume rm "$1" >/dev/null 2>&1 || say "could not remove the half-filled $1; it is not marked as a copy, so the next up copies again"
  if docker start "$legacy" >/dev/null; then
    say "restarted $legacy: it serves as before the move, with its data"
  else
    say "could not restart $legacy (above): start it with docker start $legacy"
  fi
  say "FAILED: the data of $legacy:$2 could not be moved into $1: $3; nothing was switched; fix that in $legacy and run up again"
  exit 1
}
# listing: one line per file (its sha256, then its path) and per directory or other entry (its type,
# then its path), sorted, paths without their leading ./, so a copy and its source compare line by
# line. source_listing ARCHIVE reads the archive `docker cp` made, on this host (GNU tar: each file's
# content goes through sha256sum, none is written; a hard link is a file with its target's content);
# volume_listing VOLUME reads the volume, in a helper container.
source_listing() {
  # shellcheck disable=SC2016  # tar runs this command for each file, with TAR_FILENAME set
  tar -xf "$1" --to-command='printf "%s %s\n" "$(sha256sum | cut -c1-64)" "$TAR_FILENAME"' >"$1.sums"
  tar -tvf "$1" --quoting-style=literal | awk -v sums="$1.sums" '
    BEGIN { while ((getline line < sums) > 0) { sum[substr(line, 66)] = substr(line, 1, 64); print line } }
    {
      type = substr($1, 1, 1)
      for (k = 1; k <= 5; k++) sub(/^[^ ]+ +/, "")
      if (type == "-") next
      if (type == "h") { split($0, parts, / link to /); print sum[parts[2]] " " parts[1]; next }
      sub(/ -> .*/, "")
      print type " " $0
    }' | sed -e 's|^\([^ ]*\) \./|\1 |' -e 's|/$||' | awk 'NF > 1 && $2 != "."' | sort
}
# The bytes of the files in ARCHIVE.
source_bytes() { tar -tvf "$1" | awk '$1 ~ /^-/ { n += $3 } END { print n + 0 }'; }
# Run as the hub's uid, with no capability and no network: it reads the files it was given.
volume_listing() {
  docker run --rm --network none --user "$uid:$uid" --cap-drop ALL --security-opt no-new-privileges \
    -v "$1:/seed:ro" --entrypoint sh "$helper_image" -c \
    'cd /seed && find . -mindepth 1 -type f -exec sha256sum {} + | sed "s|  | |" && find . -mindepth 1 ! -type f | while IFS= read -r p; do
       if [ -L "$p" ]; then t=l; elif [ -d "$p" ]; then t=d; elif [ -p "$p" ]; then t=p; elif [ -c "$p" ]; then t=c; elif [ -b "$p" ]; then t=b; else t=s; fi
       printf "%s %s\n" "$t" "$p"; done' \
    | sed 's|^\([^ ]*\) \./|\1 |' | sort
}
# seed I: a verified copy of the data the container from before the proxy has at volume I's path,
# into volume I (just made, empty); fails the deploy (seed_failed) otherwise.
seed() {
  local volume=${volumes[$1]} target=${volume_targets[$1]} files bytes
  stop_legacy
  rm -f "$seeded_dir/$volume"
  if ! docker cp "$legacy:$target/." - >"$work/seed.tar" 2>"$work/seed.err"; then
    if grep -q 'Could not find the file\|No such container:path' "$work/seed.err"; then
      say "$legacy has nothing at $target: $volume starts with what the image has there"
      return 0
    fi
    seed_failed "$volume" "$target" "docker cp failed: $(tail -n 1 "$work/seed.err")"
  fi
  source_listing "$work/seed.tar" >"$work/source.list" \
    || seed_failed "$volume" "$target" "the archive docker cp made cannot be read"
  # The files are the hub's: the volume's top belongs to its uid, which writes the copy (no root,
  # no capability), so every file is its own from the start.
  reown "$volume" "$uid:$uid" || seed_failed "$volume" "$target" "its top directory cannot be given to uid $uid"
  if ! docker run --rm -i --network none --user "$uid:$uid" --cap-drop ALL --security-opt no-new-privileges \
    -v "$volume:/seed" --entrypoint tar "$helper_image" -xf - -C /seed <"$work/seed.tar" 2>"$work/seed.err"; then
    seed_failed "$volume" "$target" "the copy into it failed: $(tail -n 1 "$work/seed.err")"
  fi
  volume_listing "$volume" >"$work/volume.list" || seed_failed "$volume" "$target" "its copy cannot be read back"
  if ! cmp -s "$work/source.list" "$work/volume.list"; then
    seed_failed "$volume" "$target" "the copy differs from its source ($(diff "$work/source.list" "$work/volume.list" \
      | grep -c '^[<>]') line(s) of their sha256 listings, first: $(diff "$work/source.list" "$work/volume.list" | grep -m 1 '^[<>]'))"
  fi
  files=$(grep -c -v '^[a-z] ' "$work/source.list" || true)
  bytes=$(source_bytes "$work/seed.tar")
  mkdir -p "$seeded_dir"
  legacy_stopped >"$seeded_dir/$volume.tmp"
  mv "$seeded_dir/$volume.tmp" "$seeded_dir/$volume"
  say "moved $files file(s) ($bytes bytes) from $legacy:$target into $volume; the copy matches its source (sha256 of each file)"
}
seeding=false
[ -n "$legacy" ] && [ "$live_container" = "$legacy" ] && [ -z "$live" ] && seeding=true
made=()
for i in "${!volumes[@]}"; do
  if docker volume inspect "${volumes[$i]}" >/dev/null 2>&1; then
    if [ "$seeding" = false ] || seeded "${volumes[$i]}"; then continue; fi
    say "${volumes[$i]} holds no verified copy of the data $legacy has now (an earlier move did not finish): copying again"
    stop_legacy
    forget_owner "${volumes[$i]}"
    docker volume rm "${volumes[$i]}" >/dev/null \
      || seed_failed "${volumes[$i]}" "${volume_targets[$i]}" "the volume from the earlier attempt cannot be removed (above)"
  fi
  made+=("$i")
  docker volume create --label "workhub.stack=$stack" --label "workhub.hub=$hub" \
    --label "workhub.volume=${volume_keys[$i]}" "${volumes[$i]}" >/dev/null
  say "created volume ${volumes[$i]} for ${volume_targets[$i]}"
  if [ "$seeding" = true ]; then seed "$i"; fi
done
# A new volume takes what the image has at its path, as Docker gives it at a first mount (the slots
# mount with nocopy): a container made, never started, and removed.
for i in "${made[@]}"; do
  forget_owner "${volumes[$i]}"
  docker rm "$(docker create --network none --entrypoint true -v "${volumes[$i]}:${volume_targets[$i]}" "$image")" \
    >/dev/null
done
# The files of each volume belong to the hub's uid; walked once per volume and uid.
if [ -n "$live_container" ] && [ "$live_container" != "$legacy" ]; then
  old_owner=$(docker top "$live_container" -o pid,uid,gid 2>/dev/null | awk 'NR == 2 { print $2 ":" $3 }') || true
  [ "$old_owner" != "$uid:$uid" ] || old_owner=""
fi
for i in "${!volumes[@]}"; do
  owned "${volumes[$i]}" "$uid" && continue
  if [ -n "$old_owner" ]; then
    say "giving the files of ${volumes[$i]} to uid $uid, the hub's own (once); until the switch, $live_container (uid $old_owner) can read them but not write"
  else
    say "giving the files of ${volumes[$i]} to uid $uid, the hub's own (once)"
  fi
  reowned+=("${volumes[$i]}")
  if ! reown "${volumes[$i]}" "$uid:$uid"; then
    say "FAILED: could not give the files of ${volumes[$i]} to uid $uid (above)"
    exit 1
  fi
done

# The new container's settings: the plain ones and the one-line secrets in its env file, the
# others as files; none of it in a command line or a log.
umask 077
{
  printf '%s' "$env_plain"
  for i in "${!secret_env[@]}"; do
    var="secret_$i"
    printf '%s=%s\n' "${secret_env[$i]}" "${!var}"
  done
} >"$env_dir/$new_container.env.tmp"
mv "$env_dir/$new_container.env.tmp" "$env_dir/$new_container.env"
if [ "${#secret_files[@]}" -gt 0 ]; then
  mkdir -p "$secrets_dir/$new_container"
  for i in "${!secret_files[@]}"; do
    var="secret_$(( ${#secret_env[@]} + i ))"
    printf '%s' "${!var}" >"$secrets_dir/$new_container/${secret_files[$i]}"
  done
fi

say "starting $new_container from $image beside ${live_container:-nothing} (PORT $port); previous image: ${previous:-none}"
put_file "$new_container" "$(slot_file "$slot")"
started=true
started_ms=$(now_ms)
if [ "${#secret_files[@]}" -gt 0 ]; then
  compose up --no-start --no-deps --no-build "$new_container" >&2
  # Secrets with line breaks become files only the hub's uid reads, put there before it starts.
  tar -C "$secrets_dir/$new_container" --owner="$uid" --group="$uid" --numeric-owner --mode=0400 \
    --transform 's|^|run/secrets/|' -cf - "${secret_files[@]}" | docker cp - "$new_container:/"
  docker start "$new_container" >/dev/null
else
  compose up --detach --no-deps --no-build "$new_container" >&2
fi
if ! wait_healthy; then
  waited=$(( ($(now_ms) - started_ms + 500) / 1000 ))
  restarts=$(docker container inspect --format '{{.RestartCount}} {{.State.ExitCode}}' "$new_container" 2>/dev/null || echo '0 0')
  exited=""
  [ "${restarts% *}" -gt 0 ] && exited=" It exited (last exit code ${restarts#* }) and Docker restarted it ${restarts% *} time(s)."
  [ -z "${seen[crash-looping]:-}" ] || crash_code=$(last_exit_code)
  # It runs no more (Docker would start it again), so the last of its lines shown are the last of its
  # log. The whole log stays on the host (the container goes).
  docker stop --time 0 "$new_container" >/dev/null 2>&1 || true
  show_app_log
  mkdir -p "$state/logs"
  log="$state/logs/$new_container-$(date -u +%Y%m%dT%H%M%SZ).log"
  docker logs "$new_container" >"$log" 2>&1 || true
  abandon_new
  if [ -n "$legacy" ] && ! running "$legacy"; then docker start "$legacy" >/dev/null && say "restarted $legacy"; fi
  if [ -n "${seen[crash-looping]:-}" ]; then
    say "FAILED: $new_container is crash-looping: it exited (last exit code $crash_code) and Docker restarted it ${restarts% *} time(s) in the $waited s after its start, and it never answered $health_path with 200; workhub stopped waiting there, not after the $health_timeout s of workhub:deploy.healthTimeoutSeconds. Its probes: it $(what_was_seen). Its last lines are above: fix what makes it exit, then run up again. It got no request from clients; full log on the host: $log"
  else
    say "FAILED: $new_container never answered $health_path with 200 $healthy_passes time(s) in a row within $health_timeout s (workhub:deploy.healthTimeoutSeconds): it $(what_was_seen).$exited It got no request from clients; full log on the host: $log"
  fi
  exit 1
fi
healthy_ms=$(now_ms)
say "$new_container answers $health_path ($healthy_passes time(s) in a row); switching the proxy to it"

# The switch. A proxy that runs as configured switches through its runtime API. One whose config
# changed otherwise (the hub's port, a timeout) switches in a graceful reload. One that is new, or
# whose image or port changed, starts now, after the container from before the proxy gave up the port.
if running "$proxy" && [ "$(cat "$compose_dir/$proxy.yml" 2>/dev/null)" = "$proxy_file" ] && [ -n "$live" ] \
  && [ "$(cat "$proxy_dir/haproxy.cfg" 2>/dev/null)" != "$(proxy_config "$live")" ]; then
  say "the proxy's config changed beyond its live slot: it switches in a graceful reload"
  switched=true
  if ! reload_to "$slot"; then
    say "FAILED: the proxy did not come back from its reload serving $new_container"
    exit 1
  fi
elif running "$proxy" && [ "$(cat "$compose_dir/$proxy.yml" 2>/dev/null)" = "$proxy_file" ]; then
  if ! switch_to "$slot"; then
    say "FAILED: the proxy did not take the switch (above)"
    [ -n "$live" ] && switch_to "$live" || true
    abandon_new
    exit 1
  fi
else
  switch_to "$slot"
  if [ -n "$legacy" ] && running "$legacy"; then
    say "stopping $legacy (from before the proxy), so the proxy can take port $host_port"
    docker stop --time "$stop_grace" "$legacy" >/dev/null
  fi
  gap_start=$(now_ms)
  put_file "$proxy" "$proxy_file"
  # From here the proxy's config names the new container: it stays, whatever happens next.
  switched=true
  compose up --detach --no-deps --no-build "$proxy" >&2
  if ! through_proxy; then
    say "FAILED: the proxy $proxy does not answer on $probe_host:$host_port; its log:"
    docker logs --tail 40 "$proxy" >&2 2>&1 || true
    exit 1
  fi
  say "the proxy $proxy serves port $host_port (it was not there, or was replaced: about $(( $(now_ms) - gap_start )) ms without it)"
fi
switched_ms=$(now_ms)
switched=true
if ! through_proxy; then
  say "FAILED: $probe_host:$host_port does not answer $health_path through the proxy after the switch"
  if [ -n "$live" ] && running "$live_container"; then
    switch_to "$live" && say "switched back to $live_container"
    abandon_new
  fi
  exit 1
fi
say "$base serves from $new_container (switched $(( switched_ms - healthy_ms )) ms after it was healthy)"

# The old container finishes its requests, then stops; its env file goes with it.
if [ -n "$live_container" ] && [ "$live_container" != "$new_container" ]; then
  if [ "$live_container" = "$legacy" ]; then
    # Kept, stopped and renamed, with its writable layer and its volumes: the way back, until removed by hand.
    docker stop --time "$stop_grace" "$legacy" >/dev/null 2>&1 || true
    docker update --restart no "$legacy" >/dev/null
    kept="$legacy.pre-proxy-$(date -u +%Y%m%dT%H%M%SZ)"
    docker rename "$legacy" "$kept"
    drop_file "$legacy"
    for volume in "${volumes[@]}"; do rm -f "$seeded_dir/$volume"; done
    say "kept $legacy (from before the proxy), stopped, as $kept with its data; when satisfied: docker rm --volumes $kept"
  else
    drain "$live"
    stop_old "$live_container"
    remove_slot "$live_container"
    say "stopped $live_container"
  fi
fi
if [ -n "$stale" ]; then
  remove_slot "$stale"
  say "removed what was left of $stale (it was not running)"
fi
# Anything the old container wrote while it still ran (where its modes let it) belongs to the hub's uid too.
if [ -n "$old_owner" ]; then
  for volume in "${reowned[@]}"; do reown "$volume" "$uid:$uid"; done
fi
printf '{"container": "%s", "slot": "%s", "proxy": "%s", "url": "http://%s:%s", "image": "%s", "image_id": "%s", "previous_image": "%s", "verified_at": "%s", "switch_ms": %s}\n' \
  "$new_container" "$slot" "$proxy" "$probe_host" "$host_port" "$image" "$(docker image inspect --format '{{.Id}}' "$image")" \
  "$previous" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((switched_ms - healthy_ms))"
"""


@dataclass(frozen=True)
class Serving:
    """How a stack serves its hubs on the host: where the proxies publish, how a new container takes
    over, and the proxy's image."""

    publish_address: str
    deploy: DeploySettings
    proxy_image: str
    helper_image: str = DEFAULT_HELPER_IMAGE
    """The image of the short-lived containers that copy, check or re-own a volume (workhub:helperImage)."""

    @property
    def helper(self) -> str:
        return self.helper_image


def _hub_values(hub: Hub, stack: str, publish_address: str) -> dict[str, Value]:
    return {
        "hub": hub.name,
        "stack": stack,
        "base": base_name(hub.name, stack),
        "proxy": proxy_container(hub.name, stack),
        "network": network_name(stack),
        "port": hub.port,
        "publish_address": publish_address,
        "live_mark": LIVE_MARK,
    }


def proxy_values() -> dict[str, Value]:
    """What POINT_PROXY reads besides `_hub_values`: the proxy's backend, its runtime API's port,
    and how long its resolver takes for one lookup (the wait when HAProxy cannot take an address)."""
    return {"backend": BACKEND, "proxy_api_port": PROXY_API_PORT, "resolve_wait": LOOKUP_S}


def _documents(hub: Hub, stack: str, image: str, host_port: int, runtime: Runtime,
               serving: Serving) -> dict[str, Value]:
    """The Compose files a deploy of `image` writes (each slot's, the proxy's): what the check compares."""
    return {
        **{f"compose_{slot}": slot_compose(hub, stack, slot, image, runtime, serving.deploy) for slot in SLOTS},
        "proxy_file": proxy_compose(hub, stack, host_port, serving.publish_address, serving.proxy_image),
    }


def run_summary(hub: Hub, stack: str, image: str, host_port: int, serving: Serving) -> dict[str, Value]:
    """The plain values at the top of a hub's run script, by the script's own names (`image`,
    `host_port`, ...): what a preview shows of the run as data (its command's `summary` input, which
    workhub.summary reads). The documents the script writes, which restate its triggers, image and
    port, are not among them, nor is any secret (secret values reach the script only when it runs)."""
    deploy = serving.deploy
    return {
        **_hub_values(hub, stack, serving.publish_address),
        "host_port": host_port,
        "image": image,
        "health_path": hub.health_path,
        "health_timeout": deploy.health_timeout_seconds,
        "healthy_passes": deploy.healthy_passes,
        "health_interval": f"{deploy.health_interval_ms / 1000:g}",
        "stop_grace": deploy.stop_grace_seconds,
        "proxy_image": serving.proxy_image,
        **proxy_values(),
        "reload_wait": RELOAD_WAIT_S,
        "helper_image": serving.helper,
        "uid": run_uid(hub, stack),
    }


def run_script(hub: Hub, stack: str, image: str, host_port: int, runtime: Runtime, serving: Serving) -> str:
    """Deploy `image` as the hub's new version behind its proxy, without dropping a request: start
    it beside the live one, wait for `healthyPasses` answers of 200, switch the proxy, drain and
    stop the old one; a new version that never gets healthy is removed and the old one keeps
    serving. The secret values arrive at run time as secret_0, secret_1, ... (see Runtime)."""
    return script(
        {
            **run_summary(hub, stack, image, host_port, serving),
            "env_plain": env_file(runtime),
            "secret_env": list(runtime.secret_env),
            "secret_files": list(runtime.secret_files),
            "volumes": [volume.docker_name for volume in runtime.volumes],
            "volume_keys": [volume.name for volume in runtime.volumes],
            "volume_targets": [volume.target for volume in runtime.volumes],
            **{f"proxy_{slot}": proxy_config(hub, stack, slot, host_port, serving.deploy) for slot in SLOTS},
            **_documents(hub, stack, image, host_port, runtime, serving),
        },
        _DEPLOY,
    )


# Prints one line per way the host differs from what the last deploy left (nothing when it does
# not): the live slot's container is there, running, from the deployed image and as its Compose
# file says (Compose's own fingerprint of the service, against the one the container was made
# with), and so is the proxy. It changes nothing on the host.
_CHECK = _LAYOUT + _SLOT_FILE + r"""
drift() { printf '%s%s\n' "$drift_mark" "$*"; }
label() { docker container inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null; }
# check CONTAINER FILE WHAT: CONTAINER runs as the Compose file FILE (its text) says; WHAT names it.
check() {
  local status
  if [ "$(cat "$compose_dir/$1.yml" 2>/dev/null)" != "$2" ]; then
    drift "$3 $1: its Compose file ~/.workhub/compose/$1.yml is not the one the last deploy wrote"
  fi
  if ! exists "$1"; then
    drift "$3 $1 is gone"
    return 0
  fi
  status=$(docker container inspect --format '{{.State.Status}}' "$1")
  [ "$status" = running ] || drift "$3 $1 is not running (it is $status)"
  # Compose's fingerprint of the service from its own file alone, so no other hub's file can spoil it.
  if [ "$(compose -f "$1.yml" config --hash "$1" 2>/dev/null | awk '{ print $2 }')" \
    != "$(label "$1" com.docker.compose.config-hash)" ]; then
    drift "$3 $1 was not made from its Compose file (started or changed by hand?)"
  fi
}
live=$(live_slot)
if [ -z "$live" ]; then
  drift "the proxy's config ~/.workhub/proxy/$base/haproxy.cfg names no live slot"
else
  check "$base-$live" "$(slot_file "$live")" "the live container"
  if exists "$base-$live"; then
    actual=$(docker container inspect --format '{{.Config.Image}}' "$base-$live")
    [ "$actual" = "$image" ] || drift "the live container $base-$live runs $actual, not $image"
  fi
fi
check "$proxy" "$proxy_file" "the proxy"
"""


def check_script(hub: Hub, stack: str, image: str, host_port: int, runtime: Runtime, serving: Serving) -> str:
    """What a refresh runs for the hub's run command: one DRIFT_MARK line on stdout for each way
    the host differs from what `run_script` deployed (the live container gone, stopped, running
    another image or not from its Compose file; the proxy likewise); nothing when it matches."""
    return script(
        {"base": base_name(hub.name, stack), "proxy": proxy_container(hub.name, stack), "live_mark": LIVE_MARK,
         "image": image, "drift_mark": DRIFT_MARK,
         **_documents(hub, stack, image, host_port, runtime, serving)},
        _CHECK,
    )


_STOP = _LAYOUT + r"""
for container in "$base-blue" "$base-green" "$proxy" "$base"; do
  docker rm -f "$container" >/dev/null 2>&1 || true
  drop_file "$container"
  rm -rf "${env_dir:?}/$container.env" "${secrets_dir:?}/$container"
done
rm -rf "$proxy_dir"
# The stack's network goes with its last container; the hub's volumes stay (destroy --purge-data
# removes them).
docker network rm "$network" >/dev/null 2>&1 || true
printf 'run: %s: containers and proxy removed; its volumes are kept\n' "$base" >&2
"""


def stop_script(hub: Hub, stack: str) -> str:
    """Remove a hub's containers, its proxy and their files; keep its volumes."""
    return script({"base": base_name(hub.name, stack), "proxy": proxy_container(hub.name, stack),
                   "network": network_name(stack), "live_mark": LIVE_MARK}, _STOP)


_STATUS = _PROBE + r"""
state="$HOME/.workhub"
field() { printf '%s' "$1" | sed -n "s/.*\"$2\": \"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p"; }
for i in "${!hubs[@]}"; do
  hub=${hubs[$i]}
  base="$hub-$stack"
  live=$(sed -n "s/^$live_mark//p" "$state/proxy/$base/haproxy.cfg" 2>/dev/null | head -n 1)
  container=$base${live:+-$live}
  image=$(docker inspect --format '{{.Config.Image}}' "$container" 2>/dev/null) || image=none
  since=$(docker inspect --format '{{.State.StartedAt}}' "$container" 2>/dev/null) || since=none
  proxy=$(docker inspect --format '{{.State.Status}}' "$base-proxy" 2>/dev/null) || proxy=none
  if [ "$(probe "$probe_host" "${host_ports[$i]}" "${health_paths[$i]}")" = 200 ]; then health=ok; else health=failing; fi
  created=$(docker inspect --format '{{.Created}}' "$container" 2>/dev/null) && created_ms=$(date -d "$created" +%s%3N) \
    || created_ms=0
  records=$(cat "$state/builds.jsonl" "$state/deploys.jsonl" 2>/dev/null \
    | grep -F "\"hub\": \"$hub\", \"stack\": \"$stack\",") || true
  # The build (or pull) that made the running image; and the newest attempt since its container was
  # made (a build, a pull or a failed deploy, of another image or of the same): one from before (a
  # build that a revert superseded) is not the last attempt any more.
  made=$(printf '%s\n' "$records" | grep -F "\"image\": \"$image\"," | grep -F '"result": "succeeded"' | tail -n 1)
  last=$(printf '%s\n' "$records" | awk -v after="$created_ms" '
    match($0, /"end_ms": [0-9]+/) { t = substr($0, RSTART + 10, RLENGTH - 10) + 0; if (t > after && t >= newest) { newest = t; line = $0 } }
    END { print line }')
  [ "$last" = "$made" ] && last=""
  printf '{"hub": "%s", "container": "%s", "image": "%s", "since": "%s", "health": "%s", "proxy": "%s", "build": "%s", "attempts": "%s", "log": "%s", "last_attempt": "%s", "last_image": "%s", "last_log": "%s"}\n' \
    "$hub" "$container" "$image" "$(printf '%s' "${since:-none}" | cut -c1-19)" "$health" "$proxy" "$(field "$made" result)" \
    "$(field "$made" attempts)" "$(field "$made" log)" "$(field "$last" result)" "$(field "$last" image)" "$(field "$last" log)"
done
"""


def status_script(stack: str, hubs: list[Hub], host_ports: dict[str, int], publish_address: str) -> str:
    """One JSON line per hub: the container its proxy serves from, its image, since when, whether
    the host port answers the health path, the proxy's state, the build (or pull) that made the
    running image, and the last attempt since its container was made (a build, a pull or a failed
    deploy), if any."""
    return script(
        {
            "stack": stack,
            "publish_address": publish_address,
            "live_mark": LIVE_MARK,
            "hubs": [hub.name for hub in hubs],
            "host_ports": [host_ports[hub.name] for hub in hubs],
            "health_paths": [hub.health_path for hub in hubs],
        },
        _STATUS,
    )


# prune_copies: the copies restores kept of a volume's old content (<volume>.pre-restore-<time>) on this
# host: the newest of each volume stays (the way back from its last restore), the older ones go.
# Names sort by time. (On a Swarm, each node's, where its restores ran.)
PRUNE_COPIES = r"""
prune_copies() {
  local newest="" copy volume
  for copy in $(docker volume ls --quiet --filter "label=workhub.stack=$stack" --filter label=workhub.pre-restore | sort -r); do
    volume=${copy%.pre-restore-*}
    if [ "$volume" != "$newest" ]; then
      newest=$volume
      say "kept $copy, the content $volume had before its last restore"
    elif docker volume rm "$copy" >/dev/null; then
      say "removed $copy, the content $volume had before an earlier restore"
    else
      say "could not remove $copy (in use?); the next prune tries again"
    fi
  done
}
"""

_PRUNE = SERVING_IMAGE + STACK_IMAGES + PRUNE_COPIES + r"""
say() { printf 'prune: %s\n' "$*" >&2; }
for hub in "${hubs[@]}"; do
  running=$(serving_image "$hub")
  kept=0
  # Newest first; the running image is always kept and counts towards the number kept.
  for ref in $(stack_images "$hub"); do
    if [ "$ref" = "$running" ] || [ "$kept" -lt "$keep" ]; then
      kept=$((kept + 1))
      continue
    fi
    docker image rm "$ref" >/dev/null && say "removed $ref"
  done
done
if [ "$copies" = true ]; then prune_copies; fi
if [ "$reset_cache" = true ]; then
  say "resetting the whole build cache, npm cache mounts included: the next builds download everything"
  docker builder prune --all --force >&2
fi
"""


def prune_script(stack: str, hubs: list[Hub], keep: int, reset_cache: bool, copies: bool = True) -> str:
    """Keep the newest `keep` images of each hub in this stack (and the one running), and (with
    `copies`) the newest pre-restore copy of each of its volumes; optionally reset the whole BuildKit
    cache (the PRD's cache reset)."""
    return script(
        {"stack": stack, "live_mark": LIVE_MARK, "hubs": [hub.name for hub in hubs], "keep": keep,
         "reset_cache": reset_cache, "copies": copies},
        _PRUNE,
    )


def prune_copies_script(stack: str) -> str:
    """On one Swarm node: keep the newest pre-restore copy of each of the stack's volumes there."""
    return script({"stack": stack}, "say() { printf 'prune: %s\\n' \"$*\" >&2; }\n" + PRUNE_COPIES + "prune_copies\n")


_PURGE = OWNERS + r"""
say() { printf 'purge: %s\n' "$*" >&2; }
found=$(docker volume ls --quiet --filter "label=workhub.stack=$stack")
if [ -z "$found" ]; then
  say "stack $stack has no volumes on this host"
  exit 0
fi
for volume in $found; do
  # What a restore kept of a volume's old content goes only with `prune` (or by hand).
  if [ -n "$(docker volume inspect --format '{{index .Labels "workhub.pre-restore"}}' "$volume")" ]; then
    say "kept $volume, the content a volume had before a restore: \`docker volume rm $volume\` removes it"
    continue
  fi
  if docker volume rm "$volume" >/dev/null; then
    forget_owner "$volume"
    say "removed volume $volume"
  else
    say "FAILED: $volume is in use; destroy the stack first"
    exit 1
  fi
done
"""


def purge_script(stack: str) -> str:
    """Remove every volume workhub made for the stack (its hubs' data): the explicit purge. The copies
    a restore kept of a volume's old content stay (`prune` removes them, but the newest of each)."""
    return script({"stack": stack}, _PURGE)


_VOLUME_INFO = SERVING_IMAGE + r"""
for i in "${!hubs[@]}"; do
  exists=false
  docker volume inspect "${volumes[$i]}" >/dev/null 2>&1 && exists=true
  printf '{"hub": "%s", "volume": "%s", "docker_volume": "%s", "exists": %s, "image": "%s"}\n' \
    "${hubs[$i]}" "${keys[$i]}" "${volumes[$i]}" "$exists" "$(serving_image "${hubs[$i]}")"
done
"""


def volume_info_script(stack: str, volumes: list[tuple[Hub, str]]) -> str:
    """One JSON line per (hub, volume name): its Docker volume, whether it exists, and the image the
    hub serves from."""
    return script(
        {"stack": stack, "live_mark": LIVE_MARK, "hubs": [hub.name for hub, _ in volumes],
         "keys": [name for _, name in volumes],
         "volumes": [volume_name(stack, hub.name, name) for hub, name in volumes]},
        _VOLUME_INFO,
    )


_BACKUP = r"""
if ! docker volume inspect "$volume" >/dev/null 2>&1; then
  printf 'backup: FAILED: volume %s does not exist on this host\n' "$volume" >&2
  exit 1
fi
# A gzipped tar of the volume's files on stdout, read through a throwaway container (read-only),
# as uid 0 with one capability, DAC_READ_SEARCH: it reads every file and directory whatever its owner
# and mode (a volume not yet given to the hub's uid, a file the hub made 0600 under another uid),
# and can change nothing (no other capability, no new privileges, the volume read-only, no network).
docker run --rm --network none --user 0 --cap-drop ALL --cap-add DAC_READ_SEARCH --security-opt no-new-privileges \
  -v "$volume:/data:ro" --entrypoint tar "$helper_image" -czf - -C /data .
"""


def backup_script(volume: str, helper_image: str) -> str:
    """Write a gzipped tar of the volume's content to stdout (the hub keeps running)."""
    return script({"volume": volume, "helper_image": helper_image}, _BACKUP)


_RESTORE = _LAYOUT + _PROBE + POINT_PROXY + REOWN + NEW_VOLUME + r"""
say() { printf 'restore: %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
stamp=$(date -u +%Y%m%dT%H%M%SZ)
staging="$volume.restore-$stamp"
kept="$volume.pre-restore-$stamp"
# helper STEP ARGS...: a throwaway container of $helper_image (root with only the capabilities a copy that
# keeps owners and modes needs, no network), labelled with the step
# it does, so that what it does is visible in `docker ps` (and a test can find it).
helper() {
  local step=$1
  shift
  docker run --rm --user 0 --network none --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER \
    --security-opt no-new-privileges --label "workhub.restore=$volume" --label "workhub.restore-step=$step" "$@"
}
# count VOLUME: how many files (anything but a directory) VOLUME holds.
count() {
  helper count -v "$1:/data:ro" --entrypoint sh "$helper_image" -c 'find /data -mindepth 1 ! -type d | wc -l | tr -d " "'
}
# copy_into STEP FROM TO: TO holds exactly what FROM holds (owners, modes and times kept); the number
# of files FROM holds, then (on a line of its own) the number TO holds after it, counted in the same
# container (each container takes a while to start, and the hub is stopped for these copies).
# Docker cannot rename a volume, so taking a volume's place is this copy.
copy_into() {
  helper "$1" -v "$2:/from:ro" -v "$3:/to" --entrypoint sh "$helper_image" -c \
    'find /to -mindepth 1 -maxdepth 1 -exec rm -rf {} + && cp -a /from/. /to/ &&
     find /from -mindepth 1 ! -type d | wc -l && find /to -mindepth 1 ! -type d | wc -l'
}
# line N TEXT: the Nth line of TEXT, without blanks.
line() { printf '%s\n' "$2" | sed -n "$1p" | tr -d ' '; }

# wait_healthy: the hub's host port (its proxy) answers its health path within health_timeout seconds.
wait_healthy() {
  local start
  start=$(now_ms)
  while [ $(( $(now_ms) - start )) -lt $(( health_timeout * 1000 )) ]; do
    [ "$(probe "$probe_host" "$host_port" "$health_path")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# What the trap needs to know: how far the restore went.
archive=""
step="receiving the archive"
staged=false      # $staging exists
stopped=false     # $container was stopped by this restore
keeping=false     # $kept exists but does not hold the live content yet
touched=false     # the live volume's content was (or was being) replaced
container=""
finish() {
  local rc=$1 outcome
  set +e
  trap '' PIPE
  rm -f "$archive"
  [ "$rc" -eq 0 ] && return 0
  [ "$keeping" = true ] && docker volume rm "$kept" >/dev/null 2>&1
  [ "$staged" = true ] && docker volume rm "$staging" >/dev/null 2>&1
  if [ "$stopped" = false ] && [ "$touched" = false ]; then
    say "FAILED: $step (exit $rc); nothing was changed: $volume holds its data as before${container:+ and $container kept serving}"
    return 0
  fi
  outcome="$volume was not touched"
  if [ "$touched" = true ]; then
    [ -n "$container" ] && running "$container" && docker stop --time "$stop_grace" "$container" >/dev/null
    if [ "$(line 2 "$(copy_into back "$kept" "$volume")")" = "$old_files" ]; then
      outcome="$volume holds its old data again (also kept in $kept)"
    else
      outcome="putting the old data back into $volume failed too: it is kept in $kept; copy it back with a container that mounts both"
    fi
  fi
  if [ -n "$container" ]; then
    docker start "$container" >/dev/null && point_proxy "$live" 2>/dev/null
    if wait_healthy; then
      outcome="$outcome, and $container answers $health_path again"
    else
      outcome="$outcome, but $container does not answer $health_path: see \`docker logs $container\`"
    fi
  fi
  say "FAILED: $step (exit $rc); $outcome"
}
trap 'finish $?' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# One restore of a volume at a time (a second, say after the SSH connection dropped and workhub ran
# it again, waits until the first one's trap is done).
mkdir -p "$state"
exec 9>>"$state/restore-$volume.lock"
flock 9
archive=$(mktemp)
cat >"$archive"
got=$(sha256sum "$archive" | cut -d' ' -f1)
if [ "$got" != "$sha256" ]; then
  say "FAILED: the archive arrived with sha256 $got, not $sha256; nothing was changed"
  trap - EXIT
  rm -f "$archive"
  exit 1
fi
live=$(live_slot)
[ -n "$live" ] && running "$base-$live" && container="$base-$live"

# 1. The archive goes into a volume of its own, and must hold as many files as the backup did;
# the hub keeps serving meanwhile.
step="making $staging"
if docker volume inspect "$staging" >/dev/null 2>&1 || docker volume inspect "$kept" >/dev/null 2>&1; then
  say "$staging or $kept is on the host already (another restore of $volume in this second?); run the restore again"
  exit 1
fi
new_volume --label "workhub.restore=$stamp" "$staging"
step="extracting the archive into $staging"
staged=true
helper extract -i -v "$staging:/data" --entrypoint tar "$helper_image" -xzf - -C /data <"$archive"
step="counting the files in $staging"
got=$(count "$staging")
step="checking $staging"
if [ "$got" != "$files" ]; then
  say "the archive holds $files file(s), but $got arrived in $staging"
  exit 1
fi
# The archive keeps the owners it was made with (another stack's uid, or a hub's from before it had its own).
step="giving the files in $staging to the hub's uid $uid"
reown "$staging" "$uid:$uid"

# 2. The pause: the hub stops for the two copies only, the live content into $kept (the way back,
# kept until a later prune), then the restored content into the live volume.
step="making $volume"
docker volume inspect "$volume" >/dev/null 2>&1 || new_volume "$volume"
paused=$(now_ms)
if [ -n "$container" ]; then
  step="stopping $container"
  say "stopping $container while $volume is replaced"
  stopped=true
  docker stop --time "$stop_grace" "$container" >/dev/null
fi
step="copying $volume's content into $kept"
new_volume --label "workhub.pre-restore=$stamp" "$kept"
keeping=true
counts=$(copy_into keep "$volume" "$kept")
old_files=$(line 1 "$counts")
got=$(line 2 "$counts")
if [ "$got" != "$old_files" ]; then
  say "$volume holds $old_files file(s), but $got arrived in $kept"
  exit 1
fi
keeping=false
step="copying $staging's content into $volume"
touched=true
counts=$(copy_into swap "$staging" "$volume")
got=$(line 2 "$counts")
if [ "$got" != "$files" ]; then
  say "the archive holds $files file(s), but $got arrived in $volume"
  exit 1
fi
mark_owned "$volume" "$uid"
say "restored $volume ($(stat -c %s "$archive") bytes, $files file(s)), its files the hub's uid $uid's; its old content is kept in $kept"
answered=""
if [ -n "$container" ]; then
  step="starting $container"
  docker start "$container" >/dev/null
  point_proxy "$live" || true
  step="waiting for $container to answer $health_path with the restored data"
  if ! wait_healthy; then
    say "$container does not answer $health_path with the restored data; its last log lines:"
    docker logs --tail 40 "$container" >&2 2>&1 || true
    exit 1
  fi
  answered="$container answers $health_path again: the hub was stopped for $(( $(now_ms) - paused )) ms"
fi
# Once the hub serves (removing a volume of many files takes a while); the restore is done by now.
docker volume rm "$staging" >/dev/null || say "$staging could not be removed (it holds the restored files): remove it by hand"
staged=false
[ -z "$answered" ] || say "$answered"
"""


def restore_script(hub: Hub, stack: str, volume_key: str, sha256: str, files: int, host_port: int,
                   serving: Serving) -> str:
    """Replace a hub's volume with the gzipped tar on stdin (checked against `sha256` first), without
    losing data: the archive goes into a staging volume while the hub serves, must hold `files` files
    there, and only then the hub stops for two copies (its volume's content into a kept
    `<volume>.pre-restore-<time>`, the staging volume's into it) and starts again. Whatever fails once
    the hub stopped, the trap puts the old content back and starts the hub; the last line says what failed."""
    return script(
        {**_hub_values(hub, stack, serving.publish_address), **proxy_values(), "host_port": host_port,
         "health_path": hub.health_path, "health_timeout": serving.deploy.health_timeout_seconds,
         "stop_grace": serving.deploy.stop_grace_seconds, "volume": volume_name(stack, hub.name, volume_key),
         "volume_key": volume_key, "sha256": sha256, "files": files, "helper_image": serving.helper,
         "uid": run_uid(hub, stack)},
        _RESTORE,
    )



# A hub's named volume as a resource of the stack: made (with the labels the deploy gives it) when it
# is not on the host, adopted as it is when it is. It never empties or removes one: its resource
# only records the volume, so that a production stack can protect it (workhub:protectData).
_VOLUME = r"""
say() { printf 'volume: %s\n' "$*" >&2; }
if docker volume inspect "$volume" >/dev/null 2>&1; then
  say "$volume is on the host: it is this stack's, with its data as it is"
else
  labels=(--label "workhub.stack=$stack" --label "workhub.hub=$hub" --label "workhub.volume=$volume_key")
  [ -z "$namespace" ] || labels+=(--label "com.docker.stack.namespace=$namespace")
  docker volume create "${labels[@]}" "$volume" >/dev/null
  say "created $volume"
fi
printf '{"volume": "%s"}\n' "$volume"
"""


def volume_script(hub: Hub, stack: str, volume_key: str, namespace: str = "") -> str:
    """Make the hub's volume `volume_key` when the host lacks it; adopt it, untouched, when it has it.
    On a Swarm node, `namespace` (the Swarm stack's) labels it as `docker stack deploy` would."""
    return script({"hub": hub.name, "stack": stack, "volume_key": volume_key,
                   "volume": volume_name(stack, hub.name, volume_key), "namespace": namespace}, _VOLUME)


_VOLUME_CHECK = r"""
docker volume inspect "$volume" >/dev/null 2>&1 || printf '%sthe volume %s is gone from the host\n' "$drift_mark" "$volume"
"""


def volume_check_script(hub: Hub, stack: str, volume_key: str) -> str:
    """What a refresh runs for a volume's resource: a DRIFT_MARK line when the volume is gone."""
    return script({"volume": volume_name(stack, hub.name, volume_key), "drift_mark": DRIFT_MARK}, _VOLUME_CHECK)
