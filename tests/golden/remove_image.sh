set -eu
hub=wbsaleshub
stack=staging
image=wbsaleshub:staging-0123456789ab
context_dir=.workhub/contexts/staging/wbsaleshub
stack_images() {
  local ref id
  for ref in $(docker image ls "$1" --format '{{.Repository}}:{{.Tag}}'); do
    id=${ref#"$1:$stack-"}
    if [ "$id" != "$ref" ] && [[ $id =~ ^[0-9a-f]{12}$ ]]; then printf '%s\n' "$ref"; fi
  done
}

say() { printf 'remove: %s\n' "$*" >&2; }
state="$HOME/.workhub"
for ref in $(stack_images "$hub"); do
  docker image rm "$ref" >/dev/null 2>&1 && say "removed image $ref"
done
docker image rm "$image" >/dev/null 2>&1 || true
rm -rf "$HOME/${context_dir:?}"
for dir in "$state/builds/$hub-$stack-"*; do
  [ -d "$dir/context" ] && rm -rf "$dir/context"
done
say "removed the build context uploads of $hub in stack $stack; its build logs stay under $state/builds"
