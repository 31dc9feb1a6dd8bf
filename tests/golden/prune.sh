set -eu
stack=staging
hubs=(wbsaleshub)
keep=3
reset_cache=false
say() { printf 'prune: %s\n' "$*" >&2; }
for hub in "${hubs[@]}"; do
  running=$(docker inspect --format '{{.Config.Image}}' "$hub-$stack" 2>/dev/null || true)
  kept=0
  # Newest first; the running image is always kept and counts towards the number kept.
  for ref in $(docker image ls "$hub" --format '{{.Repository}}:{{.Tag}}' | grep -F ":$stack-"); do
    if [ "$ref" = "$running" ] || [ "$kept" -lt "$keep" ]; then
      kept=$((kept + 1))
      continue
    fi
    docker image rm "$ref" >/dev/null && say "removed $ref"
  done
done
if [ "$reset_cache" = true ]; then
  say "resetting the whole build cache, npm cache mounts included: the next builds download everything"
  docker builder prune --all --force >&2
fi
