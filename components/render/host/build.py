"""Pure builders of the scripts that run on the build host: typed config in, script text out.

Every script prints its progress to stderr (streamed to the Pulumi log) and at most one short
JSON line to stdout (kept in Pulumi state). Config values enter only through `shell.script`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from components.config.models import BuildSettings, Hub, SshKeepAlive
from components.constants import DRIFT_MARK, STREAM_MARK
from components.render.host.documents import LIVE_MARK
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
  tag="workhub-buildkit-check:$(basename "$work" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9')"
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
# shellcheck disable=SC2034  # read through ${!figure} below, whether or not the script shows it
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
# The free disk the check saw: the stack's outputs show it (the host's other facts are read once).
printf '{"disk_free_mb": %s}\n' "$disk_free_mb"
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
  # shellcheck disable=SC2088  # a message: ~ names the deploy user's home for the reader
  say "~/.ssh/config already keeps sessions alive"
else
  cat "$wanted" >"$config"
  # shellcheck disable=SC2088  # a message: ~ names the deploy user's home for the reader
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


def build_arg_values(hub: Hub, build: BuildSettings, registry: Optional[str],
                     retry_secret: bool = False) -> dict[str, str]:
    """Every build arg by name: workhub's settings first, then the hub's own. With `retry_secret`
    (the build gives the install retry as the secret RETRY_SECRET, and the Dockerfile mounts it)
    WORKHUB_RETRY only runs that file; else it is the whole retry on one line."""
    args = {
        "NODE_OPTIONS": f"--max-old-space-size={build.node_heap_mb}",
        "NPM_CONFIG_FETCH_RETRIES": str(build.npm_fetch_retries),
        "NPM_CONFIG_FETCH_TIMEOUT": str(build.npm_fetch_timeout_ms),
        "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT": str(build.npm_fetch_retry_min_timeout_ms),
        "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT": str(build.npm_fetch_retry_max_timeout_ms),
        "NPM_CONFIG_PREFER_OFFLINE": "true" if build.npm_prefer_offline else "false",
        "WORKHUB_RETRY": RETRY_RUN if retry_secret else install_retry(build),
    }
    if registry:
        args["NPM_CONFIG_REGISTRY"] = registry
    args.update(hub.build_args)
    return args


# npm's and BuildKit's words for a dropped, cut, stalled or refused download, or a registry's 5xx,
# and a name that did not resolve (Go's, as BuildKit pulling a FROM image prints it: `lookup HOST
# ...: no such host`, `server misbehaving`, `i/o timeout`; libc's, as apt, curl and wget print it;
# npm's ENOTFOUND): what counts as a passing network fault, for the build runner's retry and the
# install's own.
TRANSIENT_PATTERN = (
    r"ECONNRESET|ETIMEDOUT|ESOCKETTIMEDOUT|EAI_AGAIN|ECONNREFUSED|EPIPE|socket hang up|network (error|request)"
    r"|npm (error|ERR!) network|EINTEGRITY|TAR_BAD_ARCHIVE|TAR_ABORT|unexpected end of (file|data)|ERR_SOCKET"
    r"|premature close|code E5[0-9][0-9]|50[0-9] (Internal|Bad Gateway|Service Unavailable|Gateway Timeout)"
    r"|no such host|server misbehaving|i/o timeout|temporary failure (in name resolution|resolving)|ENOTFOUND"
    r"|could not resolve (host|')|unable to resolve host"
)
# What the install retry prints when a try failed from something else; the runner does not retry it.
NOT_NETWORK = "not from the network: not trying again"

# The install's own retry is a program of its own, kept readable in components/render/host/install_retry/:
# retry.sh (what it does and why npm's own settings are not enough) and the two node scripts it
# runs, stop-at-cut.js and fill-cache.js. Here each is made into one line (a build arg is one
# line): comment lines and blank lines dropped, the others joined with a space.
_RETRY_DIR = Path(__file__).parent / "install_retry"


def _one_line(text: str, comment: str) -> str:
    """A file of components/render/host/install_retry/ as one line, without its `comment` lines."""
    lines = (line.strip() for line in text.splitlines())
    return " ".join(line for line in lines if line and not line.startswith(comment))


# retry.sh as kept, read once: the secret's file, and made one line for the build arg.
_RETRY_PROGRAM = (_RETRY_DIR / "retry.sh").read_text().replace("@@NOT_NETWORK@@", NOT_NETWORK)
_STOP_AT_CUT = _one_line((_RETRY_DIR / "stop-at-cut.js").read_text(), "//")
_FILL_CACHE = _one_line((_RETRY_DIR / "fill-cache.js").read_text(), "//")
_INSTALL_RETRY = _one_line(_RETRY_PROGRAM, "#")


# The BuildKit secret a build on the host gives the install retry as (retry.sh, after its
# settings), where a hub Dockerfile's install RUN mounts it (RETRY_MOUNT), and the WORKHUB_RETRY
# that runs it there: the step's log shows `sh /run/secrets/workhub-retry npm ci`.
RETRY_SECRET = "workhub-retry"
RETRY_MOUNT = f"--mount=type=secret,id={RETRY_SECRET},mode=0444"
RETRY_RUN = f"sh /run/secrets/{RETRY_SECRET}"


def _retry_settings(build: BuildSettings) -> str:
    """The retry's settings as shell assignments, one a line."""
    return assignments({"wr_tries": build.install_tries, "wr_max": build.install_max_tries,
                        "wr_pause": build.retry_backoff_seconds, "wr_pattern": TRANSIENT_PATTERN,
                        "wr_fill": build.install_fill_cache,
                        **({"wr_stop_js": _STOP_AT_CUT, "wr_fill_js": _FILL_CACHE} if build.install_fill_cache else {})})


def install_retry(build: BuildSettings) -> str:
    """The one-line WORKHUB_RETRY where no secret can carry the retry: its settings, then the retry
    function and its call, to which `eval` adds the install command's words."""
    return "; ".join(_retry_settings(build).splitlines()) + "; " + _INSTALL_RETRY


def install_retry_file(build: BuildSettings) -> str:
    """The install retry as the file a build on the host gives as the secret RETRY_SECRET: its
    settings, then retry.sh as it is kept (run as `sh FILE npm ci`)."""
    return "#!/bin/sh\n" + _retry_settings(build) + "\n" + _RETRY_PROGRAM


def arg_words(args: dict[str, str]) -> list[str]:
    """Build args as `--build-arg NAME=value` words, in their order."""
    return [word for key, value in args.items() for word in ("--build-arg", f"{key}={value}")]


def build_args(hub: Hub, build: BuildSettings, registry: Optional[str], retry_secret: bool = False) -> list[str]:
    """The `--build-arg` words of a hub's build."""
    return arg_words(build_arg_values(hub, build, registry, retry_secret))


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
"""


def build_runner(
    hub: Hub, stack: str, image: str, build_id: str, build: BuildSettings, registry: Optional[str],
    retry_secret: bool = False,
) -> str:
    """The detached build of one hub: wait for the host's build lock, then build with BuildKit,
    trying again (with a growing pause) only when the failure came from the network. With
    `retry_secret` the install retry goes to the build as the secret RETRY_SECRET."""
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
            "build_args": build_args(hub, build, registry, retry_secret),
            "retry_secret": RETRY_SECRET,
            "retry_program": install_retry_file(build) if retry_secret else "",
        },
        _RUNNER,
    )


# Starts the detached build, or attaches to the one already running (or finished) for the same
# content, and streams its log until it ends. RUNNER_MARK stands for the runner's text, written
# through a quoted here-document (config values cannot hold a newline, so cannot end it early; the
# one value that does, the install retry's program, is workhub's own and has no such line).
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
    hub: Hub, stack: str, image: str, build_id: str, build: BuildSettings, registry: Optional[str],
    retry_secret: bool = False,
) -> str:
    """Start (or attach to, or adopt) the detached build of `image`, streaming its log until it ends."""
    runner = build_runner(hub, stack, image, build_id, build, registry, retry_secret)
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

# `serving_image HUB`: the image the hub serves from in the stack $stack: its live slot's (as its
# proxy's config names the slot, after $live_mark), or (before the proxy) its container's; nothing
# when none runs.
SERVING_IMAGE = r"""
serving_image() {
  local live
  live=$(sed -n "s/^$live_mark//p" "$HOME/.workhub/proxy/$1-$stack/haproxy.cfg" 2>/dev/null | head -n 1)
  docker inspect --format '{{.Config.Image}}' "$1-$stack${live:+-$live}" 2>/dev/null || true
}
"""

# A hub's images in a stack are all `<hub>:<stack>-<content id>`: the one it runs now and the earlier
# ones an update left for a rollback (prune keeps a few). The one its live slot runs stays: the build
# goes when the hub is pinned to an earlier image of the stack (workhub:pinnedImages), which then
# serves, and a tag Docker does not refuse to remove (the image has another tag: another stack's
# promotion) would be gone for the next deploy. Removing a tag another stack shares only untags it.
# The build logs and records stay; so does the build cache (its npm cache mounts keep the next build
# fast; `prune --reset-cache` empties it).
_REMOVE_IMAGE = STACK_IMAGES + SERVING_IMAGE + r"""
say() { printf 'remove: %s\n' "$*" >&2; }
state="$HOME/.workhub"
serving=$(serving_image "$hub")
for ref in $(stack_images "$hub"); do
  if [ "$ref" = "$serving" ]; then
    say "kept image $ref: $hub serves from it"
    continue
  fi
  docker image rm "$ref" >/dev/null 2>&1 && say "removed image $ref"
done
[ "$image" = "$serving" ] || docker image rm "$image" >/dev/null 2>&1 || true
rm -rf "$HOME/${context_dir:?}"
for dir in "$state/builds/$hub-$stack-"*; do
  [ -d "$dir/context" ] && rm -rf "$dir/context"
done
say "removed the build context uploads of $hub in stack $stack; its build logs stay under $state/builds"
"""


def remove_image_script(hub: Hub, stack: str, image: str) -> str:
    """Remove every image of the hub in this stack but the one it serves from, and its build context
    uploads."""
    return script({"hub": hub.name, "stack": stack, "image": image, "context_dir": context_dir(stack, hub.name),
                   "live_mark": LIVE_MARK}, _REMOVE_IMAGE)


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


def promote_script(source_image: str, image: str, image_id: Optional[str]) -> str:
    """Tag the image another stack verified as this stack's, after checking it is the same image."""
    return script({"source_image": source_image, "image": image, "image_id": image_id or ""},
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
