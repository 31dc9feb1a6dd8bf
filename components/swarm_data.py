"""Backup and restore of a hub's volumes on a Swarm: the volumes are local to the node that holds
them (its `data` label), so the archive is made and put back there, over SSH to that node; the
manager scales the hub's service to 0 around a restore and back to its replicas after, on the node
the config names then (so a restore onto another node is how a hub whose node was lost comes back).

Pure builders of the scripts, from the typed config; `workhub/data.py` runs them. The helper
container that reads or writes the volume runs workhub:helperImage (as on one host), pulled with the
registry login when the node does not have it (a node that serves no traffic may not): the password
is the shell variable `registry_password`, put in front of the script as a secret.
"""

from __future__ import annotations

from typing import Mapping

from .config import Hub, StackConfig, run_uid
from .deploy import OWNERS, REOWN
from .runtime import volume_name
from .scripts import REGISTRY_LOGIN
from .shell import script
from .swarm import namespace, service_name

_HELPER = REGISTRY_LOGIN + r"""
fail() { printf '%s: FAILED: %s\n' "$step" "$*" >&2; exit 1; }
# The helper image, pulled (quietly: stdout may be the archive) with a login that is gone at exit.
if ! docker image inspect "$helper_image" >/dev/null 2>&1; then
  registry_login fail "$registry_user" "$registry_server"
  docker pull --quiet "$helper_image" >/dev/null 2>&1 || fail "$node cannot pull $helper_image"
fi
"""

_BACKUP = _HELPER + r"""
docker volume inspect "$volume" >/dev/null 2>&1 \
  || fail "volume $volume is not on $node; the hub's data is on the node labelled data: [$hub]"
# A gzipped tar of the volume's files on stdout, read through a throwaway container (read-only),
# as uid 0 with DAC_READ_SEARCH alone: it reads every file, whatever its owner, and changes nothing.
docker run --rm --network none --user 0 --cap-drop ALL --cap-add DAC_READ_SEARCH --security-opt no-new-privileges \
  -v "$volume:/data:ro" --entrypoint tar "$helper_image" -czf - -C /data .
"""

_RESTORE = _HELPER + REOWN + r"""
say() { printf '%s: %s\n' "$step" "$*" >&2; }
archive=$(mktemp)
scratch=$archive
cat >"$archive"
got=$(sha256sum "$archive" | cut -d' ' -f1)
[ "$got" = "$sha256" ] || fail "the archive arrived with sha256 $got, not $sha256; nothing was changed"
# The hub's task is stopped (its service scaled to 0) before this runs; wait for its container to go.
for _ in $(seq "$stop_wait"); do
  [ -z "$(docker ps --quiet --filter "volume=$volume")" ] && break
  sleep 1
done
[ -z "$(docker ps --quiet --filter "volume=$volume")" ] \
  || fail "a container on $node still uses $volume; scale $service to 0 first"
docker volume inspect "$volume" >/dev/null 2>&1 || docker volume create --label "com.docker.stack.namespace=$namespace" \
  --label "workhub.stack=$stack" --label "workhub.hub=$hub" --label "workhub.volume=$volume_key" "$volume" >/dev/null
docker run --rm -i --user 0 --network none -v "$volume:/data" --entrypoint sh "$helper_image" \
  -c 'find /data -mindepth 1 -maxdepth 1 -exec rm -rf {} + && tar -xzf - -C /data' <"$archive"
# The archive keeps the owners it was made with (another stack's uid, or a hub's from before it had its own).
reown "$volume" "$uid:$uid"
mark_owned "$volume" "$uid"
say "restored $volume on $node ($(stat -c %s "$archive") bytes), its files the hub's uid $uid's"
"""


def _values(config: StackConfig, stack: str, hub: Hub, volume_key: str, step: str) -> dict:
    assert config.swarm is not None
    node = config.swarm.data_node(hub.name)
    assert node is not None, f"hub {hub.name} has no data node (the config check refuses that)"
    registry = config.registry
    return {"step": step, "node": node.name, "hub": hub.name, "stack": stack, "namespace": namespace(stack),
            "service": service_name(stack, hub.name), "volume": volume_name(stack, hub.name, volume_key),
            "volume_key": volume_key, "helper_image": config.helper,
            "registry_server": registry.server if registry else "",
            "registry_user": (registry.username or "") if registry and registry.username else ""}


def backup_script(config: StackConfig, stack: str, hub: Hub, volume_key: str) -> str:
    """On the hub's data node: a gzipped tar of one of its volumes on stdout (the hub keeps running)."""
    return script(_values(config, stack, hub, volume_key, "backup"), _BACKUP)


def restore_script(config: StackConfig, stack: str, hub: Hub, volume_key: str, sha256: str) -> str:
    """On the hub's data node (the one its config names now): replace one of its volumes (made if it
    is not there) with the gzipped tar on stdin, checked against `sha256` first; the hub's service
    must be scaled to 0 (scale_script), and no container there may use the volume."""
    return script({**_values(config, stack, hub, volume_key, "restore"), "sha256": sha256,
                   "stop_wait": config.deploy.stop_grace_seconds + 10, "uid": run_uid(hub, stack)}, _RESTORE)


_SCALE = r"""
say() { printf 'scale: %s\n' "$*" >&2; }
docker service inspect "$service" >/dev/null 2>&1 || { say "FAILED: $service is not on the Swarm; run up first"; exit 1; }
docker service scale --detach "$service=$replicas" >/dev/null
deadline=$(( $(date +%s) + timeout ))
while :; do
  running=$(docker service ps --filter desired-state=running --format '{{.CurrentState}}' "$service" | grep -c '^Running' || true)
  # Scaled to 0: no container of it may be left, even one that is stopping.
  left=$(docker service ps --format '{{.CurrentState}}' "$service" | grep -c -E '^(Running|Starting)' || true)
  if [ "$running" -eq "$replicas" ] && { [ "$replicas" -gt 0 ] || [ "$left" -eq 0 ]; }; then
    say "$service: $running/$replicas task(s) running"
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    say "FAILED: $service has $running of $replicas task(s) running after $timeout s:"
    docker service ps --no-trunc --format '  {{.Name}} on {{.Node}}: {{.CurrentState}} {{.Error}}' "$service" | head -n 5 >&2
    exit 1
  fi
  sleep 1
done
"""


def scale_script(config: StackConfig, stack: str, hub: Hub, replicas: int) -> str:
    """On a manager: the hub's service at `replicas` tasks, waiting until that many run (for 0: until
    none is left); it fails, naming where each task is, when they do not within the health timeout."""
    timeout = config.deploy.health_timeout_seconds + config.deploy.stop_grace_seconds + 30
    return script({"service": service_name(stack, hub.name), "replicas": replicas, "timeout": timeout}, _SCALE)


_PURGE = OWNERS + r"""
say() { printf 'purge: %s\n' "$*" >&2; }
# The stack's volumes here: the names its hubs' volumes have, and any other Docker labelled with
# the stack (a hub since removed from the config); a restore onto another node left a copy here too.
found=$({ printf '%s\n' "${volumes[@]}"
          docker volume ls --quiet --filter "label=com.docker.stack.namespace=$namespace"; } | sort -u)
removed=0 failed=0
while read -r volume; do
  [ -n "$volume" ] && docker volume inspect "$volume" >/dev/null 2>&1 || continue
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
"""


def purge_script(config: StackConfig, stack: str, node: str) -> str:
    """On one node, after the stack is off the Swarm: remove the stack's volumes that are there (its
    hubs' data), waiting for the containers of its stopping tasks to go first; `removed <volume>` on
    stdout for each. Run on every node: a hub's data node, and one a restore elsewhere left a copy on."""
    return script({"node": node, "stack": stack, "namespace": namespace(stack),
                   "volumes": [volume_name(stack, hub.name, key) for hub in config.hubs for key in hub.volumes],
                   "stop_wait": config.deploy.stop_grace_seconds + 30}, _PURGE)


_OWNERS = REGISTRY_LOGIN + REOWN + r"""
say() { printf 'owners: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
logged_in=false
# pull IMAGE: IMAGE is on this node, pulled with the registry login (gone at exit) when it was not.
pull() {
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  if [ "$logged_in" = false ]; then
    registry_login fail "$registry_user" "$registry_server"
    logged_in=true
  fi
  docker pull --quiet "$1" >/dev/null || fail "$node cannot pull $1"
}
for i in "${!volumes[@]}"; do
  volume=${volumes[$i]}
  if ! docker volume inspect "$volume" >/dev/null 2>&1; then
    docker volume create --label "com.docker.stack.namespace=$namespace" --label "workhub.stack=$stack" \
      --label "workhub.hub=${hubs[$i]}" --label "workhub.volume=${volume_keys[$i]}" "$volume" >/dev/null
    forget_owner "$volume"
    # What the image has at the volume's path, as Docker gives a new volume at its first mount (the
    # tasks mount it with nocopy): a container made, never started, and removed.
    pull "${images[$i]}"
    docker rm "$(docker create --network none --entrypoint true -v "$volume:${targets[$i]}" "${images[$i]}")" >/dev/null
    say "created $volume on $node"
  fi
  owned "$volume" "${uids[$i]}" && continue
  pull "$helper_image"
  say "giving the files of $volume on $node to uid ${uids[$i]}, ${hubs[$i]}'s own (once)"
  reown "$volume" "${uids[$i]}:${uids[$i]}" || fail "could not give the files of $volume to uid ${uids[$i]} (above)"
  mark_owned "$volume" "${uids[$i]}"
done
"""


def owners_script(config: StackConfig, stack: str, node: str, images: Mapping[str, str]) -> str:
    """On a data node, before the stack's deploy: each volume of the hubs whose data it holds exists,
    a new one with what the hub's image has at its path, and its files belong to the hub's uid (walked
    once per volume and uid, as on one host: deploy.REOWN). The registry password is the shell
    variable `registry_password`, put in front of the script as a secret. When Swarm rolls back the
    update that gave them to a new uid, the task it starts again runs as the uid it had, on files it
    can no longer write to (on one host the deploy gives them back): the next successful `up` ends that."""
    assert config.swarm is not None
    placed = [(hub, key) for hub in config.hubs for key in hub.volumes
              if (data := config.swarm.data_node(hub.name)) is not None and data.name == node]
    registry = config.registry
    return script({
        "node": node, "stack": stack, "namespace": namespace(stack), "helper_image": config.helper,
        "registry_server": registry.server if registry else "",
        "registry_user": (registry.username or "") if registry else "",
        "hubs": [hub.name for hub, _ in placed], "volume_keys": [key for _, key in placed],
        "volumes": [volume_name(stack, hub.name, key) for hub, key in placed],
        "targets": [hub.volumes[key].rstrip("/") for hub, key in placed],
        "images": [images[hub.name] for hub, _ in placed],
        "uids": [run_uid(hub, stack) for hub, _ in placed],
    }, _OWNERS)
