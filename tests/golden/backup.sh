set -eu
volume=workhub-staging-wbsaleshub-data
helper_image=haproxy:2.6
if ! docker volume inspect "$volume" >/dev/null 2>&1; then
  printf 'backup: FAILED: volume %s does not exist on this host\n' "$volume" >&2
  exit 1
fi
# A gzipped tar of the volume's files on stdout, read through a throwaway container (read-only),
# as uid 0 with one capability, DAC_READ_SEARCH: it reads every file and directory whatever its owner
# and mode (a volume not yet given to the hub's uid, a file the hub made 0600 under another uid),
# and can change nothing (no other capability, no new privileges, the volume read-only, no network).
docker run --rm --network none --user 0 --cap-drop ALL --cap-add DAC_READ_SEARCH --security-opt no-new-privileges \
  -v "$volume:/data:ro" --entrypoint tar "$helper_image" -czf - -C /data .
