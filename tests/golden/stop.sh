set -eu
container=wbsaleshub-staging
docker rm -f "$container" >/dev/null 2>&1 || true
