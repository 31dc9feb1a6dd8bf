set -eu
node=node2
stack=staging
namespace=workhub-staging
volumes=(workhub-staging-wbsaleshub-data)
stop_wait=60
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
# The stack's volumes here: the names its hubs' volumes have, and any other Docker labelled with
# the stack (a hub since removed from the config); a restore onto another node left a copy here too.
found=$({ printf '%s\n' "${volumes[@]}"
          docker volume ls --quiet --filter "label=com.docker.stack.namespace=$namespace"; } | sort -u)
removed=0 failed=0
while read -r volume; do
  if [ -z "$volume" ] || ! docker volume inspect "$volume" >/dev/null 2>&1; then continue; fi
  # After `docker stack rm` each task's container stops (its grace period) and goes: a volume a
  # container still refers to, even a stopped one, cannot be removed.
  for _ in $(seq "$stop_wait"); do
    [ -z "$(docker ps --all --quiet --filter "volume=$volume")" ] && break
    sleep 1
  done
  if docker volume rm "$volume" >/dev/null 2>&1; then
    forget_owner "$volume"
    printf 'removed %s\n' "$volume"
    removed=$((removed + 1))
  else
    users=$(docker ps --all --format '{{.Names}}' --filter "volume=$volume" | paste -sd ' ' -)
    say "FAILED: $volume on $node is still used by ${users:-a container}; destroy the stack first"
    failed=$((failed + 1))
  fi
done <<<"$found"
[ "$removed" -gt 0 ] || [ "$failed" -gt 0 ] || say "no volume of stack $stack on $node"
[ "$failed" -eq 0 ]
