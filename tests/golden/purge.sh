set -eu
stack=staging
say() { printf 'purge: %s\n' "$*" >&2; }
found=$(docker volume ls --quiet --filter "label=workhub.stack=$stack")
if [ -z "$found" ]; then
  say "stack $stack has no volumes on this host"
  exit 0
fi
for volume in $found; do
  if docker volume rm "$volume" >/dev/null; then say "removed volume $volume"; else say "FAILED: $volume is in use; destroy the stack first"; exit 1; fi
done
