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

from components.config.models import Hub, StackConfig, run_uid
from components.render.host.deploy import NEW_VOLUME, OWNERS, REOWN
from components.config.runtime import volume_name
from components.render.host.build import REGISTRY_LOGIN
from components.render.shell import script
from components.render.swarm.stack import namespace, service_name

_PULL = r"""# The helper image, pulled (quietly: stdout may be the archive) with a login that is gone at exit.
if ! docker image inspect "$helper_image" >/dev/null 2>&1; then
  registry_login fail "$registry_user" "$registry_server"
  docker pull --quiet "$helper_image" >/dev/null 2>&1 || fail "$node cannot pull $helper_image"
fi
"""

_HELPER = REGISTRY_LOGIN + r"""
fail() { printf '%s: FAILED: %s\n' "$step" "$*" >&2; exit 1; }
""" + _PULL

_BACKUP = _HELPER + r"""
docker volume inspect "$volume" >/dev/null 2>&1 \
  || fail "volume $volume is not on $node; the hub's data is on the node labelled data: [$hub]"
# A gzipped tar of the volume's files on stdout, read through a throwaway container (read-only),
# as uid 0 with DAC_READ_SEARCH alone: it reads every file, whatever its owner, and changes nothing.
docker run --rm --network none --user 0 --cap-drop ALL --cap-add DAC_READ_SEARCH --security-opt no-new-privileges \
  -v "$volume:/data:ro" --entrypoint tar "$helper_image" -czf - -C /data .
"""

# What both halves of a restore share: the volumes' names, helpers that run in a throwaway container
# of the helper image (root, no network), and one exit path. A failure ends in one line, last, that
# says what failed and in what state the hub's data is: `$step: FAILED: <what>; <outcome>`.
_RESTORE_COMMON = REGISTRY_LOGIN + REOWN + NEW_VOLUME + r"""
say() { printf '%s: %s\n' "$step" "$*" >&2; }
staging="$volume.restore-$stamp"
kept="$volume.pre-restore-$stamp"
reason="" doing="starting"
# fail WHY: the restore stops here (the exit trap says what that left).
fail() { reason="$*"; exit 1; }
helper() {
  docker run --rm --user 0 --network none --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER \
    --security-opt no-new-privileges "$@"
}
# summary VOLUME: "<files> <digest>": how many entries but directories it holds, and a sha256 over
# every regular file's path and content (what two copies of the same data have in common).
summary() {
  helper -v "$1:/data:ro" --entrypoint sh "$helper_image" -c \
    'cd /data && printf "%s %s\n" "$(find . -mindepth 1 ! -type d | wc -l)" "$(find . -type f -exec sha256sum {} + | sort | sha256sum | cut -c1-64)"'
}
# copy_into FROM TO: TO holds exactly what FROM holds (owners, modes and times kept). Docker cannot
# rename a volume, so taking a volume's place is this copy.
copy_into() {
  helper -v "$1:/from:ro" -v "$2:/to" --entrypoint sh "$helper_image" -c \
    'find /to -mindepth 1 -maxdepth 1 -exec rm -rf {} + && cp -a /from/. /to/'
}
"""

_RESTORE = _RESTORE_COMMON + r"""
archive="" staged=false
finish() {
  local rc=$?
  set +e
  rm -rf ${login_dir:+"$login_dir"} ${archive:+"$archive"}
  [ "$rc" -eq 0 ] && return 0
  [ "$staged" = true ] && docker volume rm "$staging" >/dev/null 2>&1
  printf '%s: FAILED: %s; nothing was changed: %s holds its data as before, and %s kept running\n' \
    "$step" "${reason:-$doing failed (exit $rc)}" "$volume" "$service" >&2
}
trap finish EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
""" + _PULL + r"""
doing="receiving the archive"
archive=$(mktemp)
cat >"$archive"
got=$(sha256sum "$archive" | cut -d' ' -f1)
[ "$got" = "$sha256" ] || fail "the archive arrived with sha256 $got, not $sha256"
# The archive goes into a volume of its own and must hold as many files as the backup did, while
# the hub keeps running.
doing="making $staging on $node"
docker volume rm "$staging" >/dev/null 2>&1 || true
new_volume --label "workhub.restore=$stamp" "$staging"
staged=true
doing="extracting the archive into $staging on $node"
helper -i -v "$staging:/data" --entrypoint tar "$helper_image" -xzf - -C /data <"$archive" \
  || fail "the archive does not extract into $staging on $node (it is damaged)"
doing="counting the files in $staging"
got=$(summary "$staging")
[ "${got%% *}" = "$files" ] || fail "the archive holds $files file(s), but ${got%% *} arrived in $staging on $node"
# The archive keeps the owners it was made with (another stack's uid, or a hub's from before it had its own).
doing="giving the files in $staging to the hub's uid $uid"
reown "$staging" "$uid:$uid"
say "staged $volume's new content in $staging on $node ($(stat -c %s "$archive") bytes, $files file(s)); $service still runs"
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


def _restore_values(config: StackConfig, stack: str, hub: Hub, volume_key: str, stamp: str) -> dict:
    return {**_values(config, stack, hub, volume_key, "restore"), "stamp": stamp, "uid": run_uid(hub, stack)}


def restore_script(config: StackConfig, stack: str, hub: Hub, volume_key: str, sha256: str, files: int,
                   stamp: str) -> str:
    """The first half of a restore, on the hub's data node (the one its config names now) while the hub
    runs: the gzipped tar on stdin, checked against `sha256`, extracted into a volume of its own
    (`<volume>.restore-<stamp>`) that must then hold `files` files (entries but directories), and
    given to the hub's uid. A failure removes that volume: nothing of the hub's was changed.
    swap_script puts it in the volume's place."""
    return script({**_restore_values(config, stack, hub, volume_key, stamp), "sha256": sha256, "files": files},
                  _RESTORE)


_SWAP = _RESTORE_COMMON + r"""
old="" kept_whole=false touched=false done=false
finish() {
  local rc=$?
  set +e
  rm -rf ${login_dir:+"$login_dir"}
  [ "$rc" -eq 0 ] && return 0
  local outcome="$volume was not touched"
  if [ "$done" = true ]; then
    outcome="$volume holds the restored content all the same (its old content is in $kept)"
  elif [ "$touched" = true ]; then
    if copy_into "$kept" "$volume" && [ "$(summary "$volume")" = "$old" ]; then
      outcome="$volume holds its old content again (a copy of it is in $kept)"
    else
      outcome="putting the old content back into $volume failed too: it is in $kept on $node; copy it back with a container that mounts both, before the hub takes requests"
    fi
  elif [ "$kept_whole" = false ]; then
    docker volume rm "$kept" >/dev/null 2>&1
  fi
  docker volume rm "$staging" >/dev/null 2>&1
  printf '%s: FAILED: %s; %s\n' "$step" "${reason:-$doing failed (exit $rc)}" "$outcome" >&2
}
trap finish EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
""" + _PULL + r"""
# The hub's service was scaled to 0 before this runs; its container goes within its grace period.
doing="waiting for the hub's container on $node to stop"
for _ in $(seq "$stop_wait"); do
  [ -z "$(docker ps --quiet --filter "volume=$volume")" ] && break
  sleep 1
done
[ -z "$(docker ps --quiet --filter "volume=$volume")" ] || fail "a container on $node still uses $volume"
docker volume inspect "$staging" >/dev/null 2>&1 || fail "$staging is not on $node (the restore's first half did not end)"
doing="making $volume on $node"
docker volume inspect "$volume" >/dev/null 2>&1 || new_volume --label "com.docker.stack.namespace=$namespace" "$volume"
# The live content into $kept first (the way back, kept until a prune), checked; only then the new
# content into the live volume, checked.
doing="reading $volume on $node"
old=$(summary "$volume")
doing="copying $volume's content into $kept on $node"
if docker volume inspect "$kept" >/dev/null 2>&1; then
  kept_whole=true
  fail "$kept is on $node already (an earlier try of this restore): it may be the only copy of $volume's old content; compare the two, and remove it before restoring again"
fi
new_volume --label "workhub.pre-restore=$stamp" "$kept"
copy_into "$volume" "$kept"
[ "$(summary "$kept")" = "$old" ] || fail "the copy of $volume in $kept does not hold what $volume holds"
kept_whole=true
doing="copying $staging's content into $volume on $node"
touched=true
new=$(summary "$staging")
copy_into "$staging" "$volume"
[ "$(summary "$volume")" = "$new" ] || fail "$volume does not hold what $staging holds after the copy"
doing="giving the files of $volume to the hub's uid $uid"
reown "$volume" "$uid:$uid"
mark_owned "$volume" "$uid"
done=true
doing="removing $staging"
docker volume rm "$staging" >/dev/null
say "restored $volume on $node (${new%% *} file(s), the hub's uid $uid's); its old content is kept in $kept until a prune"
"""


def swap_script(config: StackConfig, stack: str, hub: Hub, volume_key: str, stamp: str) -> str:
    """The second half of a restore, on the hub's data node once its service is scaled to 0: the
    volume's content copied into `<volume>.pre-restore-<stamp>` (kept; checked), then the staged
    content (restore_script) copied into the volume (checked). Whatever fails after the volume was
    touched, the exit trap puts the old content back from the kept copy, and its last line says
    what failed and where the data is; the caller scales the service back up either way."""
    return script({**_restore_values(config, stack, hub, volume_key, stamp),
                   "stop_wait": config.deploy.stop_grace_seconds + 10}, _SWAP)


_UNSTAGE = r"""
for volume in "${staged[@]}"; do
  docker volume rm "$volume" >/dev/null 2>&1 && printf 'restore: removed %s\n' "$volume" >&2
done
true
"""


def unstage_script(config: StackConfig, stack: str, hub: Hub, volume_keys: list[str], stamp: str) -> str:
    """On the hub's data node, after a restore that stopped between its halves: the volumes its first
    half staged are removed (they hold only what the backup has)."""
    return script({"staged": [f"{volume_name(stack, hub.name, key)}.restore-{stamp}" for key in volume_keys]},
                  _UNSTAGE)


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
