set -eu
hub=wbsaleshub
stack=staging
base=wbsaleshub-staging
proxy=wbsaleshub-staging-proxy
network=workhub-staging
port=4091
publish_address=127.0.0.1
live_mark='# workhub live slot: '
host_port=14091
image=wbsaleshub:staging-0123456789ab
health_path=/health
health_timeout=60
healthy_passes=3
health_interval=0.5
stop_grace=30
proxy_image=haproxy:2.6
backend=slots
proxy_api_port=9999
resolve_wait=4
reload_wait=10
helper_image=busybox:1.37
uid=1991296
# shellcheck disable=SC2016  # a config value, taken literally
env_plain='PORT=4091
HOME=/tmp
LOG_LEVEL=info
GREETING=it'"'"'s $HOME
PUBLIC_URL=https://sales.example.test
SIGNING_KEY_FILE=/run/secrets/SIGNING_KEY
'
secret_env=(LEADS_API_TOKEN)
secret_files=(SIGNING_KEY)
volumes=(workhub-staging-wbsaleshub-data)
volume_keys=(data)
volume_targets=(/app/data)
proxy_blue='# workhub live slot: blue
# The proxy of hub wbsaleshub in stack staging, written by workhub: edits are overwritten.
global
    log stdout format raw daemon warning
    stats socket ipv4@127.0.0.1:9999 level admin
    stats socket /var/lib/haproxy/admin.sock mode 600 level admin expose-fd listeners
    stats timeout 30s
    hard-stop-after 35s
defaults
    mode http
    log global
    option dontlognull
    option forwardfor
    option idle-close-on-response
    timeout connect 5s
    timeout client 60s
    timeout http-request 30s
    timeout http-keep-alive 60s
    timeout server 300s
    timeout tunnel 1h
    retries 3
    retry-on conn-failure empty-response
resolvers docker
    nameserver docker 127.0.0.11:53
    timeout resolve 1s
    resolve_retries 3
    timeout retry 1s
    hold valid 10s
    hold other 30s
    hold refused 30s
    hold nx 30s
    hold timeout 30s
    hold obsolete 0s
frontend hub
    bind :14091
    default_backend slots
backend slots
    server blue wbsaleshub-staging-blue:4091 resolvers docker init-addr libc,none
    server green wbsaleshub-staging-green:4091 resolvers docker init-addr none disabled
'
proxy_green='# workhub live slot: green
# The proxy of hub wbsaleshub in stack staging, written by workhub: edits are overwritten.
global
    log stdout format raw daemon warning
    stats socket ipv4@127.0.0.1:9999 level admin
    stats socket /var/lib/haproxy/admin.sock mode 600 level admin expose-fd listeners
    stats timeout 30s
    hard-stop-after 35s
defaults
    mode http
    log global
    option dontlognull
    option forwardfor
    option idle-close-on-response
    timeout connect 5s
    timeout client 60s
    timeout http-request 30s
    timeout http-keep-alive 60s
    timeout server 300s
    timeout tunnel 1h
    retries 3
    retry-on conn-failure empty-response
resolvers docker
    nameserver docker 127.0.0.11:53
    timeout resolve 1s
    resolve_retries 3
    timeout retry 1s
    hold valid 10s
    hold other 30s
    hold refused 30s
    hold nx 30s
    hold timeout 30s
    hold obsolete 0s
frontend hub
    bind :14091
    default_backend slots
backend slots
    server blue wbsaleshub-staging-blue:4091 resolvers docker init-addr none disabled
    server green wbsaleshub-staging-green:4091 resolvers docker init-addr libc,none
'
compose_blue='{
  "services": {
    "wbsaleshub-staging-blue": {
      "image": "wbsaleshub:staging-0123456789ab",
      "container_name": "wbsaleshub-staging-blue",
      "hostname": "wbsaleshub-staging-blue",
      "restart": "unless-stopped",
      "profiles": [
        "staging"
      ],
      "env_file": [
        {
          "path": "../env/wbsaleshub-staging-blue.env",
          "format": "raw"
        }
      ],
      "networks": [
        "workhub-staging"
      ],
      "stop_grace_period": "30s",
      "labels": {
        "workhub.hub": "wbsaleshub",
        "workhub.stack": "staging",
        "workhub.role": "hub",
        "workhub.slot": "blue"
      },
      "user": "1991296:1991296",
      "cap_drop": [
        "ALL"
      ],
      "security_opt": [
        "no-new-privileges:true"
      ],
      "pids_limit": 512,
      "volumes": [
        {
          "type": "volume",
          "source": "workhub-staging-wbsaleshub-data",
          "target": "/app/data",
          "volume": {
            "nocopy": true
          }
        }
      ]
    }
  },
  "networks": {
    "workhub-staging": {
      "external": true,
      "name": "workhub-staging"
    }
  },
  "volumes": {
    "workhub-staging-wbsaleshub-data": {
      "external": true,
      "name": "workhub-staging-wbsaleshub-data"
    }
  }
}'
compose_green='{
  "services": {
    "wbsaleshub-staging-green": {
      "image": "wbsaleshub:staging-0123456789ab",
      "container_name": "wbsaleshub-staging-green",
      "hostname": "wbsaleshub-staging-green",
      "restart": "unless-stopped",
      "profiles": [
        "staging"
      ],
      "env_file": [
        {
          "path": "../env/wbsaleshub-staging-green.env",
          "format": "raw"
        }
      ],
      "networks": [
        "workhub-staging"
      ],
      "stop_grace_period": "30s",
      "labels": {
        "workhub.hub": "wbsaleshub",
        "workhub.stack": "staging",
        "workhub.role": "hub",
        "workhub.slot": "green"
      },
      "user": "1991296:1991296",
      "cap_drop": [
        "ALL"
      ],
      "security_opt": [
        "no-new-privileges:true"
      ],
      "pids_limit": 512,
      "volumes": [
        {
          "type": "volume",
          "source": "workhub-staging-wbsaleshub-data",
          "target": "/app/data",
          "volume": {
            "nocopy": true
          }
        }
      ]
    }
  },
  "networks": {
    "workhub-staging": {
      "external": true,
      "name": "workhub-staging"
    }
  },
  "volumes": {
    "workhub-staging-wbsaleshub-data": {
      "external": true,
      "name": "workhub-staging-wbsaleshub-data"
    }
  }
}'
proxy_file='{
  "services": {
    "wbsaleshub-staging-proxy": {
      "image": "haproxy:2.6",
      "container_name": "wbsaleshub-staging-proxy",
      "restart": "unless-stopped",
      "profiles": [
        "staging"
      ],
      "command": [
        "haproxy",
        "-f",
        "/etc/workhub/haproxy.cfg"
      ],
      "ports": [
        {
          "target": 14091,
          "published": "14091",
          "host_ip": "127.0.0.1",
          "protocol": "tcp"
        }
      ],
      "volumes": [
        {
          "type": "bind",
          "source": "../proxy/wbsaleshub-staging",
          "target": "/etc/workhub",
          "read_only": true
        }
      ],
      "networks": [
        "workhub-staging"
      ],
      "labels": {
        "workhub.hub": "wbsaleshub",
        "workhub.stack": "staging",
        "workhub.role": "proxy"
      }
    }
  },
  "networks": {
    "workhub-staging": {
      "external": true,
      "name": "workhub-staging"
    }
  }
}'
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

slot_file() { if [ "$1" = blue ]; then printf '%s' "$compose_blue"; else printf '%s' "$compose_green"; fi; }

# shellcheck disable=SC2016  # the probe's own text: bash -c expands it, with the probe's arguments
probe_src='exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || { echo refused; exit 0; }
printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
IFS= read -r line <&3 || { echo no-answer; exit 0; }
case "$line" in HTTP/1.[01]\ [0-9][0-9][0-9]*) echo "${line:9:3}" ;; *) echo no-answer ;; esac'
probe() { timeout 5 bash -c "$probe_src" probe "$@" 2>/dev/null || echo no-answer; }
probe_host=$publish_address
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1

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

# reown VOLUME UID:GID: every file of VOLUME belongs to UID:GID (a link itself, never what it points to).
reown() {
  docker run --rm --network none --user 0 --cap-drop ALL --cap-add CHOWN --cap-add DAC_READ_SEARCH \
    --security-opt no-new-privileges -v "$1:/data" --entrypoint chown "$helper_image" -R -h "$2" /data
}

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
umask 077
mkdir -p "$HOME/.workhub"
chmod 700 "$HOME/.workhub"
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
