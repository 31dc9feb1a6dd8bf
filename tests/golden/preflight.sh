set -eu
base_image=node:20-bookworm-slim
node_heap_mb=4096
min_free_disk_mb=2048
cache_keep_storage_mb=4096
builds_here=true
if docker buildx version >/dev/null 2>&1; then
  builder=(docker buildx build --load)
else
  builder=(env DOCKER_BUILDKIT=1 docker build)
fi

buildkit_works() {
  local work tag
  work=$(mktemp -d)
  # A tag of its own: the facts and the preflight may check at the same time.
  tag="workhub-buildkit-check:$(basename "$work" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9')"
  printf '# syntax=docker/dockerfile:1\nFROM %s\nRUN --mount=type=cache,target=/root/.npm,sharing=locked true\n' \
    "$base_image" >"$work/Dockerfile"
  # A label of its own too, so two checks never produce (and then remove) the same image. Its one RUN
  # step needs no network.
  if "${builder[@]}" --progress=plain --network=none --label "workhub.check=$tag" --tag "$tag" "$work" \
    >"$work/log" 2>&1; then
    docker image rm "$tag" >/dev/null 2>&1 || true
    rm -rf "$work"
    return 0
  fi
  tail -n 20 "$work/log" >&2
  rm -rf "$work"
  return 1
}

# shellcheck disable=SC2034  # read through ${!figure} below, whether or not the script shows it
cpus=$(getconf _NPROCESSORS_ONLN)
memory_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
swap_mb=$(awk '/^SwapTotal:/ { print int($2 / 1024) }' /proc/meminfo)
docker_root=$(docker info --format '{{.DockerRootDir}}')
disk_free_mb=$(df -Pm "$docker_root" | awk 'NR == 2 { print $4 }')
for figure in cpus memory_mb swap_mb disk_free_mb; do
  case "${!figure}" in
    '' | *[!0-9]*)
      printf 'FAILED: cannot read %s on this host (got "%s"); check /proc/meminfo, getconf and df -Pm %s\n' \
        "$figure" "${!figure}" "$docker_root" >&2
      exit 1 ;;
  esac
done

say() { printf 'preflight: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
if [ "$builds_here" = true ] && [ $((memory_mb + swap_mb)) -lt "$node_heap_mb" ]; then
  fail "workhub:build.nodeHeapMb is $node_heap_mb MB but the host has $memory_mb MB memory and $swap_mb MB swap; lower workhub:build.nodeHeapMb in Pulumi.yaml or add swap to the host"
fi
if [ "$disk_free_mb" -lt "$min_free_disk_mb" ]; then
  fail "only $disk_free_mb MB free under $docker_root, workhub:build.minFreeDiskMb asks for $min_free_disk_mb MB; free space on the host (docker image prune) or lower workhub:build.minFreeDiskMb"
fi
if [ "$builds_here" = false ]; then
  say "no hub builds on this host in this update (the stack has none, or they are pulled, promoted or pinned): the BuildKit check is skipped"
elif ! buildkit_works; then
  fail "a BuildKit build with a cache mount FROM $base_image (workhub:baseImage) does not work on this host (its log is above); install docker buildx, or a Docker engine with BuildKit, or set workhub:baseImage to an image the host has"
fi
# Collect old layers and uploaded contexts beyond the budget; the npm cache mounts
# (type exec.cachemount) are never collected here, so installs stay warm on a small disk.
for type in regular source.local; do
  docker builder prune --force --all --filter "type=$type" --keep-storage "${cache_keep_storage_mb}MB" >/dev/null 2>&1 \
    || say "could not collect old build cache of type $type"
done
if [ "$builds_here" = true ]; then
  say "ok: ${memory_mb} MB memory + ${swap_mb} MB swap hold a ${node_heap_mb} MB Node heap; ${disk_free_mb} MB free disk; BuildKit works"
else
  say "ok: ${disk_free_mb} MB free disk for the pulled images"
fi
# The free disk the check saw: the stack's outputs show it (the host's other facts are read once).
printf '{"disk_free_mb": %s}\n' "$disk_free_mb"
