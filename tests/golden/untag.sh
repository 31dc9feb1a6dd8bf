set -eu
image=wbsaleshub:production-0123456789ab
if [ "$(docker image inspect --format '{{len .RepoTags}}' "$image" 2>/dev/null || echo 0)" -gt 1 ]; then
  docker image rm "$image" >/dev/null 2>&1 || true
fi
