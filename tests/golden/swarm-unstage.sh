set -eu
staged=(workhub-staging-wbsaleshub-data.restore-20261207T110000Z)
for volume in "${staged[@]}"; do
  docker volume rm "$volume" >/dev/null 2>&1 && printf 'restore: removed %s\n' "$volume" >&2
done
true
