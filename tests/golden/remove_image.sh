set -eu
image=wbsaleshub:staging-0123456789ab
docker image rm "$image" >/dev/null 2>&1 || true
