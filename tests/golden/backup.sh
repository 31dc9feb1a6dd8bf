set -eu
volume=workhub-staging-wbsaleshub-data
helper_image=haproxy:2.6
if ! docker volume inspect "$volume" >/dev/null 2>&1; then
  printf 'backup: FAILED: volume %s does not exist on this host\n' "$volume" >&2
  exit 1
fi
# A gzipped tar of the volume's files on stdout, read through a throwaway container (read-only).
docker run --rm --user 0 --network none -v "$volume:/data:ro" --entrypoint tar "$helper_image" -czf - -C /data .
