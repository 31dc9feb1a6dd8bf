set -eu
service=workhub-staging_wbsaleshub
replicas=0
timeout=120
say() { printf 'scale: %s\n' "$*" >&2; }
docker service inspect "$service" >/dev/null 2>&1 || { say "FAILED: $service is not on the Swarm; run up first"; exit 1; }
docker service scale --detach "$service=$replicas" >/dev/null
deadline=$(( $(date +%s) + timeout ))
while :; do
  running=$(docker service ps --filter desired-state=running --format '{{.CurrentState}}' "$service" | grep -c '^Running' || true)
  # Scaled to 0: no container of it may be left, even one that is stopping.
  left=$(docker service ps --format '{{.CurrentState}}' "$service" | grep -c -E '^(Running|Starting)' || true)
  if [ "$running" -eq "$replicas" ] && { [ "$replicas" -gt 0 ] || [ "$left" -eq 0 ]; }; then
    say "$service: $running/$replicas task(s) running"
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    say "FAILED: $service has $running of $replicas task(s) running after $timeout s:"
    docker service ps --no-trunc --format '  {{.Name}} on {{.Node}}: {{.CurrentState}} {{.Error}}' "$service" | head -n 5 >&2
    exit 1
  fi
  sleep 1
done
