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

say() { printf 'push: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "FAILED: $image is not on the build node; its build did not leave it there (run up again to build it)"
  exit 1
fi
registry_login fail "$username" "$server"
docker tag "$image" "$remote"
attempt=0
code=1
while [ "$attempt" -lt "$max_attempts" ]; do
  attempt=$((attempt + 1))
  say "attempt $attempt of $max_attempts: pushing $remote"
  code=0
  timeout --kill-after=30 "$attempt_timeout" docker push "$remote" >"$login_dir/push.log" 2>&1 || code=$?
  [ "$code" -eq 0 ] && break
  tail -n 5 "$login_dir/push.log" >&2
  grep -qiE 'unauthorized|denied|no basic auth' "$login_dir/push.log" && break
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
