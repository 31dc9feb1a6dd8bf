set -eu
stack=staging
live_mark='# workhub live slot: '
hubs=(wbsaleshub)
keep=3
reset_cache=false
copies=true
serving_image() {
  local live
  live=$(sed -n "s/^$live_mark//p" "$HOME/.workhub/proxy/$1-$stack/haproxy.cfg" 2>/dev/null | head -n 1)
  docker inspect --format '{{.Config.Image}}' "$1-$stack${live:+-$live}" 2>/dev/null || true
}

stack_images() {
  local ref id
  for ref in $(docker image ls "$1" --format '{{.Repository}}:{{.Tag}}'); do
    id=${ref#"$1:$stack-"}
    if [ "$id" != "$ref" ] && [[ $id =~ ^[0-9a-f]{12}$ ]]; then printf '%s\n' "$ref"; fi
  done
}

prune_copies() {
  local newest="" copy volume
  for copy in $(docker volume ls --quiet --filter "label=workhub.stack=$stack" --filter label=workhub.pre-restore | sort -r); do
    volume=${copy%.pre-restore-*}
    if [ "$volume" != "$newest" ]; then
      newest=$volume
      say "kept $copy, the content $volume had before its last restore"
    elif docker volume rm "$copy" >/dev/null; then
      say "removed $copy, the content $volume had before an earlier restore"
    else
      say "could not remove $copy (in use?); the next prune tries again"
    fi
  done
}

say() { printf 'prune: %s\n' "$*" >&2; }
for hub in "${hubs[@]}"; do
  running=$(serving_image "$hub")
  kept=0
  # Newest first; the running image is always kept and counts towards the number kept.
  for ref in $(stack_images "$hub"); do
    if [ "$ref" = "$running" ] || [ "$kept" -lt "$keep" ]; then
      kept=$((kept + 1))
      continue
    fi
    docker image rm "$ref" >/dev/null && say "removed $ref"
  done
done
if [ "$copies" = true ]; then prune_copies; fi
if [ "$reset_cache" = true ]; then
  say "resetting the whole build cache, npm cache mounts included: the next builds download everything"
  docker builder prune --all --force >&2
fi
