set -eu
node=node2
address=10.0.0.12
manager=10.0.0.11
role=manager
join_swarm() {
  command -v curl >/dev/null 2>&1 \
    || fail "$node has no curl: the join goes to the Docker Engine API through curl, so that its token is in no command line; install curl on $node (apt-get install curl), then run up again"
  local token=${join_token:-} endpoint socket response code message
  endpoint=$(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null) \
    || endpoint=${DOCKER_HOST:-unix:///var/run/docker.sock}
  case "$endpoint" in
    unix://*) socket=${endpoint#unix://} ;;
    *) fail "$node's Docker CLI reaches its engine at $endpoint; workhub joins a node through the engine's unix socket (the default /var/run/docker.sock, or DOCKER_HOST=unix://...)" ;;
  esac
  case "$token" in
    SWMTKN-*) ;;
    *) fail "the manager $manager gave no Swarm join token (got something else)" ;;
  esac
  # The addresses (letters, digits, '.', ':', '-': the config check) and the token need no JSON escaping.
  response=$(mktemp)
  if ! code=$(printf '{"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "%s", "RemoteAddrs": ["%s:2377"], "JoinToken": "%s"}' \
      "$address" "$manager" "$token" \
    | curl --silent --show-error --unix-socket "$socket" --request POST --header 'Content-Type: application/json' \
      --data-binary @- --output "$response" --write-out '%{http_code}' http://docker/swarm/join); then
    rm -f "$response"
    fail "curl could not reach the Docker engine of $node at $socket (its error is above)"
  fi
  message=$(sed -n 's/.*"message": *"\(.*\)".*/\1/p' "$response")
  rm -f "$response"
  [ "$code" = 200 ] || fail "$node could not join the Swarm of $manager as a $role (the engine answered $code${message:+: $message})"
}

say() { printf 'swarm: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case "$state" in
  active)
    say "$node is in the Swarm already (as $(docker info --format '{{if .Swarm.ControlAvailable}}manager{{else}}worker{{end}}'))"
    ;;
  inactive)
    if [ -z "$manager" ]; then
      docker swarm init --advertise-addr "$address" >/dev/null
      say "$node: created the Swarm (advertised at $address)"
    else
      join_swarm
      say "$node: joined the Swarm of $manager as a $role"
    fi
    ;;
  *) fail "$node's engine is $state in Swarm terms; see docker info on it" ;;
esac
