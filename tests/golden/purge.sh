set -eu
stack=staging
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

say() { printf 'purge: %s\n' "$*" >&2; }
found=$(docker volume ls --quiet --filter "label=workhub.stack=$stack")
if [ -z "$found" ]; then
  say "stack $stack has no volumes on this host"
  exit 0
fi
for volume in $found; do
  # What a restore kept of a volume's old content goes only with `prune` (or by hand).
  if [ -n "$(docker volume inspect --format '{{index .Labels "workhub.pre-restore"}}' "$volume")" ]; then
    say "kept $volume, the content a volume had before a restore: \`docker volume rm $volume\` removes it"
    continue
  fi
  if docker volume rm "$volume" >/dev/null; then
    forget_owner "$volume"
    say "removed volume $volume"
  else
    say "FAILED: $volume is in use; destroy the stack first"
    exit 1
  fi
done
