set -eu
step=backup
node=node2
hub=wbsaleshub
volume=workhub-staging-wbsaleshub-data
helper_image=busybox:1.37
registry_server=10.0.0.1:5000
registry_user=''
login_dir="" scratch=""
trap 'rm -rf ${login_dir:+"$login_dir"} ${scratch:+"$scratch"}' EXIT
registry_login() {
  login_dir=$(mktemp -d)
  export DOCKER_CONFIG="$login_dir"
  [ -n "$2" ] || return 0
  printf '%s' "${registry_password:-}" | docker login --username "$2" --password-stdin "$3" \
    >/dev/null 2>"$login_dir/login.log" && return 0
  cat "$login_dir/login.log" >&2
  "$1" "$3 refused the login of $2; check workhub:registry.username and workhub:registryPassword"
}

fail() { printf '%s: FAILED: %s\n' "$step" "$*" >&2; exit 1; }
# The helper image, pulled (quietly: stdout may be the archive) with a login that is gone at exit.
if ! docker image inspect "$helper_image" >/dev/null 2>&1; then
  registry_login fail "$registry_user" "$registry_server"
  docker pull --quiet "$helper_image" >/dev/null 2>&1 || fail "$node cannot pull $helper_image"
fi

docker volume inspect "$volume" >/dev/null 2>&1 \
  || fail "volume $volume is not on $node; the hub's data is on the node labelled data: [$hub]"
# A gzipped tar of the volume's files on stdout, read through a throwaway container (read-only),
# as uid 0 with DAC_READ_SEARCH alone: it reads every file, whatever its owner, and changes nothing.
docker run --rm --network none --user 0 --cap-drop ALL --cap-add DAC_READ_SEARCH --security-opt no-new-privileges \
  -v "$volume:/data:ro" --entrypoint tar "$helper_image" -czf - -C /data .
