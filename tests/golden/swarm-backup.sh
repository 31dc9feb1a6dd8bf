set -eu
step=backup
node=node2
hub=wbsaleshub
stack=staging
namespace=workhub-staging
service=workhub-staging_wbsaleshub
volume=workhub-staging-wbsaleshub-data
volume_key=data
helper_image=haproxy:2.6
registry_server=10.0.0.1:5000
registry_user=''
fail() { printf '%s: FAILED: %s\n' "$step" "$*" >&2; exit 1; }
login_dir="" archive=""
trap 'rm -rf ${login_dir:+"$login_dir"} ${archive:+"$archive"}' EXIT
# The helper image, pulled (quietly: stdout may be the archive) with a login that is gone at exit.
if ! docker image inspect "$helper_image" >/dev/null 2>&1; then
  login_dir=$(mktemp -d)
  export DOCKER_CONFIG="$login_dir"
  if [ -n "$registry_user" ]; then
    printf '%s' "${registry_password:-}" | docker login --username "$registry_user" --password-stdin \
      "$registry_server" >/dev/null 2>&1 || fail "the registry $registry_server refused the login of $registry_user"
  fi
  docker pull --quiet "$helper_image" >/dev/null 2>&1 || fail "$node cannot pull $helper_image"
fi

docker volume inspect "$volume" >/dev/null 2>&1 \
  || fail "volume $volume is not on $node; the hub's data is on the node labelled data: [$hub]"
# A gzipped tar of the volume's files on stdout, read through a throwaway container (read-only).
docker run --rm --user 0 --network none -v "$volume:/data:ro" --entrypoint tar "$helper_image" -czf - -C /data .
