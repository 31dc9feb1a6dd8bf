set -eu
hub=wbsaleshub
stack=staging
image=wbsaleshub:staging-0123456789ab
container=wbsaleshub-staging
port=4091
host_port=14091
publish_address=127.0.0.1
health_path=/health
health_timeout=60
say() { printf 'run: %s\n' "$*" >&2; }
probe_host=$publish_address
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1
healthy() {
  local status
  exec 3<>"/dev/tcp/$probe_host/$host_port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$health_path" "$probe_host" >&3
  IFS= read -r status <&3 || return 1
  case "$status" in "HTTP/1."[01]" 200"*) return 0 ;; esac
  return 1
}
docker rm -f "$container" >/dev/null 2>&1 || true
docker run --detach --name "$container" --restart unless-stopped \
  --label workhub.hub="$hub" --label workhub.stack="$stack" \
  --env PORT="$port" --publish "$publish_address:$host_port:$port" "$image" >/dev/null
say "started $container from $image on $publish_address:$host_port (PORT $port); waiting for $health_path"
for _ in $(seq "$health_timeout"); do
  if (healthy) 2>/dev/null; then
    say "$container answers $health_path"
    printf '{"container": "%s", "url": "http://%s:%s"}\n' "$container" "$probe_host" "$host_port"
    exit 0
  fi
  sleep 1
done
say "FAILED: $container did not answer $health_path on $probe_host:$host_port within $health_timeout s; its last log lines:"
docker logs --tail 40 "$container" >&2 2>&1 || true
exit 1
