set -eu
hub=wbsaleshub
stack=staging
image=wbsaleshub:staging-0123456789ab
build_id=0123456789ab
context_dir=.workhub/contexts/staging/wbsaleshub
stream_mark=@@workhub-stream@@
say() { printf 'build: %s\n' "$*" >&2; }
umask 077
mkdir -p "$HOME/.workhub"
chmod 700 "$HOME/.workhub"
state="$HOME/.workhub"
dir="$state/builds/$hub-$stack-$build_id"
mkdir -p "$dir"
result() {
  printf '{"image": "%s", "log": "%s", "attempts": %s}\n' "$image" "$dir/log" "$(cat "$dir/attempts" 2>/dev/null || echo 0)"
}
running() { [ -s "$dir/pid" ] && [ ! -e "$dir/status" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

if [ "$(cat "$dir/status" 2>/dev/null)" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
  say "adopting the finished build of $image (log: $dir/log)"
  result
  exit 0
fi
if [ ! -e "$dir/status" ] && ! running && docker image inspect "$image" >/dev/null 2>&1; then
  say "$image is already on the host; nothing to build"
  result
  exit 0
fi
if running; then
  say "attaching to the build of $image already running (pid $(cat "$dir/pid"))"
else
  if [ "$(cat "$dir/status" 2>/dev/null)" = 0 ]; then
    # Its build records stay after a destroy or a prune; its image does not.
    say "$image was built before (log: $dir/log) but is no longer on the host (a destroy or prune removed it); building it again"
  elif [ -e "$dir/status" ]; then
    say "the last build of $image failed (status $(cat "$dir/status")); building it again"
  fi
  rm -rf "$dir/context" "$dir/status" "$dir"/attempt-*.log
  : >"$dir/log"
  # A copy of the uploaded context: the next upload cannot change files under a running build.
  cp -a "$HOME/$context_dir" "$dir/context"
  cat >"$dir/run.sh" <<'WORKHUB_RUNNER_END'
set -eu
hub=wbsaleshub
stack=staging
image=wbsaleshub:staging-0123456789ab
build_id=0123456789ab
dockerfile=Dockerfile
build_network=default
progress=plain
max_attempts=5
attempt_timeout=1800
retry_backoff=10
transient_pattern='ECONNRESET|ETIMEDOUT|ESOCKETTIMEDOUT|EAI_AGAIN|ECONNREFUSED|EPIPE|socket hang up|network (error|request)|npm (error|ERR!) network|EINTEGRITY|TAR_BAD_ARCHIVE|TAR_ABORT|unexpected end of (file|data)|ERR_SOCKET|premature close|code E5[0-9][0-9]|50[0-9] (Internal|Bad Gateway|Service Unavailable|Gateway Timeout)|no such host|server misbehaving|i/o timeout|temporary failure (in name resolution|resolving)|ENOTFOUND|could not resolve (host|'"'"')|unable to resolve host'
not_network='not from the network: not trying again'
# shellcheck disable=SC2016  # a config value, taken literally
build_args=(--build-arg NODE_OPTIONS=--max-old-space-size=4096 --build-arg NPM_CONFIG_FETCH_RETRIES=5 --build-arg NPM_CONFIG_FETCH_TIMEOUT=5000 --build-arg NPM_CONFIG_FETCH_RETRY_MINTIMEOUT=1000 --build-arg NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT=4000 --build-arg NPM_CONFIG_PREFER_OFFLINE=true --build-arg 'WORKHUB_RETRY=wr_tries=3; wr_max=10; wr_pause=10; wr_pattern='"'"'ECONNRESET|ETIMEDOUT|ESOCKETTIMEDOUT|EAI_AGAIN|ECONNREFUSED|EPIPE|socket hang up|network (error|request)|npm (error|ERR!) network|EINTEGRITY|TAR_BAD_ARCHIVE|TAR_ABORT|unexpected end of (file|data)|ERR_SOCKET|premature close|code E5[0-9][0-9]|50[0-9] (Internal|Bad Gateway|Service Unavailable|Gateway Timeout)|no such host|server misbehaving|i/o timeout|temporary failure (in name resolution|resolving)|ENOTFOUND|could not resolve (host|'"'"'"'"'"'"'"'"')|unable to resolve host'"'"'; wr_fill=true; wr_stop_js='"'"'const wrFs = require("fs"); if (/npm-cli\.js$/.test(wrFs.realpathSync(process.argv[1] || "/")) && process.argv.slice(2).some(word => ["ci", "clean-install", "ic", "install-clean"].includes(word))) { process.env.NODE_OPTIONS = process.env.WR_NODE_OPTIONS || ""; const http = require("http"), emit = http.IncomingMessage.prototype.emit; http.IncomingMessage.prototype.emit = function (name, ...rest) { const req = this.req; if ((name === "aborted" || (name === "error" && rest[0] && rest[0].code === "ECONNRESET")) && req && req.method === "GET" && /\/-\/[^/?]+\.tgz(\?|$)/.test(req.path || "")) { wrFs.writeSync(2, `workhub: the download of ${req.path} was cut short (ECONNRESET); npm does not fetch a cut download again, so this try stops here\n`); process.removeAllListeners("exit"); process.exit(1); } return emit.call(this, name, ...rest); }; }'"'"'; wr_fill_js='"'"'const fs = require("fs"), path = require("path"); const [npmBin, tries, ...args] = process.argv.slice(1); const npmRoot = path.dirname(path.dirname(fs.realpathSync(npmBin))); const need = name => require(path.join(npmRoot, "node_modules", name)); (async () => { process.argv = [process.execPath, path.join(npmRoot, "bin", "npm-cli.js"), ...args]; const Npm = require(path.join(npmRoot, "lib", "npm.js")); const npm = new Npm(); await npm.load(); const opts = npm.flatOptions, pacote = need("pacote"), checks = need("npm-install-checks"); const lock = ["npm-shrinkwrap.json", "package-lock.json"].map(f => path.join(npm.localPrefix, f)).find(f => fs.existsSync(f)); const omit = new Set(opts.omit || []); const fits = p => { try { checks.checkPlatform({ os: p.os, cpu: p.cpu, libc: p.libc }); return true; } catch { return false; } }; const wanted = Object.entries(JSON.parse(fs.readFileSync(lock, "utf8")).packages || {}).filter(([at, p]) => at && !p.link && !p.inBundle && p.integrity && p.version && !["dev", "optional", "peer"].some(kind => p[kind] && omit.has(kind)) && fits(p) && (!p.resolved || /^https?:\/\/\S*\/-\/\S*\.tgz$/.test(p.resolved))); const all = wanted.map(([at, p]) => [p.name || at.slice(at.lastIndexOf("node_modules/") + 13), p]); let again = 0, failed = 0, next = 0; const fetchOne = async ([name, p]) => { for (let n = 1; ; n++) { try { await pacote.tarball.stream(p.resolved ? `${name}@${p.resolved}` : `${name}@${p.version}`, s => { s.resume(); return s.promise(); }, { ...opts, integrity: p.integrity, resolved: p.resolved }); return; } catch (e) { if (n >= Number(tries)) { failed++; console.log(`workhub: could not fetch ${name}@${p.version} (${e.code || e.message}) in ${n} tries`); return; } again++; } } }; await Promise.all(Array.from({ length: 16 }, async () => { while (next < all.length) { await fetchOne(all[next++]); } })); console.log(`workhub: ${all.length - failed} of the ${all.length} packages of ${path.relative(process.cwd(), lock)} are in the npm cache (${again} downloads tried again)`); process.exit(failed ? 1 : 0); })().catch(e => { console.log(`workhub: could not fill the npm cache (${e.message}); the next try fetches what is missing`); process.exit(2); });'"'"'; wr_count() { find "${NPM_CONFIG_CACHE:-${npm_config_cache:-$HOME/.npm}}/_cacache/content-v2" -type f 2>/dev/null | wc -l; }; wr_run() { if [ "$wr_filling" = true ]; then WR_NODE_OPTIONS="$wr_node_options" NODE_OPTIONS="${wr_node_options:+$wr_node_options }--require=$wr_dir/stop.js" "$@"; else "$@"; fi; }; workhub_retry() { wr_dir=$(mktemp -d); wr_n=0; wr_spent=0; wr_have=$(wr_count); wr_node_options=${NODE_OPTIONS:-}; wr_filling=false; if [ "$wr_fill" = true ] && [ "$1" = npm ] && command -v node >/dev/null 2>&1; then wr_filling=true; printf '"'"'%s\n'"'"' "$wr_stop_js" >"$wr_dir/stop.js"; fi; while :; do wr_n=$((wr_n + 1)); { wr_run "$@"; echo $? >"$wr_dir/rc"; } 2>&1 | tee "$wr_dir/out"; wr_code=$(cat "$wr_dir/rc"); if [ "$wr_code" = 0 ]; then rm -rf "$wr_dir"; return 0; fi; if ! grep -qiE "$wr_pattern" "$wr_dir/out"; then echo "workhub: $* failed (exit code $wr_code), not from the network: not trying again"; rm -rf "$wr_dir"; return "$wr_code"; fi; if [ "$wr_filling" = true ] && [ "$wr_n" -lt "$wr_max" ]; then wr_cmd=$1; shift; node -e "$wr_fill_js" "$(command -v npm)" "$wr_max" "$@" 2>&1; set -- "$wr_cmd" "$@"; NPM_CONFIG_PREFER_OFFLINE=true; export NPM_CONFIG_PREFER_OFFLINE; fi; wr_now=$(wr_count); if [ "$wr_now" -gt "$wr_have" ]; then wr_why="it stored $((wr_now - wr_have)) new files in the npm cache, so it is free"; wr_wait=0; else wr_spent=$((wr_spent + 1)); wr_why="nothing new fetched ($wr_spent of $wr_tries such tries)"; wr_wait=$((wr_pause * (wr_spent - 1))); fi; wr_have=$wr_now; if [ "$wr_spent" -ge "$wr_tries" ] || [ "$wr_n" -ge "$wr_max" ]; then echo "workhub: try $wr_n of $* failed from the network; $wr_why; giving up after $wr_n tries"; rm -rf "$wr_dir"; return "$wr_code"; fi; echo "workhub: try $wr_n of $* failed from the network; $wr_why; trying again in $wr_wait s"; if [ "$wr_wait" -gt 0 ]; then sleep "$wr_wait"; fi; done; }; workhub_retry "$@"' --build-arg NPM_CONFIG_REGISTRY=http://127.0.0.1:4873/ --build-arg 'APP_FLAVOUR=it'"'"'s $(odd)')
retry_secret=workhub-retry
retry_program=''
state="$HOME/.workhub"
dir="$state/builds/$hub-$stack-$build_id"

if docker buildx version >/dev/null 2>&1; then
  builder=(docker buildx build --load)
else
  builder=(env DOCKER_BUILDKIT=1 docker build)
fi

pause_after() {
  [ "$2" -lt "$max_attempts" ] || return 0
  "$1" "attempt $2 failed from the network (exit code $3); trying again in $((retry_backoff * $2)) s"
  sleep $((retry_backoff * $2))
}

exec >>"$dir/log" 2>&1
echo "$$" >"$dir/pid"
# The install retry, as the BuildKit secret the Dockerfile's installs mount (when they all do).
secret_args=()
if [ -n "$retry_program" ]; then
  printf '%s' "$retry_program" >"$dir/install-retry"
  secret_args=(--secret "id=$retry_secret,src=$dir/install-retry")
fi
note() { printf 'build: %s\n' "$*"; }
now_ms() { date +%s%3N; }
# What counts as a passing network fault ($transient_pattern: components.render.host.build.TRANSIENT_PATTERN),
# unless the install's own retry found its last try failed from something else. Anything else (a
# Dockerfile error, a failing compile) fails at once.
transient() {
  grep -qiE "$transient_pattern" "$1" && ! grep -qF "$not_network" "$1"
}
# The first lines of a try's log that name an error (the compiler's, npm's, the Dockerfile's; not
# BuildKit's echo of the exit code, nor a stack trace, nor a step's command line that holds the
# install retry's text, whose error words are its pattern), said again last, where a failure's
# message takes the last lines from.
first_errors() {
  local found
  found=$(grep -iE 'error|err!|failed to solve' "$1" \
    | grep -vE 'executor failed running|^#[0-9]+ ERROR: |[[:space:]]at [^ ]+ \(|workhub_retry' \
    | head -n 5) || true
  [ -z "$found" ] || { note "its first error lines:"; printf '%s\n' "$found" | sed 's/^/  /'; }
}
record() {
  printf '{"hub": "%s", "stack": "%s", "hash": "%s", "image": "%s", "start_ms": %s, "end_ms": %s, "result": "%s", "attempts": %s, "packages_added": %s, "log": "%s"}\n' \
    "$hub" "$stack" "$build_id" "$image" "$1" "$2" "$3" "$4" "$5" "$dir/log" >>"$state/builds.jsonl"
}

# One build at a time on this host, whatever stack or `pulumi up` asks for it.
exec 9>>"$state/build.lock"
holder() { cat "$state/build.lock.holder" 2>/dev/null || echo 'an unknown build'; }
if ! flock -n 9; then
  note "waiting for the build lock, held by $(holder)"
  while ! flock -w 30 9; do
    note "still waiting for the build lock, held by $(holder)"
  done
fi
printf '%s of stack %s (pid %s) since %s\n' "$hub" "$stack" "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$state/build.lock.holder"

start=$(now_ms)
attempt=0
code=1
while [ "$attempt" -lt "$max_attempts" ]; do
  attempt=$((attempt + 1))
  note "attempt $attempt of $max_attempts: building $image with ${builder[*]}"
  # A try that hangs (npm has been seen to stall for good) must not hold the build lock forever. Its
  # RUN steps reach what $build_network gives them: by default Docker's bridge network, which has no
  # way to the services that listen on the host's loopback.
  timeout --kill-after=30 "$attempt_timeout" "${builder[@]}" --progress="$progress" --network="$build_network" \
    --file "$dir/context/$dockerfile" --tag "$image" "${build_args[@]}" ${secret_args[@]+"${secret_args[@]}"} \
    "$dir/context" 2>&1 | tee "$dir/attempt-$attempt.log"
  code=${PIPESTATUS[0]}
  [ "$code" -eq 0 ] && break
  if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then
    note "attempt $attempt ran past $attempt_timeout s and was stopped"
  elif ! transient "$dir/attempt-$attempt.log"; then
    note "attempt $attempt failed (exit code $code), and not from the network: not trying again"
    first_errors "$dir/attempt-$attempt.log"
    break
  fi
  pause_after note "$attempt" "$code"
done
end=$(now_ms)
added=$(grep -hoE 'added [0-9]+ packages' "$dir"/attempt-*.log 2>/dev/null | awk '{ n += $2 } END { print n + 0 }')
if [ "$code" -eq 0 ]; then result=succeeded; else result=failed; fi
record "$start" "$end" "$result" "$attempt" "$added"
note "$result after $attempt attempt(s) in $(( (end - start) / 1000 )) s"
: >"$state/build.lock.holder"
printf '%s\n' "$attempt" >"$dir/attempts"
printf '%s\n' "$code" >"$dir/status.tmp"
mv "$dir/status.tmp" "$dir/status"
WORKHUB_RUNNER_END
  setsid nohup bash "$dir/run.sh" </dev/null >/dev/null 2>&1 &
  printf '%s\n' "$!" >"$dir/pid"
  say "started the build of $image (pid $!, log: $dir/log)"
fi
# The log streams from its start, or (after the connection dropped and the provider connected
# again) from the line it had got to: it says which in stream_from, counting from the mark.
printf '%s\n' "$stream_mark" >&2
tail -n +"${stream_from:-1}" -F --pid="$(cat "$dir/pid")" "$dir/log" >&2 2>/dev/null || true
status=$(cat "$dir/status" 2>/dev/null || echo unknown)
if [ "$status" != 0 ]; then
  say "FAILED: the build of $image ended with status $status; full log on the host: $dir/log"
  exit 1
fi
result
