set -eu
volume=workhub-staging-wbsaleshub-data
drift_mark='drift: '
docker volume inspect "$volume" >/dev/null 2>&1 || printf '%sthe volume %s is gone from the host\n' "$drift_mark" "$volume"
