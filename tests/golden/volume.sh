set -eu
hub=wbsaleshub
stack=staging
volume_key=data
volume=workhub-staging-wbsaleshub-data
namespace=''
say() { printf 'volume: %s\n' "$*" >&2; }
if docker volume inspect "$volume" >/dev/null 2>&1; then
  say "$volume is on the host: it is this stack's, with its data as it is"
else
  labels=(--label "workhub.stack=$stack" --label "workhub.hub=$hub" --label "workhub.volume=$volume_key")
  [ -z "$namespace" ] || labels+=(--label "com.docker.stack.namespace=$namespace")
  docker volume create "${labels[@]}" "$volume" >/dev/null
  say "created $volume"
fi
printf '{"volume": "%s"}\n' "$volume"
