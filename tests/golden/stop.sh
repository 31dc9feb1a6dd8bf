set -eu
base=wbsaleshub-staging
proxy=wbsaleshub-staging-proxy
network=workhub-staging
live_mark='# workhub live slot: '
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
