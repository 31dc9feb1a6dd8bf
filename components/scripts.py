"""Pure builders of the scripts that run on the build host: typed config in, script text out."""

from __future__ import annotations

from .shell import script

# Prints one JSON object of host facts on its last line. Everything else goes to stderr, so the
# build log shows what happened while stdout stays small enough to keep in Pulumi state.
_HOST_FACTS = r"""
say() { printf 'host-facts: %s\n' "$*" >&2; }

docker_version=$(docker version --format '{{.Server.Version}}')
say "docker engine $docker_version"
if docker buildx version >/dev/null 2>&1; then
  builder=buildx
else
  builder=docker-build
fi
say "builder: $builder"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'FROM %s\nRUN --mount=type=cache,target=/root/.npm,sharing=locked true\n' "$base_image" >"$work/Dockerfile"
say "checking a BuildKit build with a cache mount FROM $base_image"
if [ "$builder" = buildx ]; then
  set -- docker buildx build --load
else
  set -- env DOCKER_BUILDKIT=1 docker build
fi
if "$@" --progress=plain --network=host --tag workhub-buildkit-check:latest "$work" >"$work/log" 2>&1; then
  buildkit=true
  docker image rm workhub-buildkit-check:latest >/dev/null 2>&1 || true
else
  buildkit=false
  say "BuildKit check failed:"
  tail -n 20 "$work/log" >&2
fi

cpus=$(getconf _NPROCESSORS_ONLN)
memory_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
swap_mb=$(awk '/^SwapTotal:/ { print int($2 / 1024) }' /proc/meminfo)
docker_root=$(docker info --format '{{.DockerRootDir}}')
disk_free_mb=$(df -Pm "$docker_root" | awk 'NR == 2 { print $4 }')
say "cpus $cpus, memory ${memory_mb} MB, swap ${swap_mb} MB, free disk ${disk_free_mb} MB under $docker_root"

printf '{"docker_version": "%s", "builder": "%s", "buildkit": %s, "cpus": %s, "memory_mb": %s, "swap_mb": %s, "disk_free_mb": %s}\n' \
  "$docker_version" "$builder" "$buildkit" "$cpus" "$memory_mb" "$swap_mb" "$disk_free_mb"
"""


def host_facts_script(base_image: str) -> str:
    """Report the Docker version, whether BuildKit builds work, CPUs, memory and free disk."""
    return script({"base_image": base_image}, _HOST_FACTS)
