set -eu
hub=wbsaleshub
stack=staging
base=wbsaleshub-staging
proxy=wbsaleshub-staging-proxy
network=workhub-staging
port=4091
publish_address=127.0.0.1
live_mark='# workhub live slot: '
backend=slots
proxy_api_port=9999
resolve_wait=4
host_port=14091
health_path=/health
health_timeout=60
stop_grace=30
volume=workhub-staging-wbsaleshub-data
volume_key=data
sha256=0000000000000000000000000000000000000000000000000000000000000000
files=12
helper_image=busybox:1.37
uid=1991296
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

new_volume() {
  docker volume create --label "workhub.stack=$stack" --label "workhub.hub=$hub" --label "workhub.volume=$volume_key" \
    "$@" >/dev/null
}

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
