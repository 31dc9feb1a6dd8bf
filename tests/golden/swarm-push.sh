set -eu
image=wbhubmanager:staging-0123456789ab
remote=10.0.0.1:5000/workhub/wbhubmanager:staging-0123456789ab
repository=10.0.0.1:5000/workhub/wbhubmanager
server=10.0.0.1:5000
username=ci
max_attempts=5
attempt_timeout=1800
retry_backoff=10
pause_after() {
  [ "$2" -lt "$max_attempts" ] || return 0
  "$1" "attempt $2 failed from the network (exit code $3); trying again in $((retry_backoff * $2)) s"
  sleep $((retry_backoff * $2))
}

say() { printf 'push: %s\n' "$*" >&2; }
if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "FAILED: $image is not on the build node; its build did not leave it there (run up again to build it)"
  exit 1
fi
# A Docker config of this push's own: the login it holds is gone when the push ends.
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf "$DOCKER_CONFIG"' EXIT
if [ -n "$username" ] && ! printf '%s' "${registry_password:-}" | docker login --username "$username" \
  --password-stdin "$server" >/dev/null 2>"$DOCKER_CONFIG/login.log"; then
  cat "$DOCKER_CONFIG/login.log" >&2
  say "FAILED: $server refused the login of $username; check workhub:registry.username and workhub:registryPassword"
  exit 1
fi
docker tag "$image" "$remote"
attempt=0
code=1
while [ "$attempt" -lt "$max_attempts" ]; do
  attempt=$((attempt + 1))
  say "attempt $attempt of $max_attempts: pushing $remote"
  code=0
  timeout --kill-after=30 "$attempt_timeout" docker push "$remote" >"$DOCKER_CONFIG/push.log" 2>&1 || code=$?
  [ "$code" -eq 0 ] && break
  tail -n 5 "$DOCKER_CONFIG/push.log" >&2
  grep -qiE 'unauthorized|denied|no basic auth' "$DOCKER_CONFIG/push.log" && break
  pause_after say "$attempt" "$code"
done
digest=$(docker image inspect --format '{{join .RepoDigests " "}}' "$remote" | tr ' ' '\n' | grep -F "$repository@" | head -n 1)
# Only the registry's tag goes; the image stays on the build node as $image.
docker image rm "$remote" >/dev/null 2>&1 || true
if [ "$code" -ne 0 ]; then
  say "FAILED: could not push $remote to $server after $attempt attempt(s)"
  exit 1
fi
say "pushed $remote ($digest) for the Swarm's nodes to pull"
printf '{"image": "%s", "pushed": "%s", "digest": "%s"}\n' "$image" "$remote" "$digest"
