set -eu
hub=wbsaleshub
stack=staging
image=wbsaleshub:staging-0123456789ab
context_dir=.workhub/contexts/staging/wbsaleshub
live_mark='# workhub live slot: '
stack_images() {
  local ref id
  for ref in $(docker image ls "$1" --format '{{.Repository}}:{{.Tag}}'); do
    id=${ref#"$1:$stack-"}
    if [ "$id" != "$ref" ] && [[ $id =~ ^[0-9a-f]{12}$ ]]; then printf '%s\n' "$ref"; fi
  done
}

serving_image() {
  local live
  live=$(sed -n "s/^$live_mark//p" "$HOME/.workhub/proxy/$1-$stack/haproxy.cfg" 2>/dev/null | head -n 1)
  docker inspect --format '{{.Config.Image}}' "$1-$stack${live:+-$live}" 2>/dev/null || true
}

say() { printf 'remove: %s\n' "$*" >&2; }
state="$HOME/.workhub"
serving=$(serving_image "$hub")
for ref in $(stack_images "$hub"); do
  if [ "$ref" = "$serving" ]; then
    say "kept image $ref: $hub serves from it"
    continue
  fi
  docker image rm "$ref" >/dev/null 2>&1 && say "removed image $ref"
done
[ "$image" = "$serving" ] || docker image rm "$image" >/dev/null 2>&1 || true
rm -rf "$HOME/${context_dir:?}"
for dir in "$state/builds/$hub-$stack-"*; do
  [ -d "$dir/context" ] && rm -rf "$dir/context"
done
say "removed the build context uploads of $hub in stack $stack; its build logs stay under $state/builds"
