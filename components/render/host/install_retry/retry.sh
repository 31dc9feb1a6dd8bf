# workhub's install retry: `npm ci` tried again inside its own cache-mounted RUN step when it
# fails from the network. POSIX sh (dash, busybox ash: what the base images have).
#
# How it is run: a hub Dockerfile writes its install as
#   ARG WORKHUB_RETRY
#   RUN --mount=type=cache,target=/root/.npm,sharing=locked \
#       --mount=type=secret,id=workhub-retry,mode=0444 eval "$WORKHUB_RETRY" npm ci
# A build on the host (one host or a Swarm build node) gives this file, after its settings, as the
# BuildKit secret workhub-retry (a file mounted for that one RUN: not in the image, not in the
# build cache's key, not in the log), and WORKHUB_RETRY=`sh /run/secrets/workhub-retry`, so the
# step runs `sh /run/secrets/workhub-retry npm ci` and its log shows that line. Where no secret can
# be given (a registry-mode build through pulumi-docker's Image, which takes none; a Dockerfile
# without the secret mount) WORKHUB_RETRY is this whole file made into one line of shell instead,
# and `eval` adds the install's words to the call at the end (components.render.host.build.install_retry).
# Without the build arg (a plain `docker build`) the same line is a plain `npm ci`.
#
# The settings (workhub:build.*), set before this file:
#   wr_tries    installTries: tries that fail from the network without fetching anything new
#   wr_max      installMaxTries: tries in all
#   wr_pause    retryBackoffSeconds: the pause grows by this much after each try without progress
#   wr_pattern  components.render.host.build.TRANSIENT_PATTERN: what counts as a network fault
#   wr_fill     installFillCache: true or false
#   wr_stop_js, wr_fill_js  the two node scripts beside this file (only with wr_fill=true)
#
# Why npm's own mechanisms are not enough (docs/benchmarks.md; the findings of 2026-11-29):
# npm already tries again a request that fails before its response headers (fetch-retries,
# fetch-timeout and fetch-retry-min/maxtimeout come as build args, NPM_CONFIG_*), and with
# prefer-offline a warm cache mount serves every package without a request. What npm never tries
# again is a tarball whose body is cut short (pacote's isRetriableError and make-fetch-happen's
# retry end once the headers are in), and a failing `npm ci` first extracts everything else, then
# removes it all: one cut tarball fails the whole install, whatever the fetch-* settings. So:
#
# - a try that fails from the network runs again at once in the same step, with what the cache
#   mount got so far (prefer-offline fetches only what is missing), instead of failing the build;
# - with wr_fill (and an npm command where node runs), a try stops at its first cut download
#   (stop-at-cut.js, preloaded into npm's own process: npm has no option for it), and after a try
#   that failed from the network the lockfile's missing packages are fetched into the cache one by
#   one (fill-cache.js, with npm's own modules and config), so the next try only extracts;
# - a try (and the fill after it) that stored new packages in the npm cache (its content-v2 count
#   grew) is free; wr_tries tries without any cost the budget (the first of them is tried again at
#   once, the next after a growing pause); wr_max ends it in any case;
# - any other failure (a lockfile out of sync, a failing script) ends it at once, and says so with
#   the words the build runner looks for (NOT_NETWORK) so it does not try the build again.
#
# It is made into one line (a build arg is one line): comment lines and blank lines are dropped and
# the others joined with a space, so every command ends with `;` (or a word that a newline need not
# follow: `then`, `do`, `else`, `{`) and no line has a comment after its code.

wr_count() { find "${NPM_CONFIG_CACHE:-${npm_config_cache:-$HOME/.npm}}/_cacache/content-v2" -type f 2>/dev/null | wc -l; };

# Runs one try of the command, with stop-at-cut.js preloaded when the fill is on.
wr_run() {
  if [ "$wr_filling" = true ]; then
    WR_NODE_OPTIONS="$wr_node_options" NODE_OPTIONS="${wr_node_options:+$wr_node_options }--require=$wr_dir/stop.js" "$@";
  else "$@"; fi;
};

workhub_retry() {
  wr_dir=$(mktemp -d); wr_n=0; wr_spent=0; wr_have=$(wr_count); wr_node_options=${NODE_OPTIONS:-}; wr_filling=false;
  if [ "$wr_fill" = true ] && [ "$1" = npm ] && command -v node >/dev/null 2>&1; then
    wr_filling=true; printf '%s\n' "$wr_stop_js" >"$wr_dir/stop.js";
  fi;
  while :; do
    wr_n=$((wr_n + 1));
    { wr_run "$@"; echo $? >"$wr_dir/rc"; } 2>&1 | tee "$wr_dir/out";
    wr_code=$(cat "$wr_dir/rc");
    if [ "$wr_code" = 0 ]; then rm -rf "$wr_dir"; return 0; fi;
    if ! grep -qiE "$wr_pattern" "$wr_dir/out"; then
      echo "workhub: $* failed (exit code $wr_code), @@NOT_NETWORK@@"; rm -rf "$wr_dir"; return "$wr_code";
    fi;
    # Fill the cache with what the lockfile needs, then prefer the cache; not after the last try.
    if [ "$wr_filling" = true ] && [ "$wr_n" -lt "$wr_max" ]; then
      wr_cmd=$1; shift; node -e "$wr_fill_js" "$(command -v npm)" "$wr_max" "$@" 2>&1; set -- "$wr_cmd" "$@";
      NPM_CONFIG_PREFER_OFFLINE=true; export NPM_CONFIG_PREFER_OFFLINE;
    fi;
    wr_now=$(wr_count);
    if [ "$wr_now" -gt "$wr_have" ]; then
      wr_why="it stored $((wr_now - wr_have)) new files in the npm cache, so it is free"; wr_wait=0;
    else
      wr_spent=$((wr_spent + 1)); wr_why="nothing new fetched ($wr_spent of $wr_tries such tries)"; wr_wait=$((wr_pause * (wr_spent - 1)));
    fi;
    wr_have=$wr_now;
    if [ "$wr_spent" -ge "$wr_tries" ] || [ "$wr_n" -ge "$wr_max" ]; then
      echo "workhub: try $wr_n of $* failed from the network; $wr_why; giving up after $wr_n tries"; rm -rf "$wr_dir"; return "$wr_code";
    fi;
    echo "workhub: try $wr_n of $* failed from the network; $wr_why; trying again in $wr_wait s";
    if [ "$wr_wait" -gt 0 ]; then sleep "$wr_wait"; fi;
  done;
};

workhub_retry "$@"
