set -eu
image=wbsaleshub:staging-0123456789ab
drift_mark='drift: '
docker image inspect "$image" >/dev/null 2>&1 || printf '%sthe image %s is not on the host\n' "$drift_mark" "$image"
