set -eu
base_image=node:20-bookworm-slim
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

say() { printf 'host-facts: %s\n' "$*" >&2; }
docker_version=$(docker version --format '{{.Server.Version}}')
say "docker engine $docker_version, builder: ${builder[*]}"
say "checking a BuildKit build with a cache mount FROM $base_image"
if buildkit_works; then buildkit=true; else buildkit=false; say "BuildKit check failed (log above)"; fi
case "${builder[0]}" in docker) builder_name=buildx ;; *) builder_name=docker-build ;; esac
say "cpus $cpus, memory ${memory_mb} MB, swap ${swap_mb} MB, free disk ${disk_free_mb} MB under $docker_root"
printf '{"docker_version": "%s", "builder": "%s", "buildkit": %s, "cpus": %s, "memory_mb": %s, "swap_mb": %s, "disk_free_mb": %s}\n' \
  "$docker_version" "$builder_name" "$buildkit" "$cpus" "$memory_mb" "$swap_mb" "$disk_free_mb"
