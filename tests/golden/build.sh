set -eu
hub=wbsaleshub
stack=staging
image=wbsaleshub:staging-0123456789ab
content_hash=0123456789ab
context_dir=.workhub/contexts/staging/wbsaleshub
dockerfile=Dockerfile
progress=plain
build_args=(--build-arg NODE_OPTIONS=--max-old-space-size=4096 --build-arg NPM_CONFIG_FETCH_RETRIES=5 --build-arg NPM_CONFIG_FETCH_TIMEOUT=30000 --build-arg NPM_CONFIG_FETCH_RETRY_MINTIMEOUT=2000 --build-arg NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT=15000 --build-arg NPM_CONFIG_PREFER_OFFLINE=true --build-arg NPM_CONFIG_REGISTRY=http://127.0.0.1:4873/ --build-arg 'APP_FLAVOUR=it'"'"'s $(odd)')
if docker buildx version >/dev/null 2>&1; then
  builder=(docker buildx build --load)
else
  builder=(env DOCKER_BUILDKIT=1 docker build)
fi

say() { printf 'build: %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
state="$HOME/.workhub"
context="$HOME/$context_dir"
log="$state/logs/$hub-$stack-$content_hash.log"
mkdir -p "$state/logs"
record() {
  printf '{"hub": "%s", "stack": "%s", "hash": "%s", "image": "%s", "start_ms": %s, "end_ms": %s, "result": "%s", "log": "%s"}\n' \
    "$hub" "$stack" "$content_hash" "$image" "$1" "$2" "$3" "$log" >>"$state/builds.jsonl"
}
if docker image inspect "$image" >/dev/null 2>&1; then
  now=$(now_ms)
  record "$now" "$now" reused
  say "$image is already on the host; nothing to build"
else
  say "building $image from $context/$dockerfile with ${builder[*]}"
  start=$(now_ms)
  set +e
  "${builder[@]}" --progress="$progress" --network=host --file "$context/$dockerfile" --tag "$image" \
    "${build_args[@]}" "$context" 2>&1 | tee "$log" >&2
  status=${PIPESTATUS[0]}
  set -e
  end=$(now_ms)
  if [ "$status" -ne 0 ]; then
    record "$start" "$end" failed
    say "FAILED with exit code $status after $(( (end - start) / 1000 )) s; full log on the host: $log"
    exit "$status"
  fi
  record "$start" "$end" succeeded
  say "built $image in $(( (end - start) / 1000 )) s; log: $log"
fi
printf '{"image": "%s", "log": "%s"}\n' "$image" "$log"
