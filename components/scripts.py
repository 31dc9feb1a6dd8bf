"""Pure builders of the scripts that run on the build host: typed config in, script text out.

Every script prints its progress to stderr (streamed to the Pulumi log) and at most one short
JSON line to stdout (kept in Pulumi state). Config values enter only through `shell.script`.
"""

from __future__ import annotations

from typing import Optional

from .config import BuildSettings, Hub, SshKeepAlive
from .shell import script

# Where workhub keeps its files on the host, under the deploy user's home.
STATE_DIR = ".workhub"

# Picks the BuildKit client: buildx where the host has it, else the classic client with BuildKit on.
_BUILDER = r"""
if docker buildx version >/dev/null 2>&1; then
  builder=(docker buildx build --load)
else
  builder=(env DOCKER_BUILDKIT=1 docker build)
fi
"""

# A build that uses the same features as the hub Dockerfiles: the syntax line and a cache mount.
_BUILDKIT_CHECK = r"""
buildkit_works() {
  local work tag
  work=$(mktemp -d)
  # A tag of its own: the facts and the preflight may check at the same time.
  tag="workhub-buildkit-check:$(basename "$work" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')"
  printf '# syntax=docker/dockerfile:1\nFROM %s\nRUN --mount=type=cache,target=/root/.npm,sharing=locked true\n' \
    "$base_image" >"$work/Dockerfile"
  if "${builder[@]}" --progress=plain --network=host --tag "$tag" "$work" >"$work/log" 2>&1; then
    docker image rm "$tag" >/dev/null 2>&1 || true
    rm -rf "$work"
    return 0
  fi
  tail -n 20 "$work/log" >&2
  rm -rf "$work"
  return 1
}
"""

_RESOURCES = r"""
cpus=$(getconf _NPROCESSORS_ONLN)
memory_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
swap_mb=$(awk '/^SwapTotal:/ { print int($2 / 1024) }' /proc/meminfo)
docker_root=$(docker info --format '{{.DockerRootDir}}')
disk_free_mb=$(df -Pm "$docker_root" | awk 'NR == 2 { print $4 }')
"""

_HOST_FACTS = _BUILDER + _BUILDKIT_CHECK + _RESOURCES + r"""
say() { printf 'host-facts: %s\n' "$*" >&2; }
docker_version=$(docker version --format '{{.Server.Version}}')
say "docker engine $docker_version, builder: ${builder[*]}"
say "checking a BuildKit build with a cache mount FROM $base_image"
if buildkit_works; then buildkit=true; else buildkit=false; say "BuildKit check failed (log above)"; fi
case "${builder[0]}" in docker) builder_name=buildx ;; *) builder_name=docker-build ;; esac
say "cpus $cpus, memory ${memory_mb} MB, swap ${swap_mb} MB, free disk ${disk_free_mb} MB under $docker_root"
printf '{"docker_version": "%s", "builder": "%s", "buildkit": %s, "cpus": %s, "memory_mb": %s, "swap_mb": %s, "disk_free_mb": %s}\n' \
  "$docker_version" "$builder_name" "$buildkit" "$cpus" "$memory_mb" "$swap_mb" "$disk_free_mb"
"""


def host_facts_script(base_image: str) -> str:
    """Report the Docker version, whether BuildKit builds work, CPUs, memory and free disk."""
    return script({"base_image": base_image}, _HOST_FACTS)


_PREFLIGHT = _BUILDER + _BUILDKIT_CHECK + _RESOURCES + r"""
say() { printf 'preflight: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
if [ $((memory_mb + swap_mb)) -lt "$node_heap_mb" ]; then
  fail "workhub:build.nodeHeapMb is $node_heap_mb MB but the host has $memory_mb MB memory and $swap_mb MB swap; lower workhub:build.nodeHeapMb in Pulumi.yaml or add swap to the host"
fi
if [ "$disk_free_mb" -lt "$min_free_disk_mb" ]; then
  fail "only $disk_free_mb MB free under $docker_root, workhub:build.minFreeDiskMb asks for $min_free_disk_mb MB; free space on the host (docker image prune) or lower workhub:build.minFreeDiskMb"
fi
if ! buildkit_works; then
  fail "a BuildKit build with a cache mount FROM $base_image does not work on this host (its log is above); install docker buildx, or a Docker engine with BuildKit"
fi
say "ok: ${memory_mb} MB memory + ${swap_mb} MB swap hold a ${node_heap_mb} MB Node heap; ${disk_free_mb} MB free disk; BuildKit works"
"""


def preflight_script(base_image: str, build: BuildSettings) -> str:
    """Fail, before any build, when the host cannot hold the Node heap, lacks disk, or lacks BuildKit."""
    return script(
        {"base_image": base_image, "node_heap_mb": build.node_heap_mb, "min_free_disk_mb": build.min_free_disk_mb},
        _PREFLIGHT,
    )


_HOST_SETUP = r"""
say() { printf 'host-setup: %s\n' "$*" >&2; }
mkdir -p "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
config="$HOME/.ssh/config"
touch "$config"
chmod 600 "$config"
wanted=$(mktemp)
trap 'rm -f "$wanted"' EXIT
# Keep everything outside workhub's block; write the block anew at the end.
awk '/^# BEGIN workhub$/ { skip = 1 } !skip { print } /^# END workhub$/ { skip = 0 }' "$config" >"$wanted"
printf '# BEGIN workhub\nHost *\n    ServerAliveInterval %s\n    ServerAliveCountMax %s\n# END workhub\n' \
  "$server_alive_interval" "$server_alive_count_max" >>"$wanted"
if cmp -s "$wanted" "$config"; then
  say "~/.ssh/config already keeps sessions alive"
else
  cat "$wanted" >"$config"
  say "~/.ssh/config: ServerAliveInterval $server_alive_interval, ServerAliveCountMax $server_alive_count_max"
fi

dropin=/etc/ssh/sshd_config.d/workhub.conf
want_sshd=$(printf 'ClientAliveInterval %s\nClientAliveCountMax %s' "$client_alive_interval" "$client_alive_count_max")
if ! sudo -n true 2>/dev/null; then
  say "no passwordless sudo for $(id -un): sshd's ClientAlive settings are left as they are"
elif [ "$(sudo -n cat "$dropin" 2>/dev/null)" = "$want_sshd" ]; then
  say "$dropin already keeps client sessions alive"
else
  printf '%s\n' "$want_sshd" | sudo -n tee "$dropin" >/dev/null
  if ! sudo -n sshd -t; then
    sudo -n rm -f "$dropin"
    say "FAILED: sshd rejected $dropin; removed it again"
    exit 1
  fi
  sudo -n systemctl reload ssh 2>/dev/null || sudo -n systemctl reload sshd 2>/dev/null \
    || say "wrote $dropin; reload sshd to apply it"
  say "$dropin: ClientAliveInterval $client_alive_interval, ClientAliveCountMax $client_alive_count_max"
fi
"""


def host_setup_script(keep_alive: SshKeepAlive) -> str:
    """SSH keep-alives on the host, idempotently: the deploy user's ~/.ssh/config, and sshd's
    ClientAlive settings through a drop-in where the user may use sudo."""
    return script(
        {
            "server_alive_interval": keep_alive.server_alive_interval,
            "server_alive_count_max": keep_alive.server_alive_count_max,
            "client_alive_interval": keep_alive.client_alive_interval,
            "client_alive_count_max": keep_alive.client_alive_count_max,
        },
        _HOST_SETUP,
    )


def context_dir(stack: str, hub: str) -> str:
    """Where a hub's build context is uploaded, relative to the deploy user's home."""
    return f"{STATE_DIR}/contexts/{stack}/{hub}"


def build_args(hub: Hub, build: BuildSettings, registry: Optional[str]) -> list[str]:
    """The `--build-arg` words: workhub's settings first, then the hub's own."""
    args = {
        "NODE_OPTIONS": f"--max-old-space-size={build.node_heap_mb}",
        "NPM_CONFIG_FETCH_RETRIES": str(build.npm_fetch_retries),
        "NPM_CONFIG_FETCH_TIMEOUT": str(build.npm_fetch_timeout_ms),
        "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT": str(build.npm_fetch_retry_min_timeout_ms),
        "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT": str(build.npm_fetch_retry_max_timeout_ms),
        "NPM_CONFIG_PREFER_OFFLINE": "true" if build.npm_prefer_offline else "false",
    }
    if registry:
        args["NPM_CONFIG_REGISTRY"] = registry
    args.update(hub.build_args)
    words = []
    for key, value in args.items():
        words += ["--build-arg", f"{key}={value}"]
    return words


_BUILD = _BUILDER + r"""
say() { printf 'build: %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
state="$HOME/.workhub"
context="$HOME/$context_dir"
log="$state/logs/$hub-$stack-$content_hash.log"
mkdir -p "$state/logs"
record() {
  printf '{"hub": "%s", "stack": "%s", "hash": "%s", "image": "%s", "start_ms": %s, "end_ms": %s, "result": "%s", "log": "%s"}\n' \
    "$hub" "$stack" "$content_hash" "$image" "$1" "$2" "$3" "$log" >>"$state/builds.jsonl"
}
if docker image inspect "$image" >/dev/null 2>&1; then
  now=$(now_ms)
  record "$now" "$now" reused
  say "$image is already on the host; nothing to build"
else
  say "building $image from $context/$dockerfile with ${builder[*]}"
  start=$(now_ms)
  set +e
  "${builder[@]}" --progress="$progress" --network=host --file "$context/$dockerfile" --tag "$image" \
    "${build_args[@]}" "$context" 2>&1 | tee "$log" >&2
  status=${PIPESTATUS[0]}
  set -e
  end=$(now_ms)
  if [ "$status" -ne 0 ]; then
    record "$start" "$end" failed
    say "FAILED with exit code $status after $(( (end - start) / 1000 )) s; full log on the host: $log"
    exit "$status"
  fi
  record "$start" "$end" succeeded
  say "built $image in $(( (end - start) / 1000 )) s; log: $log"
fi
printf '{"image": "%s", "log": "%s"}\n' "$image" "$log"
"""


def build_script(
    hub: Hub, stack: str, image: str, content_hash: str, build: BuildSettings, registry: Optional[str]
) -> str:
    """Build one hub's image with BuildKit from its uploaded context, logging and recording it."""
    return script(
        {
            "hub": hub.name,
            "stack": stack,
            "image": image,
            "content_hash": content_hash,
            "context_dir": context_dir(stack, hub.name),
            "dockerfile": hub.dockerfile,
            "progress": build.progress,
            "build_args": build_args(hub, build, registry),
        },
        _BUILD,
    )


_REMOVE_IMAGE = r"""
docker image rm "$image" >/dev/null 2>&1 || true
"""


def remove_image_script(image: str) -> str:
    return script({"image": image}, _REMOVE_IMAGE)


_RUN = r"""
say() { printf 'run: %s\n' "$*" >&2; }
probe_host=$publish_address
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1
healthy() {
  local status
  exec 3<>"/dev/tcp/$probe_host/$host_port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$health_path" "$probe_host" >&3
  IFS= read -r status <&3 || return 1
  case "$status" in "HTTP/1."[01]" 200"*) return 0 ;; esac
  return 1
}
docker rm -f "$container" >/dev/null 2>&1 || true
docker run --detach --name "$container" --restart unless-stopped \
  --label workhub.hub="$hub" --label workhub.stack="$stack" \
  --env PORT="$port" --publish "$publish_address:$host_port:$port" "$image" >/dev/null
say "started $container from $image on $publish_address:$host_port (PORT $port); waiting for $health_path"
for _ in $(seq "$health_timeout"); do
  if (healthy) 2>/dev/null; then
    say "$container answers $health_path"
    printf '{"container": "%s", "url": "http://%s:%s"}\n' "$container" "$probe_host" "$host_port"
    exit 0
  fi
  sleep 1
done
say "FAILED: $container did not answer $health_path on $probe_host:$host_port within $health_timeout s; its last log lines:"
docker logs --tail 40 "$container" >&2 2>&1 || true
exit 1
"""


def container_name(hub: str, stack: str) -> str:
    return f"{hub}-{stack}"


def run_script(
    hub: Hub, stack: str, image: str, host_port: int, publish_address: str, health_timeout: int
) -> str:
    """(Re)start a hub's container with its PORT, host port and restart policy; wait until healthy."""
    return script(
        {
            "hub": hub.name,
            "stack": stack,
            "image": image,
            "container": container_name(hub.name, stack),
            "port": hub.port,
            "host_port": host_port,
            "publish_address": publish_address,
            "health_path": hub.health_path,
            "health_timeout": health_timeout,
        },
        _RUN,
    )


_STOP = r"""
docker rm -f "$container" >/dev/null 2>&1 || true
"""


def stop_script(hub: str, stack: str) -> str:
    return script({"container": container_name(hub, stack)}, _STOP)
