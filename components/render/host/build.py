"""Pure builders of the scripts that run on the build host: typed config in, script text out.

Every script prints its progress to stderr (streamed to the Pulumi log) and at most one short
JSON line to stdout (kept in Pulumi state). Config values enter only through `shell.script`.
"""

from __future__ import annotations

from typing import Optional

from components.config.models import BuildSettings, Hub, SshKeepAlive
from components.constants import DRIFT_MARK, STREAM_MARK
from components.render.shell import assignments, script


# Where workhub keeps its files on the host, under the deploy user's home.
STATE_DIR = ".workhub"

# ~/.workhub is the deploy user's alone (0700), and what a script writes there (logs, build records,
# Compose and env files, locks) no other account may read (umask 077). Every script that writes
# there starts with this, so a host that another script reaches before the setup has it too.
PRIVATE_STATE = 'umask 077\nmkdir -p "$HOME/.workhub"\nchmod 700 "$HOME/.workhub"'

# Picks the BuildKit client: buildx where the host has it, else the classic client with BuildKit on.
_BUILDER = r"""
if docker buildx version >/dev/null 2>&1; then
  builder=(docker buildx build --load)
else
  builder=(env DOCKER_BUILDKIT=1 docker build)
fi
"""

# A build that uses the same features as the hub Dockerfiles: the syntax line and a cache mount.
_BUILDKIT_CHECK = r"""
buildkit_works() {
  local work tag
  work=$(mktemp -d)
  # A tag of its own: the facts and the preflight may check at the same time.
  tag="workhub-buildkit-check:$(basename "$work" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')"
  printf '# syntax=docker/dockerfile:1\nFROM %s\nRUN --mount=type=cache,target=/root/.npm,sharing=locked true\n' \
    "$base_image" >"$work/Dockerfile"
  # A label of its own too, so two checks never produce (and then remove) the same image. Its one RUN
  # step needs no network.
  if "${builder[@]}" --progress=plain --network=none --label "workhub.check=$tag" --tag "$tag" "$work" \
    >"$work/log" 2>&1; then
    docker image rm "$tag" >/dev/null 2>&1 || true
    rm -rf "$work"
    return 0
  fi
  tail -n 20 "$work/log" >&2
  rm -rf "$work"
  return 1
}
"""

# Each figure is checked to be a whole number: a test like [ "$a" -lt "$b" ] on anything else
# would fail quietly inside an `if`, and skip the check it stands for.
_RESOURCES = r"""
cpus=$(getconf _NPROCESSORS_ONLN)
memory_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
swap_mb=$(awk '/^SwapTotal:/ { print int($2 / 1024) }' /proc/meminfo)
docker_root=$(docker info --format '{{.DockerRootDir}}')
disk_free_mb=$(df -Pm "$docker_root" | awk 'NR == 2 { print $4 }')
for figure in cpus memory_mb swap_mb disk_free_mb; do
  case "${!figure}" in
    '' | *[!0-9]*)
      printf 'FAILED: cannot read %s on this host (got "%s"); check /proc/meminfo, getconf and df -Pm %s\n' \
        "$figure" "${!figure}" "$docker_root" >&2
      exit 1 ;;
  esac
done
"""

_HOST_FACTS = _BUILDER + _BUILDKIT_CHECK + _RESOURCES + r"""
say() { printf 'host-facts: %s\n' "$*" >&2; }
docker_version=$(docker version --format '{{.Server.Version}}')
say "docker engine $docker_version, builder: ${builder[*]}"
say "checking a BuildKit build with a cache mount FROM $base_image"
if buildkit_works; then buildkit=true; else buildkit=false; say "BuildKit check failed (log above)"; fi
case "${builder[0]}" in docker) builder_name=buildx ;; *) builder_name=docker-build ;; esac
say "cpus $cpus, memory ${memory_mb} MB, swap ${swap_mb} MB, free disk ${disk_free_mb} MB under $docker_root"
printf '{"docker_version": "%s", "builder": "%s", "buildkit": %s, "cpus": %s, "memory_mb": %s, "swap_mb": %s, "disk_free_mb": %s}\n' \
  "$docker_version" "$builder_name" "$buildkit" "$cpus" "$memory_mb" "$swap_mb" "$disk_free_mb"
"""


def host_facts_script(base_image: str) -> str:
    """Report the Docker version, whether BuildKit builds work, CPUs, memory and free disk."""
    return script({"base_image": base_image}, _HOST_FACTS)


_PREFLIGHT = _BUILDER + _BUILDKIT_CHECK + _RESOURCES + r"""
say() { printf 'preflight: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
if [ "$builds_here" = true ] && [ $((memory_mb + swap_mb)) -lt "$node_heap_mb" ]; then
  fail "workhub:build.nodeHeapMb is $node_heap_mb MB but the host has $memory_mb MB memory and $swap_mb MB swap; lower workhub:build.nodeHeapMb in Pulumi.yaml or add swap to the host"
fi
if [ "$disk_free_mb" -lt "$min_free_disk_mb" ]; then
  fail "only $disk_free_mb MB free under $docker_root, workhub:build.minFreeDiskMb asks for $min_free_disk_mb MB; free space on the host (docker image prune) or lower workhub:build.minFreeDiskMb"
fi
if [ "$builds_here" = false ]; then
  say "no hub builds on this host in this update (the stack has none, or they are pulled, promoted or pinned): the BuildKit check is skipped"
elif ! buildkit_works; then
  fail "a BuildKit build with a cache mount FROM $base_image (workhub:baseImage) does not work on this host (its log is above); install docker buildx, or a Docker engine with BuildKit, or set workhub:baseImage to an image the host has"
fi
# Collect old layers and uploaded contexts beyond the budget; the npm cache mounts
# (type exec.cachemount) are never collected here, so installs stay warm on a small disk.
for type in regular source.local; do
  docker builder prune --force --all --filter "type=$type" --keep-storage "${cache_keep_storage_mb}MB" >/dev/null 2>&1 \
    || say "could not collect old build cache of type $type"
done
if [ "$builds_here" = true ]; then
  say "ok: ${memory_mb} MB memory + ${swap_mb} MB swap hold a ${node_heap_mb} MB Node heap; ${disk_free_mb} MB free disk; BuildKit works"
else
  say "ok: ${disk_free_mb} MB free disk for the pulled images"
fi
"""


def preflight_script(base_image: str, build: BuildSettings, builds_here: bool = True) -> str:
    """Fail, before any build, when the host cannot hold the Node heap, lacks disk, or lacks
    BuildKit; then collect old build cache, keeping the npm cache mounts. When no hub builds on the
    host (`builds_here` false: the stack has none, or they are pulled, promoted or pinned), only the
    disk is checked."""
    return script(
        {"base_image": base_image, "node_heap_mb": build.node_heap_mb, "min_free_disk_mb": build.min_free_disk_mb,
         "cache_keep_storage_mb": build.cache_keep_storage_mb, "builds_here": builds_here},
        _PREFLIGHT,
    )


_HOST_SETUP = r"""
say() { printf 'host-setup: %s\n' "$*" >&2; }
""" + PRIVATE_STATE + r"""
# Once (this script runs again only when it changes): what earlier versions wrote readable by others
# (logs, build records, Compose files...) becomes the deploy user's alone. The uploaded build
# contexts keep their modes (they become the images' files), and each proxy's config stays readable
# by the proxy's user in its container; ~/.workhub (0700) keeps every other account out of both.
state="$HOME/.workhub"
if find "$state" \( -path "$state/contexts" -o -path "$state/builds/*/context" -o -path "$state/proxy" \) -prune \
  -o ! -type l -perm /077 -exec chmod go-rwx {} + 2>/dev/null; then
  say "$state (0700) and what is in it are the deploy user's alone"
else
  say "$state is 0700, but some files in it could not be made private (not the deploy user's?)"
fi
mkdir -p "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
config="$HOME/.ssh/config"
touch "$config"
chmod 600 "$config"
wanted=$(mktemp)
trap 'rm -f "$wanted"' EXIT
# Keep everything outside workhub's block; write the block anew at the end.
awk '/^# BEGIN workhub$/ { skip = 1 } !skip { print } /^# END workhub$/ { skip = 0 }' "$config" >"$wanted"
printf '# BEGIN workhub\nHost *\n    ServerAliveInterval %s\n    ServerAliveCountMax %s\n# END workhub\n' \
  "$server_alive_interval" "$server_alive_count_max" >>"$wanted"
if cmp -s "$wanted" "$config"; then
  say "~/.ssh/config already keeps sessions alive"
else
  cat "$wanted" >"$config"
  say "~/.ssh/config: ServerAliveInterval $server_alive_interval, ServerAliveCountMax $server_alive_count_max"
fi

dropin=/etc/ssh/sshd_config.d/workhub.conf
want_sshd=$(printf 'ClientAliveInterval %s\nClientAliveCountMax %s' "$client_alive_interval" "$client_alive_count_max")
if ! sudo -n true 2>/dev/null; then
  say "no passwordless sudo for $(id -un): sshd's ClientAlive settings are left as they are"
elif [ "$(sudo -n cat "$dropin" 2>/dev/null)" = "$want_sshd" ]; then
  say "$dropin already keeps client sessions alive"
else
  printf '%s\n' "$want_sshd" | sudo -n tee "$dropin" >/dev/null
  if ! sudo -n sshd -t; then
    sudo -n rm -f "$dropin"
    say "FAILED: sshd rejected $dropin; removed it again"
    exit 1
  fi
  sudo -n systemctl reload ssh 2>/dev/null || sudo -n systemctl reload sshd 2>/dev/null \
    || say "wrote $dropin; reload sshd to apply it"
  say "$dropin: ClientAliveInterval $client_alive_interval, ClientAliveCountMax $client_alive_count_max"
fi
"""


def host_setup_script(keep_alive: SshKeepAlive) -> str:
    """SSH keep-alives on the host, idempotently: the deploy user's ~/.ssh/config, and sshd's
    ClientAlive settings through a drop-in where the user may use sudo."""
    return script(
        {
            "server_alive_interval": keep_alive.server_alive_interval,
            "server_alive_count_max": keep_alive.server_alive_count_max,
            "client_alive_interval": keep_alive.client_alive_interval,
            "client_alive_count_max": keep_alive.client_alive_count_max,
        },
        _HOST_SETUP,
    )


def context_dir(stack: str, hub: str) -> str:
    """Where a hub's build context is uploaded, relative to the deploy user's home."""
    return f"{STATE_DIR}/contexts/{stack}/{hub}"


def build_arg_values(hub: Hub, build: BuildSettings, registry: Optional[str]) -> dict[str, str]:
    """Every build arg by name: workhub's settings first, then the hub's own."""
    args = {
        "NODE_OPTIONS": f"--max-old-space-size={build.node_heap_mb}",
        "NPM_CONFIG_FETCH_RETRIES": str(build.npm_fetch_retries),
        "NPM_CONFIG_FETCH_TIMEOUT": str(build.npm_fetch_timeout_ms),
        "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT": str(build.npm_fetch_retry_min_timeout_ms),
        "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT": str(build.npm_fetch_retry_max_timeout_ms),
        "NPM_CONFIG_PREFER_OFFLINE": "true" if build.npm_prefer_offline else "false",
        "WORKHUB_RETRY": install_retry(build),
    }
    if registry:
        args["NPM_CONFIG_REGISTRY"] = registry
    args.update(hub.build_args)
    return args


# npm's and BuildKit's words for a dropped, cut, stalled or refused download, or a registry's 5xx:
# what counts as a passing network fault, for the build runner's retry and the install's own.
TRANSIENT_PATTERN = (
    r"ECONNRESET|ETIMEDOUT|ESOCKETTIMEDOUT|EAI_AGAIN|ECONNREFUSED|EPIPE|socket hang up|network (error|request)"
    r"|npm (error|ERR!) network|EINTEGRITY|TAR_BAD_ARCHIVE|TAR_ABORT|unexpected end of (file|data)|ERR_SOCKET"
    r"|premature close|code E5[0-9][0-9]|50[0-9] (Internal|Bad Gateway|Service Unavailable|Gateway Timeout)"
)
# What the install retry prints when a try failed from something else; the runner does not retry it.
NOT_NETWORK = "not from the network: not trying again"

# npm retries a request that fails before its response, never a body cut short (pacote's
# isRetriableError takes EINTEGRITY, Z_DATA_ERROR, ENOENT and EISDIR; make-fetch-happen's retry ends
# once the headers are in). And a failing `npm ci` extracts everything else first (arborist's unpack
# is promise-all-reject-late), then removes it all, so every cut cost a whole install. Nothing of
# npm's stops it sooner, so these two small scripts, run with the base image's node and npm's own
# modules (pacote, npm-install-checks: how npm itself fetches and checks, with npm's own config):
#
# _STOP_AT_CUT, preloaded (--require) into the `npm ci` of a try: at the first tarball download cut
# short it says so (with ECONNRESET, a network fault for both retries) and ends npm at once. Only in
# npm's own process (its lifecycle scripts get the NODE_OPTIONS they had), only for `npm ci`, which
# starts from an empty node_modules each try (`npm install` would trust a half-extracted folder).
_STOP_AT_CUT = " ".join(line.strip() for line in r"""
const wrFs = require("fs");
if (/npm-cli\.js$/.test(wrFs.realpathSync(process.argv[1] || "/"))
    && process.argv.slice(2).some(word => ["ci", "clean-install", "ic", "install-clean"].includes(word))) {
  process.env.NODE_OPTIONS = process.env.WR_NODE_OPTIONS || "";
  const http = require("http"), emit = http.IncomingMessage.prototype.emit;
  http.IncomingMessage.prototype.emit = function (name, ...rest) {
    const req = this.req;
    if ((name === "aborted" || (name === "error" && rest[0] && rest[0].code === "ECONNRESET")) && req
        && req.method === "GET" && /\/-\/[^/?]+\.tgz(\?|$)/.test(req.path || "")) {
      wrFs.writeSync(2, `workhub: the download of ${req.path} was cut short (ECONNRESET); npm does not fetch a cut download again, so this try stops here\n`);
      process.removeAllListeners("exit");
      process.exit(1);
    }
    return emit.call(this, name, ...rest);
  };
}
""".strip().splitlines())

# _FILL_CACHE, run after a try that failed from the network: `node -e "$wr_fill_js" NPM TRIES
# ARGS...` (ARGS: the install's npm words) loads npm's config as that npm command would, reads the
# lockfile it installs, and asks pacote (as npm ci does, so with npm's cache keys: a package already
# there is read, not fetched) for each package that fits this platform and is not omitted, 16 at a
# time, each tried again on its own up to TRIES times. The next try finds them all in the cache. Its
# exit code is not used: what it could not fetch, the next try fetches.
_FILL_CACHE = " ".join(line.strip() for line in r"""
const fs = require("fs"), path = require("path");
const [npmBin, tries, ...args] = process.argv.slice(1);
const npmRoot = path.dirname(path.dirname(fs.realpathSync(npmBin)));
const need = name => require(path.join(npmRoot, "node_modules", name));
(async () => {
  process.argv = [process.execPath, path.join(npmRoot, "bin", "npm-cli.js"), ...args];
  const Npm = require(path.join(npmRoot, "lib", "npm.js"));
  const npm = new Npm();
  await npm.load();
  const opts = npm.flatOptions, pacote = need("pacote"), checks = need("npm-install-checks");
  const lock = ["npm-shrinkwrap.json", "package-lock.json"].map(f => path.join(npm.localPrefix, f)).find(f => fs.existsSync(f));
  const omit = new Set(opts.omit || []);
  const fits = p => { try { checks.checkPlatform({ os: p.os, cpu: p.cpu, libc: p.libc }); return true; } catch { return false; } };
  const wanted = Object.entries(JSON.parse(fs.readFileSync(lock, "utf8")).packages || {}).filter(([at, p]) => at && !p.link
    && !p.inBundle && p.integrity && p.version && !["dev", "optional", "peer"].some(kind => p[kind] && omit.has(kind)) && fits(p)
    && (!p.resolved || /^https?:\/\/\S*\/-\/\S*\.tgz$/.test(p.resolved)));
  const all = wanted.map(([at, p]) => [p.name || at.slice(at.lastIndexOf("node_modules/") + 13), p]);
  let again = 0, failed = 0, next = 0;
  const fetchOne = async ([name, p]) => {
    for (let n = 1; ; n++) {
      try {
        await pacote.tarball.stream(p.resolved ? `${name}@${p.resolved}` : `${name}@${p.version}`, s => { s.resume(); return s.promise(); },
          { ...opts, integrity: p.integrity, resolved: p.resolved });
        return;
      } catch (e) {
        if (n >= Number(tries)) { failed++; console.log(`workhub: could not fetch ${name}@${p.version} (${e.code || e.message}) in ${n} tries`); return; }
        again++;
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, async () => { while (next < all.length) { await fetchOne(all[next++]); } }));
  console.log(`workhub: ${all.length - failed} of the ${all.length} packages of ${path.relative(process.cwd(), lock)} are in the npm cache (${again} downloads tried again)`);
  process.exit(failed ? 1 : 0);
})().catch(e => { console.log(`workhub: could not fill the npm cache (${e.message}); the next try fetches what is missing`); process.exit(2); });
""".strip().splitlines())

# The install's own retry, run by `eval "$WORKHUB_RETRY" npm ci` inside the cache-mounted RUN step
# (POSIX sh: dash, busybox ash): a try that fails from the network runs again at once in the same
# step, with what the cache mount got so far (prefer-offline fetches only what is missing), instead
# of failing the build. With $wr_fill (installFillCache) and an npm command where node runs, a try
# stops at its first cut download (_STOP_AT_CUT), and after a try that failed from the network the
# lockfile's missing packages are fetched into the cache (_FILL_CACHE), so the next try, with
# prefer-offline, only extracts. A try (and the fill after it) that stored new packages in the npm
# cache (its content-v2 count grew) is free; $wr_tries tries without any cost the budget (the first
# of them is tried again at once, the next after a growing pause); $wr_max ends it in any case. Any
# other failure (a lockfile out of sync, a failing script) ends it at once. One line: it travels as
# a build arg. Without the build arg the same line is a plain `npm ci`.
_INSTALL_RETRY = " ".join(line.strip() for line in r"""
wr_count() { find "${NPM_CONFIG_CACHE:-${npm_config_cache:-$HOME/.npm}}/_cacache/content-v2" -type f 2>/dev/null | wc -l; };
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
workhub_retry
""".strip().splitlines()).replace("@@NOT_NETWORK@@", NOT_NETWORK)


def install_retry(build: BuildSettings) -> str:
    """The value of the WORKHUB_RETRY build arg: its settings, then the retry function and its call,
    to which `eval` adds the install command's words."""
    values = assignments({"wr_tries": build.install_tries, "wr_max": build.install_max_tries,
                          "wr_pause": build.retry_backoff_seconds, "wr_pattern": TRANSIENT_PATTERN,
                          "wr_fill": build.install_fill_cache,
                          **({"wr_stop_js": _STOP_AT_CUT, "wr_fill_js": _FILL_CACHE} if build.install_fill_cache else {})})
    return "; ".join(values.splitlines()) + "; " + _INSTALL_RETRY


def arg_words(args: dict[str, str]) -> list[str]:
    """Build args as `--build-arg NAME=value` words, in their order."""
    return [word for key, value in args.items() for word in ("--build-arg", f"{key}={value}")]


def build_args(hub: Hub, build: BuildSettings, registry: Optional[str]) -> list[str]:
    """The `--build-arg` words of a hub's build."""
    return arg_words(build_arg_values(hub, build, registry))


# `pause_after LOG N CODE`: try N failed from the network with exit code CODE; unless it was the
# last, say so through LOG and wait N times $retry_backoff seconds (a growing pause).
PAUSE_AFTER = r"""
pause_after() {
  [ "$2" -lt "$max_attempts" ] || return 0
  "$1" "attempt $2 failed from the network (exit code $3); trying again in $((retry_backoff * $2)) s"
  sleep $((retry_backoff * $2))
}
"""


# `registry_login FAIL USER SERVER`: USER logged in to SERVER in a Docker client config of this script's
# own ($login_dir, gone at exit with $scratch, the one other temporary file a script may name there),
# the password read from the secret variable registry_password (never exported, never on a command
# line). No USER, no login: the registry takes none. A refusal goes to FAIL, which ends the script.
REGISTRY_LOGIN = r"""
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
"""

# Runs detached on the host (setsid nohup), so a build outlives the SSH session that started it.
# Everything it prints goes to the build's log; its exit status goes to `status` when it is done.
_RUNNER = r"""
state="$HOME/.workhub"
dir="$state/builds/$hub-$stack-$build_id"
""" + _BUILDER + PAUSE_AFTER + r"""
exec >>"$dir/log" 2>&1
echo "$$" >"$dir/pid"
note() { printf 'build: %s\n' "$*"; }
now_ms() { date +%s%3N; }
# What counts as a passing network fault ($transient_pattern: components.scripts.TRANSIENT_PATTERN),
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
    --file "$dir/context/$dockerfile" --tag "$image" "${build_args[@]}" "$dir/context" 2>&1 | tee "$dir/attempt-$attempt.log"
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
"""


def build_runner(
    hub: Hub, stack: str, image: str, build_id: str, build: BuildSettings, registry: Optional[str]
) -> str:
    """The detached build of one hub: wait for the host's build lock, then build with BuildKit,
    trying again (with a growing pause) only when the failure came from the network."""
    return script(
        {
            "hub": hub.name,
            "stack": stack,
            "image": image,
            "build_id": build_id,
            "dockerfile": hub.dockerfile,
            "build_network": hub.build_network,
            "progress": build.progress,
            "max_attempts": build.attempts,
            "attempt_timeout": build.attempt_timeout_seconds,
            "retry_backoff": build.retry_backoff_seconds,
            "transient_pattern": TRANSIENT_PATTERN,
            "not_network": NOT_NETWORK,
            "build_args": build_args(hub, build, registry),
        },
        _RUNNER,
    )


# Starts the detached build, or attaches to the one already running (or finished) for the same
# content, and streams its log until it ends. RUNNER_MARK stands for the runner's text, written
# through a quoted here-document (config values cannot hold a newline, so cannot end it early).
RUNNER_MARK = "@@RUNNER@@"
_BUILD = r"""
say() { printf 'build: %s\n' "$*" >&2; }
""" + PRIVATE_STATE + r"""
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
@@RUNNER@@WORKHUB_RUNNER_END
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
"""


def build_script(
    hub: Hub, stack: str, image: str, build_id: str, build: BuildSettings, registry: Optional[str]
) -> str:
    """Start (or attach to, or adopt) the detached build of `image`, streaming its log until it ends."""
    runner = build_runner(hub, stack, image, build_id, build, registry)
    outer = script(
        {"hub": hub.name, "stack": stack, "image": image, "build_id": build_id,
         "context_dir": context_dir(stack, hub.name), "stream_mark": STREAM_MARK},
        _BUILD,
    )
    return outer.replace(RUNNER_MARK, runner)


# Registry mode: the image was built where Pulumi runs and pushed; the host pulls it by its
# content-derived tag and tags it as the build on the host would have, so run, health and
# promotion are the same steps for both modes. A registry password arrives (from the provider, as
# a secret) in the shell variable registry_password, never exported and never on a command line.
_PULL = PAUSE_AFTER + REGISTRY_LOGIN + r"""
say() { printf 'pull: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
""" + PRIVATE_STATE + r"""
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
"""


def pull_script(hub: Hub, stack: str, image: str, build_id: str, remote: str, server: str,
                username: Optional[str], build: BuildSettings) -> str:
    """Pull a registry-mode hub's image by its tag and tag it `image` on the host, trying again
    (with a growing pause) when the pull fails from the network; check it suits the host's platform."""
    return script(
        {"hub": hub.name, "stack": stack, "image": image, "build_id": build_id, "remote": remote,
         "repository": remote.rsplit(":", 1)[0], "server": server, "username": username or "",
         "max_attempts": build.attempts, "attempt_timeout": build.attempt_timeout_seconds,
         "retry_backoff": build.retry_backoff_seconds},
        _PULL,
    )


# `stack_images HUB`: the hub's images in the stack $stack, `<hub>:<stack>-<content id>`, newest
# first; exactly those (stack e2e's are not e2e-x's).
STACK_IMAGES = r"""
stack_images() {
  local ref id
  for ref in $(docker image ls "$1" --format '{{.Repository}}:{{.Tag}}'); do
    id=${ref#"$1:$stack-"}
    if [ "$id" != "$ref" ] && [[ $id =~ ^[0-9a-f]{12}$ ]]; then printf '%s\n' "$ref"; fi
  done
}
"""

# A hub's images in a stack are all `<hub>:<stack>-<content id>`: the one it runs now and the earlier
# ones an update left for a rollback (prune keeps a few). Removing a tag another stack shares (a
# promoted image) only untags it. The build logs and records stay; so does the build cache (its npm
# cache mounts keep the next build fast; `prune --reset-cache` empties it).
_REMOVE_IMAGE = STACK_IMAGES + r"""
say() { printf 'remove: %s\n' "$*" >&2; }
state="$HOME/.workhub"
for ref in $(stack_images "$hub"); do
  docker image rm "$ref" >/dev/null 2>&1 && say "removed image $ref"
done
docker image rm "$image" >/dev/null 2>&1 || true
rm -rf "$HOME/$context_dir"
for dir in "$state/builds/$hub-$stack-"*; do
  [ -d "$dir/context" ] && rm -rf "$dir/context"
done
say "removed the build context uploads of $hub in stack $stack; its build logs stay under $state/builds"
"""


def remove_image_script(hub: Hub, stack: str, image: str) -> str:
    """Remove every image of the hub in this stack and its build context uploads."""
    return script({"hub": hub.name, "stack": stack, "image": image, "context_dir": context_dir(stack, hub.name)},
                  _REMOVE_IMAGE)


# What a refresh runs for the command that put an image on the host (its build, pull or promotion):
# a drift line when the image is gone (removed by hand), so the next update makes it again.
_IMAGE_CHECK = r"""
docker image inspect "$image" >/dev/null 2>&1 || printf '%sthe image %s is not on the host\n' "$drift_mark" "$image"
"""


def image_check_script(image: str) -> str:
    """A DRIFT_MARK line on stdout when `image` is not on the host; nothing when it is."""
    return script({"image": image, "drift_mark": DRIFT_MARK}, _IMAGE_CHECK)


_PROMOTE = r"""
say() { printf 'promote: %s\n' "$*" >&2; }
if ! found=$(docker image inspect --format '{{.Id}}' "$source_image" 2>/dev/null); then
  say "FAILED: $source_image is not on this host; promotion needs the source stack's Docker engine (or unset workhub:promoteFrom to build here)"
  exit 1
fi
if [ -n "$image_id" ] && [ "$found" != "$image_id" ]; then
  say "FAILED: $source_image is now $found, not the $image_id that was verified; run the source stack again"
  exit 1
fi
if [ "$image" != "$source_image" ]; then
  docker tag "$source_image" "$image"
fi
say "$image is $source_image ($found)"
printf '{"image": "%s", "image_id": "%s", "from": "%s"}\n' "$image" "$found" "$source_image"
"""


def promote_script(hub: Hub, source_image: str, image: str, image_id: Optional[str]) -> str:
    """Tag the image another stack verified as this stack's, after checking it is the same image."""
    return script({"hub": hub.name, "source_image": source_image, "image": image, "image_id": image_id or ""},
                  _PROMOTE)


_UNTAG = r"""
if [ "$(docker image inspect --format '{{len .RepoTags}}' "$image" 2>/dev/null || echo 0)" -gt 1 ]; then
  docker image rm "$image" >/dev/null 2>&1 || true
fi
"""


def untag_script(image: str) -> str:
    """Drop this stack's tag of a promoted image, leaving the image to the stack that built it."""
    return script({"image": image}, _UNTAG)


_NOT_PROMOTED = r"""
printf '%s: not promoted; it keeps what it runs\n' "$hub" >&2
echo '{}'
"""


def not_promoted_script(hub: Hub) -> str:
    return script({"hub": hub.name}, _NOT_PROMOTED)
