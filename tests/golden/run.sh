set -eu
hub=wbsaleshub
stack=staging
container=wbsaleshub-staging
port=4091
host_port=14091
publish_address=127.0.0.1
image=wbsaleshub:staging-0123456789ab
health_path=/health
health_timeout=60
compose_dir="$HOME/.workhub/compose"
mkdir -p "$compose_dir"
compose() { (cd "$compose_dir" && docker compose "$@"); }
# Writes this hub's service running image $1 (or removes it when $1 is empty), then the .env
# naming every file, under a lock: the hubs of a stack deploy side by side.
write_service() {
  (
    flock 8
    if [ -n "$1" ]; then
      {
        printf 'services:\n  %s:\n' "$container"
        printf '    image: "%s"\n    container_name: "%s"\n    restart: unless-stopped\n' "$1" "$container"
        printf '    profiles: ["%s"]\n    environment:\n      PORT: "%s"\n' "$stack" "$port"
        printf '    ports: ["%s:%s:%s"]\n' "$publish_address" "$host_port" "$port"
        printf '    labels:\n      workhub.hub: "%s"\n      workhub.stack: "%s"\n' "$hub" "$stack"
      } >"$compose_dir/$container.yml.tmp"
      mv "$compose_dir/$container.yml.tmp" "$compose_dir/$container.yml"
    else
      rm -f "$compose_dir/$container.yml"
    fi
    files=$(cd "$compose_dir" && ls -1 ./*.yml 2>/dev/null | sed 's|^\./||' | paste -sd: -)
    profiles=$(cd "$compose_dir" && sed -n 's/^    profiles: \["\(.*\)"\]$/\1/p' ./*.yml 2>/dev/null | sort -u | paste -sd, -)
    printf 'COMPOSE_PROJECT_NAME=workhub\nCOMPOSE_FILE=%s\nCOMPOSE_PROFILES=%s\n' "$files" "$profiles" >"$compose_dir/.env.tmp"
    mv "$compose_dir/.env.tmp" "$compose_dir/.env"
  ) 8>>"$compose_dir/.lock"
}

probe_host=$publish_address
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1
healthy() {
  local status
  exec 3<>"/dev/tcp/$probe_host/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$probe_host" >&3
  IFS= read -r status <&3 || return 1
  case "$status" in "HTTP/1."[01]" 200"*) return 0 ;; esac
  return 1
}

say() { printf 'run: %s\n' "$*" >&2; }
wait_healthy() {
  for _ in $(seq "$health_timeout"); do
    if (healthy "$host_port" "$health_path") 2>/dev/null; then return 0; fi
    sleep 1
  done
  return 1
}
start() {
  write_service "$1"
  compose up --detach --no-deps --no-build "$container" >&2
}
if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "FAILED: $image is not on the host; build or promote it first"
  exit 1
fi
previous=$(docker inspect --format '{{.Config.Image}}' "$container" 2>/dev/null) || previous=""
if [ -n "$previous" ] && [ -z "$(docker inspect --format '{{index .Config.Labels "com.docker.compose.project"}}' "$container")" ]; then
  docker rm -f "$container" >/dev/null  # started before workhub ran hubs under Compose
fi
say "starting $container from $image on $publish_address:$host_port (PORT $port); previous image: ${previous:-none}"
start "$image"
if wait_healthy; then
  say "$container answers $health_path"
  printf '{"container": "%s", "url": "http://%s:%s", "image": "%s", "image_id": "%s", "previous_image": "%s", "verified_at": "%s"}\n' \
    "$container" "$probe_host" "$host_port" "$image" "$(docker image inspect --format '{{.Id}}' "$image")" \
    "$previous" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  exit 0
fi
say "FAILED: $container did not answer $health_path on $probe_host:$host_port within $health_timeout s; its last log lines:"
docker logs --tail 40 "$container" >&2 2>&1 || true
if [ -n "$previous" ] && [ "$previous" != "$image" ]; then
  say "rolling back $container to $previous"
  start "$previous"
  if wait_healthy; then say "rolled back: $container answers again from $previous"; else say "the rolled-back $container does not answer either"; fi
fi
exit 1
