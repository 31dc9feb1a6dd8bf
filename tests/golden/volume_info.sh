set -eu
stack=staging
live_mark='# workhub live slot: '
hubs=(wbsaleshub)
keys=(data)
volumes=(workhub-staging-wbsaleshub-data)
serving_image() {
  local live
  live=$(sed -n "s/^$live_mark//p" "$HOME/.workhub/proxy/$1-$stack/haproxy.cfg" 2>/dev/null | head -n 1)
  docker inspect --format '{{.Config.Image}}' "$1-$stack${live:+-$live}" 2>/dev/null || true
}

for i in "${!hubs[@]}"; do
  exists=false
  docker volume inspect "${volumes[$i]}" >/dev/null 2>&1 && exists=true
  printf '{"hub": "%s", "volume": "%s", "docker_volume": "%s", "exists": %s, "image": "%s"}\n' \
    "${hubs[$i]}" "${keys[$i]}" "${volumes[$i]}" "$exists" "$(serving_image "${hubs[$i]}")"
done
