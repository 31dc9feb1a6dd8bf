set -eu
stack=workhub-staging
say() { printf 'swarm-remove: %s\n' "$*" >&2; }
if [ -n "$(docker stack ps --quiet "$stack" 2>/dev/null | head -n 1)" ] \
  || docker service ls --quiet --filter "label=com.docker.stack.namespace=$stack" | grep -q .; then
  docker stack rm "$stack" >&2
fi
# The stack's tasks stop (each its grace period), then its network, secrets and configs can go.
for _ in $(seq 120); do
  docker service ls --quiet --filter "label=com.docker.stack.namespace=$stack" | grep -q . || break
  sleep 1
done
for _ in $(seq 60); do
  left=$(docker secret ls --quiet --filter "label=workhub.stack=$stack")
  [ -z "$left" ] && break
  # shellcheck disable=SC2086
  docker secret rm $left >/dev/null 2>&1 || sleep 1
done
# A stack made again under this name starts with no previous images.
rm -f "$HOME/.workhub/swarm/$stack"/previous-image.*
say "stack $stack is off its Swarm; the hubs' volumes stay on their nodes"
