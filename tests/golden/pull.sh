set -eu
hub=wbsaleshub
stack=staging
image=wbsaleshub:staging-0123456789ab
build_id=0123456789ab
remote=127.0.0.1:5000/workhub/wbsaleshub:staging-0123456789ab
repository=127.0.0.1:5000/workhub/wbsaleshub
server=127.0.0.1:5000
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

say() { printf 'pull: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
umask 077
mkdir -p "$HOME/.workhub"
chmod 700 "$HOME/.workhub"
state="$HOME/.workhub"
now_ms() { date +%s%3N; }
digest_of() {
  docker image inspect --format '{{join .RepoDigests " "}}' "$1" | tr ' ' '\n' | grep -F "$repository@" | head -n 1
}
result() {
  printf '{"image": "%s", "pulled_from": "%s", "digest": "%s", "attempts": %s}\n' "$image" "$remote" "$1" "$2"
}
record() {
  printf '{"hub": "%s", "stack": "%s", "hash": "%s", "image": "%s", "start_ms": %s, "end_ms": %s, "result": "%s", "attempts": %s, "packages_added": 0, "log": "", "pulled_from": "%s"}\n' \
    "$hub" "$stack" "$build_id" "$image" "$1" "$2" "$3" "$4" "$remote" >>"$state/builds.jsonl"
}
if docker image inspect "$image" >/dev/null 2>&1; then
  say "$image is already on the host; nothing to pull"
  result "$(digest_of "$image")" 0
  exit 0
fi
registry_login fail "$username" "$server"
log=$(mktemp)
scratch=$log
start=$(now_ms)
attempt=0
code=1
while [ "$attempt" -lt "$max_attempts" ]; do
  attempt=$((attempt + 1))
  say "attempt $attempt of $max_attempts: pulling $remote"
  timeout --kill-after=30 "$attempt_timeout" docker pull "$remote" 2>&1 | tee "$log" >&2
  code=${PIPESTATUS[0]}
  [ "$code" -eq 0 ] && break
  if grep -qiE 'manifest unknown|not found|unauthorized|denied|no basic auth' "$log"; then
    say "the registry does not have $remote (or refuses it); not trying again"
    break
  fi
  pause_after say "$attempt" "$code"
done
rm -f "$log"
if [ "$code" -ne 0 ]; then
  record "$start" "$(now_ms)" failed "$attempt"
  say "FAILED: could not pull $remote after $attempt attempt(s); was it pushed? (the same up pushes it before the host pulls)"
  exit 1
fi
want=$(docker version --format '{{.Server.Os}}/{{.Server.Arch}}')
got=$(docker image inspect --format '{{.Os}}/{{.Architecture}}' "$remote")
if [ "$got" != "$want" ]; then
  docker image rm "$remote" >/dev/null 2>&1 || true
  record "$start" "$(now_ms)" failed "$attempt"
  say "FAILED: $remote is built for $got, but this host runs $want; set workhub:registry.platform to $want"
  exit 1
fi
# The digest names the pulled content for good; it goes with the registry's tag, so read it first.
digest=$(digest_of "$remote")
docker tag "$remote" "$image"
docker image rm "$remote" >/dev/null
record "$start" "$(now_ms)" succeeded "$attempt"
say "$image is $digest ($got), pulled in $attempt attempt(s)"
result "$digest" "$attempt"
