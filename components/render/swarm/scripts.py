"""Pure builders of the scripts that run a stack on its Swarm, from the documents of
components/render/swarm/stack.py: creating and joining the Swarm, the node labels, and the deploy (`docker stack deploy`, then waiting for every
service's rollout and saying, at the end, why one rolled back). Config values enter only through
`shell.script`; secret values only as shell variables put in front of the script when it runs
(`remote.with_secrets`), never on a command line.
"""

from __future__ import annotations

from typing import Mapping, Optional

from components.config.models import BuildSettings, RegistryConfig, StackConfig, SwarmNode
from components.config.runtime import Runtime
from components.render.host.build import PAUSE_AFTER, PRIVATE_STATE, REGISTRY_LOGIN
from components.render.shell import script
from components.render.swarm.stack import (LABEL_PREFIX, PROXY_CONFIG_FILE, PROXY_SERVICE, PUBLISH_CONFIG_FILE,
                                           PUBLISH_SERVICE, namespace, node_labels, proxy_config_name as config_name,
                                           publish_config, secret_name, service_name)

# `join_swarm`: the node joins the Swarm of $manager with the token in the shell variable join_token
# (a secret put in front of the script). `docker swarm join` takes the token only as an argument,
# where any user of the host reads it (/proc/<pid>/cmdline) while the join runs; so the join goes
# to the Docker Engine API (POST /swarm/join, what that command sends), with the token in the
# request's body, which curl reads on stdin. curl (7.40 or later, for --unix-socket) is on nearly
# every host, and checked before anything changes; the engine's socket is the one the Docker CLI
# uses there (DOCKER_HOST, or its context).
_JOIN = r"""
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
"""

_MEMBER = _JOIN + r"""
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
"""

def init_script(node: SwarmNode) -> str:
    """Creates the Swarm on its first manager, unless the node is in one already."""
    return script({"node": node.name, "address": node.address, "manager": "", "role": "manager"}, _MEMBER)


def join_script(node: SwarmNode, manager: SwarmNode, role: str) -> str:
    """Joins `node` to the Swarm of `manager` as a manager or worker, unless it is in one already; the
    join token is the shell variable `join_token`, put in front of the script as a secret."""
    assert role in ("manager", "worker")
    return script({"node": node.name, "address": node.address, "manager": manager.address, "role": role}, _MEMBER)


def join_token_script(role: str) -> str:
    """Prints the Swarm's join token for `role`, on a manager: its output is a secret (never logged)."""
    assert role in ("manager", "worker")
    return script({"role": role}, 'docker swarm join-token --quiet "$role"')


_LABELS = r"""
say() { printf 'swarm-labels: %s\n' "$*" >&2; }
# Each node's workhub.* labels are exactly the ones its config gives: the others are removed.
for i in "${!nodes[@]}"; do
  node=${nodes[$i]}
  read -r -a want <<<"${labels[$i]}"
  args=()
  for label in $(docker node inspect --format '{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}} {{end}}' "$node"); do
    case "$label" in "$prefix".*) ;; *) continue ;; esac
    keep=false
    for wanted in "${want[@]}"; do [ "$wanted" = "$label" ] && keep=true; done
    "$keep" || args+=(--label-rm "${label%%=*}")
  done
  for wanted in "${want[@]}"; do args+=(--label-add "$wanted"); done
  [ "${#args[@]}" -eq 0 ] || docker node update "${args[@]}" "$node" >/dev/null
  say "$node: ${labels[$i]:-no workhub labels}"
done
"""


def labels_script(config: StackConfig) -> str:
    """Sets every node's `workhub.*` labels (serve, build, data.<hub>) on a manager."""
    assert config.swarm is not None
    rows = [" ".join(f"{key}={value}" for key, value in node_labels(node).items()) for node in config.swarm.nodes]
    return script({"prefix": LABEL_PREFIX, "nodes": [node.name for node in config.swarm.nodes], "labels": rows},
                  _LABELS)


_DEPLOY = REGISTRY_LOGIN + r"""
say() { printf 'swarm-deploy: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
""" + PRIVATE_STATE + r"""
dir="$HOME/.workhub/swarm/$stack"
mkdir -p "$dir"
printf '%s\n' "$stack_file" >"$dir/stack.json.tmp" && mv "$dir/stack.json.tmp" "$dir/stack.json"
printf '%s' "$proxy_config" >"$dir/$proxy_config_file"
printf '%s' "$publish_config" >"$dir/$publish_config_file"

# A secret's value goes in through stdin, under a name of its own (a new value is a new name).
for i in "${!secret_names[@]}"; do
  name=${secret_names[$i]}
  docker secret inspect "$name" >/dev/null 2>&1 && continue
  var="secret_$i"
  printf '%s' "${!var}" | docker secret create --label "workhub.stack=$stack" "$name" - >/dev/null
  say "created secret $name"
done

# The registry login lives in a client config that is gone when this script ends; the nodes get it
# from the manager with the services (--with-registry-auth), never on their disks.
registry_login fail "$registry_user" "$registry_server"

# When each service's last rollout started, to tell its rollout now from an older one.
started() { docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}' "$1" 2>/dev/null || true; }
before=()
for service in "${services[@]}"; do before+=("$(started "$service")"); done
# What each hub's service runs before this deploy: when the deploy changes it, it is the hub's
# previous image (the one a rollback pins), kept in $dir until the hub's image changes again.
image_of() { docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$1" 2>/dev/null || true; }
was=()
for i in "${!hubs[@]}"; do was+=("$(image_of "${services[$i]}")"); done
(cd "$dir" && docker stack deploy --with-registry-auth --resolve-image always --compose-file stack.json "$stack") >&2

# The tasks of the service that ended with an error (an unhealthy new task), not those an update stopped.
why_failed() {
  docker service ps --no-trunc \
    --format '{{.Error}}|{{.Name}} on {{.Node}}: {{.Error}} ({{.CurrentState}})' "$1" 2>/dev/null \
    | grep -v '^|' | cut -d'|' -f2- | head -n 3 || true
}
failed=()
# A deploy that changed what the tasks run starts a rollout at once; one that did not (a new
# service, a scaled one, or one left as it was) starts none within a few seconds of the deploy
# (one window for all the services, not one each). Swarm clears a service's last rollout when it is
# updated (as `docker stack deploy` updates every service): no rollout now is none since.
settled=$(( $(date +%s) + 5 ))
for i in "${!services[@]}"; do
  service=${services[$i]}
  deadline=$(( $(date +%s) + timeout ))
  while :; do
    state=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$service")
    now=$(started "$service")
    if [ "$now" = "${before[$i]}" ] || [ -z "$now" ]; then
      replicas=$(docker service ls --filter "name=$service" --format '{{.Name}} {{.Replicas}}' | sed -n "s|^$service ||p")
      running=${replicas%%/*} desired=${replicas#*/}
      desired=${desired%% *}
      if [ "$(date +%s)" -ge "$settled" ] && [ -n "$replicas" ] && [ "$running" = "$desired" ]; then
        say "$service: $running/$desired task(s) running"
        break
      fi
    else
      case "$state" in
        completed) say "$service: rolled out"; break ;;
        rollback_completed|rollback_paused|paused)
          message=$(docker service inspect --format '{{.UpdateStatus.Message}}' "$service")
          case "$state" in paused) done_to="paused it" ;; *) done_to="rolled it back" ;; esac
          why=$(why_failed "$service" | paste -sd';' -)
          failed+=("$service: its update did not stay healthy and Swarm $done_to ($message)${why:+; $why}")
          break ;;
      esac
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      # Why: the errors its tasks ended with (a task that exits at its start says only its exit
      # code), then the last lines its tasks logged, which say what the hub itself found wrong.
      why=$(why_failed "$service" | paste -sd';' -)
      docker service logs --raw --tail 5 "$service" 2>&1 | tail -n 5 | sed "s|^|$service: |" >&2 || true
      failed+=("$service: not converged within $timeout s (state: ${state:-new})${why:+; $why}")
      break
    fi
    sleep 1
  done
done

# Secrets and proxy configs of this stack no service uses any more (Docker refuses the others).
for name in $(docker secret ls --filter "label=workhub.stack=$stack" --format '{{.Name}}'); do
  case " ${secret_names[*]} " in *" $name "*) ;; *) docker secret rm "$name" >/dev/null 2>&1 || true ;; esac
done
for name in $(docker config ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}}'); do
  case " ${config_names[*]} " in *" $name "*) ;; *) docker config rm "$name" >/dev/null 2>&1 || true ;; esac
done

if [ "${#failed[@]}" -gt 0 ]; then
  # One FAILED line (the reason `up` ends with), naming every service that did not roll out.
  reason=${failed[0]}
  for line in "${failed[@]:1}"; do reason+=" | $line"; done
  say "FAILED: $reason"
  say "the services above run their previous version; the others run this one"
  exit 1
fi
say "stack $stack is up on its Swarm"
# What each hub's service runs now, for the stack's outputs: its image by digest (the deploy
# resolved each tag to one), the one it ran before, and its tasks running/desired.
rows=()
for i in "${!hubs[@]}"; do
  service=${services[$i]}
  image=$(docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$service")
  kept="$dir/previous-image.${hubs[$i]}"
  if [ -n "${was[$i]}" ] && [ "${was[$i]}" != "$image" ]; then printf '%s' "${was[$i]}" >"$kept"; fi
  previous=$(cat "$kept" 2>/dev/null || true)
  replicas=$(docker service ls --filter "name=$service" --format '{{.Name}} {{.Replicas}}' | sed -n "s|^$service ||p")
  rows+=("$(printf '"%s": {"image": "%s", "previous": "%s", "replicas": "%s"}' "${hubs[$i]}" "$image" "$previous" \
    "${replicas%% *}")")
done
printf '{"stack": "%s", "hubs": {%s}}\n' "$stack" "$(IFS=,; printf '%s' "${rows[*]}")"
"""


def deploy_secret_values(config: StackConfig, runtimes: Mapping[str, Runtime]) -> dict[str, str]:
    """The values of every hub's secrets as the deploy script reads them (secret_0, secret_1, ...
    in the order of its secret_names): only ever passed as a Pulumi secret."""
    values = []
    for hub in config.hubs:
        runtime = runtimes[hub.name]
        values += [runtime.secret_values[f"secret_{i}"] for i in range(len(runtime.secret_names))]
    return {f"secret_{i}": value for i, value in enumerate(values)}


def deploy_script(config: StackConfig, stack: str, runtimes: Mapping[str, Runtime], stack_text: str,
                  proxy_text: str, proxy_config_name: str, registry: Optional[RegistryConfig],
                  timeout_seconds: int) -> str:
    """Deploys the stack on a manager and waits for each service to run its new version; a service
    Swarm rolled back is named at the end with why, and the script fails."""
    secret_names = [secret_name(stack, hub.name, name, runtimes[hub.name].fingerprints[name])
                    for hub in config.hubs for name in runtimes[hub.name].secret_names]
    services = [service_name(stack, hub.name) for hub in config.hubs] + \
        [f"{namespace(stack)}_{role}" for role in (PROXY_SERVICE, PUBLISH_SERVICE)]
    publish_text = publish_config(config, stack)
    return script({
        "stack": namespace(stack),
        "stack_file": stack_text,
        "proxy_config": proxy_text,
        "proxy_config_file": PROXY_CONFIG_FILE,
        "publish_config": publish_text,
        "publish_config_file": PUBLISH_CONFIG_FILE,
        "config_names": [proxy_config_name, config_name(stack, publish_text, PUBLISH_SERVICE)],
        "secret_names": secret_names,
        "services": services,
        "hubs": [hub.name for hub in config.hubs],
        "registry_server": registry.server if registry else "",
        "registry_user": (registry.username or "") if registry else "",
        "timeout": timeout_seconds,
    }, _DEPLOY)


_PUSH = PAUSE_AFTER + REGISTRY_LOGIN + r"""
say() { printf 'push: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "FAILED: $image is not on the build node; its build did not leave it there (run up again to build it)"
  exit 1
fi
registry_login fail "$username" "$server"
docker tag "$image" "$remote"
attempt=0
code=1
while [ "$attempt" -lt "$max_attempts" ]; do
  attempt=$((attempt + 1))
  say "attempt $attempt of $max_attempts: pushing $remote"
  code=0
  timeout --kill-after=30 "$attempt_timeout" docker push "$remote" >"$login_dir/push.log" 2>&1 || code=$?
  [ "$code" -eq 0 ] && break
  tail -n 5 "$login_dir/push.log" >&2
  grep -qiE 'unauthorized|denied|no basic auth' "$login_dir/push.log" && break
  pause_after say "$attempt" "$code"
done
digest=$(docker image inspect --format '{{join .RepoDigests " "}}' "$remote" | tr ' ' '\n' | grep -F "$repository@" | head -n 1)
# Only the registry's tag goes; the image stays on the build node as $image.
docker image rm "$remote" >/dev/null 2>&1 || true
if [ "$code" -ne 0 ]; then
  say "FAILED: could not push $remote to $server after $attempt attempt(s)"
  exit 1
fi
say "pushed $remote ($digest) for the Swarm's nodes to pull"
printf '{"image": "%s", "pushed": "%s", "digest": "%s"}\n' "$image" "$remote" "$digest"
"""


def push_script(image: str, remote: str, registry: RegistryConfig, build: BuildSettings) -> str:
    """On the build node, after a hub's build: push its image to the stack's registry as `remote`
    (a login of the push's own, its password the secret variable registry_password), trying again
    when the push fails from the network; the image stays on the node for the next build's cache."""
    return script({"image": image, "remote": remote, "repository": remote.rsplit(":", 1)[0],
                   "server": registry.server, "username": registry.username or "",
                   "max_attempts": build.attempts, "attempt_timeout": build.attempt_timeout_seconds,
                   "retry_backoff": build.retry_backoff_seconds}, _PUSH)


_REMOVE = r"""
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
"""


def remove_script(stack: str) -> str:
    """Takes the stack off its Swarm (its services, network, configs and secrets), on a manager;
    the hubs' volumes stay on their nodes, like one host's."""
    return script({"stack": namespace(stack)}, _REMOVE)
