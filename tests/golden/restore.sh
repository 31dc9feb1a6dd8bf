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
health_path=/health
health_timeout=60
stop_grace=30
volume=workhub-staging-wbsaleshub-data
volume_key=data
sha256=0000000000000000000000000000000000000000000000000000000000000000
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
  files=$(cd "$compose_dir" && ls -1 ./*.yml 2>/dev/null | sed 's|^\./||' | paste -sd: -) || true
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
  rm -rf "$env_dir/$1.env" "$secrets_dir/$1"
}

probe_src='exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || { echo refused; exit 0; }
printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
IFS= read -r line <&3 || { echo no-answer; exit 0; }
case "$line" in HTTP/1.[01]\ [0-9][0-9][0-9]*) echo "${line:9:3}" ;; *) echo no-answer ;; esac'
probe() { timeout 5 bash -c "$probe_src" probe "$@" 2>/dev/null || echo no-answer; }
probe_host=$publish_address
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1

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

say() { printf 'restore: %s\n' "$*" >&2; }
archive=$(mktemp)
trap 'rm -f "$archive"' EXIT
cat >"$archive"
got=$(sha256sum "$archive" | cut -d' ' -f1)
if [ "$got" != "$sha256" ]; then
  say "FAILED: the archive arrived with sha256 $got, not $sha256; nothing was changed"
  exit 1
fi
live=$(live_slot)
container=""
[ -n "$live" ] && running "$base-$live" && container="$base-$live"
docker volume inspect "$volume" >/dev/null 2>&1 || docker volume create --label "workhub.stack=$stack" \
  --label "workhub.hub=$hub" --label "workhub.volume=$volume_key" "$volume" >/dev/null
if [ -n "$container" ]; then
  say "stopping $container while $volume is replaced"
  docker stop --time "$stop_grace" "$container" >/dev/null
fi
docker run --rm -i --user 0 --network none -v "$volume:/data" --entrypoint sh "$helper_image" \
  -c 'find /data -mindepth 1 -maxdepth 1 -exec rm -rf {} + && tar -xzf - -C /data' <"$archive"
# The archive keeps the owners it was made with (another stack's uid, or a hub's from before it had its own).
reown "$volume" "$uid:$uid"
mark_owned "$volume" "$uid"
say "restored $volume ($(stat -c %s "$archive") bytes), its files the hub's uid $uid's"
if [ -n "$container" ]; then
  docker start "$container" >/dev/null
  for _ in $(seq "$health_timeout"); do
    if [ "$(probe "$probe_host" "$host_port" "$health_path")" = 200 ]; then
      say "$container answers $health_path again"
      exit 0
    fi
    sleep 1
  done
  say "FAILED: $container does not answer $health_path after the restore; its last log lines:"
  docker logs --tail 40 "$container" >&2 2>&1 || true
  exit 1
fi
