set -eu
hub=wbsaleshub
stack=staging
container=wbsaleshub-staging
port=4091
host_port=14091
publish_address=127.0.0.1
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

docker rm -f "$container" >/dev/null 2>&1 || true
write_service ""
