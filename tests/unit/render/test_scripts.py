"""Rendered remote scripts: exact text (golden files), and config values reaching them only as data."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from components.render.host.documents import proxy_compose, proxy_config, slot_compose
from components.config.models import BuildSettings, DeploySettings, Hub, SshKeepAlive, StackConfig
from components.render.host.deploy import (Serving, backup_script, check_script, prune_script, purge_script,
                                           restore_script, run_script, status_script, stop_script, volume_check_script,
                                           volume_info_script, volume_script)
from components.config.runtime import hub_runtime
from components.render.host.build import (build_arg_values, build_args, install_retry, install_retry_file, build_runner, build_script, host_facts_script,
                                          host_setup_script, image_check_script, preflight_script, promote_script,
                                          pull_script, remove_image_script, untag_script)
from components.render.shell import assignments, quote, script
from components.render.host.documents import LIVE_MARK

HUB = Hub(name="wbsaleshub", context="WBSalesHub", port=4091, healthPath="/health",
          buildArgs={"APP_FLAVOUR": "it's $(odd)"}, env={"LOG_LEVEL": "info", "GREETING": "it's $HOME"},
          stackEnv=["PUBLIC_URL"], secrets=["LEADS_API_TOKEN", "SIGNING_KEY"], volumes={"data": "/app/data"})
BUILD = BuildSettings()
STACK = StackConfig.model_validate({
    "host": {"address": "build.example.test", "user": "deploy", "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFloHIpcBboBa5fvOHzc3/flmdn24bmBRbRH+dbManFE"},
    "hubs": [HUB.model_dump(by_alias=True)], "hostPorts": {"wbsaleshub": 14091},
    "env": {"wbsaleshub": {"PUBLIC_URL": "https://sales.example.test"}}})
SECRETS = {"LEADS_API_TOKEN": "not-a-real-token", "SIGNING_KEY": "-----BEGIN TEST KEY-----\nabc\n-----END TEST KEY-----\n"}
RUNTIME = hub_runtime(HUB, STACK, "staging", SECRETS, "pepper")
SERVING = Serving("127.0.0.1", DeploySettings(), "haproxy:2.6")
IMAGE = "wbsaleshub:staging-0123456789ab"
REMOTE = "127.0.0.1:5000/workhub/wbsaleshub:staging-0123456789ab"


def all_scripts() -> dict[str, str]:
    """Every script workhub renders, for one sample hub and the default settings."""
    return {
        "host_facts.sh": host_facts_script("node:20-bookworm-slim"),
        "preflight.sh": preflight_script("node:20-bookworm-slim", BUILD),
        "host_setup.sh": host_setup_script(SshKeepAlive()),
        "build.sh": build_script(HUB, "staging", IMAGE, "0123456789ab", BUILD, "http://127.0.0.1:4873/",
                                 retry_secret=True),
        # A Dockerfile whose retry RUNs do not mount its secret: the retry is the build arg, on one line.
        "build_retry_arg.sh": build_script(HUB, "staging", IMAGE, "0123456789ab", BUILD, "http://127.0.0.1:4873/"),
        "remove_image.sh": remove_image_script(HUB, "staging", IMAGE),
        "run.sh": run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING),
        "check.sh": check_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING),
        "image_check.sh": image_check_script(IMAGE),
        "stop.sh": stop_script(HUB, "staging"),
        "purge.sh": purge_script("staging"),
        "volume_info.sh": volume_info_script("staging", [(HUB, "data")]),
        "volume.sh": volume_script(HUB, "staging", "data"),
        "volume_check.sh": volume_check_script(HUB, "staging", "data"),
        "backup.sh": backup_script("workhub-staging-wbsaleshub-data", "haproxy:2.6"),
        "restore.sh": restore_script(HUB, "staging", "data", "0" * 64, 12, 14091, SERVING),
        "promote.sh": promote_script(IMAGE, "wbsaleshub:production-0123456789ab", "sha256:" + "0" * 64),
        "untag.sh": untag_script("wbsaleshub:production-0123456789ab"),
        "status.sh": status_script("staging", [HUB], {"wbsaleshub": 14091}, "127.0.0.1"),
        "prune.sh": prune_script("staging", [HUB], 3, False),
        "pull.sh": pull_script(HUB, "staging", IMAGE, "0123456789ab", REMOTE, "127.0.0.1:5000", "ci", BUILD),
    }


def all_documents() -> dict[str, str]:
    """Every document a deploy writes on the host: the slot and proxy Compose files, the proxy config."""
    deploy = DeploySettings()
    return {
        "slot-blue.compose.json": slot_compose(HUB, "staging", "blue", IMAGE, RUNTIME, deploy) + "\n",
        "proxy.compose.json": proxy_compose(HUB, "staging", 14091, "127.0.0.1", "haproxy:2.6") + "\n",
        "proxy-green.cfg": proxy_config(HUB, "staging", "green", 14091, deploy),
    }


GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; WORKHUB_UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("WORKHUB_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review, then rerun with WORKHUB_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("name", sorted(all_scripts()))
def test_rendered_script_golden(name):
    """Each rendered script, exactly."""
    golden(name, all_scripts()[name])


@pytest.mark.parametrize("name", sorted(all_documents()))
def test_rendered_document_golden(name):
    """Each document a deploy writes, exactly."""
    golden(name, all_documents()[name])


@pytest.mark.parametrize("name", sorted(all_scripts()))
def test_scripts_are_valid_bash(name):
    """bash -n accepts every rendered script."""
    subprocess.run(["bash", "-n"], input=all_scripts()[name], text=True, check=True)


def test_a_preflight_with_nothing_to_build_differs_only_in_that_flag():
    """With every hub pulled from a registry, the preflight's script is the same but for
    builds_here, which skips the Node heap and BuildKit checks."""
    pulls_only = preflight_script("node:20-bookworm-slim", BUILD, builds_here=False)
    assert "\nbuilds_here=false\n" in pulls_only
    assert pulls_only.replace("builds_here=false", "builds_here=true") == all_scripts()["preflight.sh"]


def test_build_args_carry_settings_then_the_hubs_own():
    """NODE_OPTIONS and npm's fetch settings go in as build args, never as SSH environment."""
    assert build_args(HUB, BUILD, "http://127.0.0.1:4873/") == [
        "--build-arg", "NODE_OPTIONS=--max-old-space-size=4096",
        "--build-arg", "NPM_CONFIG_FETCH_RETRIES=5",
        "--build-arg", "NPM_CONFIG_FETCH_TIMEOUT=5000",
        "--build-arg", "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT=1000",
        "--build-arg", "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT=4000",
        "--build-arg", "NPM_CONFIG_PREFER_OFFLINE=true",
        "--build-arg", f"WORKHUB_RETRY={install_retry(BUILD)}",
        "--build-arg", "NPM_CONFIG_REGISTRY=http://127.0.0.1:4873/",
        "--build-arg", "APP_FLAVOUR=it's $(odd)",
    ]
    assert "NPM_CONFIG_REGISTRY" not in " ".join(build_args(HUB, BUILD, None))


def test_with_the_retrys_secret_its_build_arg_only_runs_the_secret():
    """Where the Dockerfile mounts the retry's secret, WORKHUB_RETRY names the file, and the build
    runner gives the retry (its settings, then retry.sh) as that secret."""
    assert build_arg_values(HUB, BUILD, None, retry_secret=True)["WORKHUB_RETRY"] == "sh /run/secrets/workhub-retry"
    runner = build_runner(HUB, "staging", IMAGE, "0123456789ab", BUILD, None, retry_secret=True)
    assert "\nretry_secret=workhub-retry\n" in runner and "\nretry_program='#!/bin/sh\nwr_tries=3\n" in runner
    assert install_retry_file(BUILD).endswith('\nworkhub_retry "$@"\n')
    assert "\nretry_program=''\n" in build_runner(HUB, "staging", IMAGE, "0123456789ab", BUILD, None)


def test_hostile_build_arg_reaches_docker_as_one_word():
    """A build arg value with quotes and $(...) is one argument to docker, unexpanded."""
    text = build_runner(HUB, "staging", IMAGE, "0123456789ab", BUILD, None)
    setup = text.split('\nstate="$HOME/.workhub"')[0]
    out = subprocess.run(["bash", "-c", setup + "\n" + 'printf "%s\\n" "${build_args[@]}"'],
                         capture_output=True, text=True, check=True).stdout
    assert "APP_FLAVOUR=it's $(odd)\n" in out


@pytest.mark.parametrize("value", ["a b", "it's", "$(touch /tmp/pwned)", "`id`", "x; rm -rf /", "\n", ""])
def test_values_reach_the_shell_as_data(value):
    """Whatever a value holds, the script sees exactly that string."""
    text = script({"value": value}, 'printf "%s" "$value"')
    out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True).stdout
    assert out == value


def test_assignments_render_in_order_and_quote():
    assert assignments({"b": "x y", "a": 3, "c": True}) == "b='x y'\na=3\nc=true"
    assert quote("plain") == "plain"


def test_bad_variable_names_are_refused():
    with pytest.raises(ValueError):
        assignments({"bad-name": "x"})


def test_a_failed_health_check_says_what_each_probe_outcome_was_and_for_how_long():
    """The deploy's words for what the probes saw: each outcome, most frequent first, how long it
    went on (first to last probe) and how many times (the clock is a stand-in)."""
    rendered = run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING)
    functions = rendered[rendered.index("declare -A seen=()"):rendered.index("# passes PROBE PAUSE")]
    clock = "t=0\nnow_ms() { echo $t; }\n"
    probes = "t=1000; saw 500; t=31400; saw 500; saw 500; t=31500; saw refused\nwhat_was_seen\n"
    done = subprocess.run(["bash", "-c", clock + functions + probes], capture_output=True, text=True, check=True)
    assert done.stdout == "answered 500 for 30 s (3 times), refused the connection (1 time)"



def stand_in_docker(tmp_path: Path, program: str) -> Path:
    """A directory holding `program` as `docker`, to put first on a script's PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(program)
    (bin_dir / "docker").chmod(0o755)
    return bin_dir


# A stand-in Docker CLI for the health wait: each inspect of the new container is a moment later, in
# which Docker has restarted it once more (the app exits at start); it never answers, nor logs.
RESTARTING_DOCKER = """#!/bin/bash
[ "$1" = logs ] && exit 0
count=$(( $(cat "$FAKE/restarts" 2>/dev/null || echo 0) + ${STEP:-1} ))
printf '%s' "$count" >"$FAKE/restarts"
echo "true $count"
"""


@pytest.mark.parametrize("step, outcome", [(1, "crash-looping"), (0, "timed out")])
def test_a_new_container_docker_keeps_restarting_ends_the_wait_at_once(tmp_path, step, outcome):
    """A new container that Docker has restarted 3 times (it exits at start) is crash-looping: the
    health wait ends there, not after health_timeout (here 2 s, where a container that is not
    restarted keeps being probed)."""
    bin_dir = stand_in_docker(tmp_path, RESTARTING_DOCKER)
    rendered = run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING)
    functions = rendered[rendered.index("declare -A seen=()"):rendered.index("# switch_to SLOT")]
    stand_ins = ("now_ms() { date +%s%3N; }\nnew_container=wbsaleshub-staging-blue port=4091 health_path=/health health_timeout=2 healthy_passes=3\n"
                 "health_interval=0.1\nip_of() { echo 172.18.0.9; }\nprobe() { echo refused; }\n")
    ending = 'if wait_healthy; then echo healthy; elif [ -n "${seen[crash-looping]:-}" ]; then echo crash-looping; ' \
             'else echo timed out; fi\nwhat_was_seen\n'
    done = subprocess.run(["bash", "-c", stand_ins + functions + ending], capture_output=True, text=True, check=True,
                          timeout=30, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(tmp_path), "STEP": str(step)})
    said, probes = done.stdout.split("\n", 1)
    assert said == outcome
    if outcome == "crash-looping":
        assert (tmp_path / "restarts").read_text() == "3", "no probe after the third restart"
        assert probes == "refused the connection (2 times)"
    else:
        assert probes.startswith("refused the connection for ") and "crash" not in probes, probes


# A stand-in Docker CLI whose container runs (exit code 0) on the first two inspects, then waits to
# be restarted after exiting with 3.
RESTARTING_AGAIN = """#!/bin/bash
count=$(( $(cat "$FAKE/inspects" 2>/dev/null || echo 0) + 1 ))
printf '%s' "$count" >"$FAKE/inspects"
if [ "$count" -le 2 ]; then echo "false true 0"; else echo "true true 3"; fi
"""


def test_a_crash_loops_exit_code_is_read_while_docker_waits_to_restart_it(tmp_path):
    """Docker resets a container's exit code when it starts it again: the code is read while it
    waits to restart (State.Restarting), not from the run in progress."""
    bin_dir = stand_in_docker(tmp_path, RESTARTING_AGAIN)
    rendered = run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING)
    function = rendered[rendered.index("last_exit_code() {"):rendered.index("# The new container's health path")]
    done = subprocess.run(["bash", "-c", "new_container=wbsaleshub-staging-blue\n" + function + "last_exit_code\n"],
                          capture_output=True, text=True, check=True, timeout=30,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(tmp_path)})
    assert done.stdout == "3\n"

# A stand-in Docker CLI for the destroy step: it lists $FAKE/images and logs every `image rm`.
LISTING_DOCKER = """#!/bin/bash
if [ "$1 $2" = "image ls" ]; then grep "^$3:" "$FAKE/images"; exit 0; fi
if [ "$1 $2" = "image rm" ]; then printf '%s\\n' "$3" >>"$FAKE/removed"; exit 0; fi
if [ "$1" = inspect ] && [ -f "$FAKE/container-${!#}" ]; then cat "$FAKE/container-${!#}"; exit 0; fi
exit 0
"""


# A stand-in Docker CLI whose new container runs and writes one more log line each time its log is
# read (a second apart, by Docker's fixed-width timestamps); like Docker, `--since` keeps the lines
# from that time on, that time included; Docker's own messages on its stderr carry no timestamp.
LOGGING_DOCKER = """#!/bin/bash
if [ "$1" = logs ]; then
  n=$(( $(cat "$FAKE/log" 2>/dev/null | wc -l) + 1 ))
  printf '2026-01-02T03:04:%02d.000000000Z app line %s\\n' "$n" "$n" >>"$FAKE/log"
  since=""
  [ "$3" = --since ] && since=$4
  awk -v since="$since" '$1 >= since' "$FAKE/log"
  echo 'Error response from daemon: a message of Docker, not of the app' >&2
  exit 0
fi
echo "true 0"
"""


def test_the_new_containers_own_lines_are_shown_as_they_come_each_once(tmp_path):
    """During the health wait the new container's log lines come out between the probes, in time
    order, each once (not again at the end), marked with its name; Docker's own messages are not
    taken for the app's."""
    bin_dir = stand_in_docker(tmp_path, LOGGING_DOCKER)
    rendered = run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING)
    functions = rendered[rendered.index("declare -A seen=()"):rendered.index("# switch_to SLOT")]
    stand_ins = ("now_ms() { date +%s%3N; }\nnew_container=wbsaleshub-staging-blue port=4091 health_path=/health "
                 "health_timeout=20 healthy_passes=3 health_interval=0.01\nip_of() { echo 172.18.0.9; }\n"
                 'probe() { local n=$(( $(cat "$FAKE/probes" 2>/dev/null || echo 0) + 1 )); echo "$n" >"$FAKE/probes"; '
                 'echo "probe $n" >&2; if [ "$n" -ge 3 ]; then echo 200; else echo refused; fi; }\n')
    done = subprocess.run(["bash", "-c", stand_ins + functions + "wait_healthy && echo healthy\n"],
                          capture_output=True, text=True, check=True, timeout=30,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(tmp_path)})
    assert done.stdout == "healthy\n"
    expected = [line for n in range(1, 6) for line in (f"wbsaleshub-staging-blue | app line {n}", f"probe {n}")]
    assert done.stderr.splitlines() == expected + ["wbsaleshub-staging-blue | app line 6"], done.stderr


# A stand-in Docker CLI for stopping the old container: `docker stop` and what inspect then says of it.
STOPPING_DOCKER = """#!/bin/bash
[ "$1" = stop ] && exit 0
echo "$EXIT_CODE"
"""


@pytest.mark.parametrize("code, took_ms, said", [(137, 2000, True), (137, 300, False), (0, 2000, False),
                                                 (143, 2000, False)])
def test_an_old_container_docker_had_to_kill_after_the_grace_is_said_once_with_the_fix(tmp_path, code, took_ms, said):
    """An old container that Docker killed (exit code 137) after the whole stopGraceSeconds ignored
    SIGTERM: said once, with the fixes, and not as a failure. One that exited by itself (0, 143), or
    was killed sooner, is not."""
    bin_dir = stand_in_docker(tmp_path, STOPPING_DOCKER)
    rendered = run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING)
    function = rendered[rendered.index("stop_old() {"):rendered.index('new_container=""')]
    stand_ins = ('say() { printf "run: %s\\n" "$*" >&2; }\nhub=wbsaleshub stop_grace=2\n'
                 f'now_ms() {{ local t; t=$(cat "$FAKE/t" 2>/dev/null || echo 0); echo $((t + {took_ms})) >"$FAKE/t"; echo "$t"; }}\n')
    done = subprocess.run(["bash", "-c", stand_ins + function + "stop_old wbsaleshub-staging-blue && echo stopped\n"],
                          capture_output=True, text=True, check=True, timeout=30,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(tmp_path), "EXIT_CODE": str(code)})
    assert done.stdout == "stopped\n"
    if not said:
        assert done.stderr == ""
        return
    (line,) = done.stderr.splitlines()
    assert line.startswith("run: note: wbsaleshub-staging-blue ignored SIGTERM: Docker killed it (exit code 137) "
                           "after the 2 s of workhub:deploy.stopGraceSeconds"), line
    assert "FAILED" not in line and "The deploy succeeded" in line
    for fix in ("handle SIGTERM in the app", "tini or dumb-init as the image's ENTRYPOINT",
                "lower workhub:deploy.stopGraceSeconds"):
        assert fix in line, line


# A stand-in Docker CLI for `status`: the live container runs $RUNNING, made at $CREATED.
STATUS_DOCKER = """#!/bin/bash
case "$3" in
  *Config.Image*) echo "$RUNNING" ;;
  *Created*) echo "$CREATED" ;;
  *StartedAt*) echo 1970-01-01T00:00:09.000000000Z ;;
  *) echo running ;;
esac
"""
A, B = "wbsaleshub:staging-aaaaaaaaaaaa", "wbsaleshub:staging-bbbbbbbbbbbb"


def record(image: str, end_ms: int, result: str = "succeeded", log: str = "") -> str:
    log = log or f"{image}/log"
    return (f'{{"hub": "wbsaleshub", "stack": "staging", "image": "{image}", "end_ms": {end_ms}, '
            f'"result": "{result}", "attempts": 1, "log": "{log}"}}\n')


@pytest.mark.parametrize("builds, deploys, last", [
    # A, then B, then a revert to A (its image was still there: no build): B is no attempt any more.
    ([record(A, 1000), record(B, 2000)], [], ("", "")),
    # B built after A's container was made, and its deploy failed: the attempt failed.
    ([record(A, 1000), record(B, 4000)], [record(B, 5000, "deploy failed", "/logs/b.log")],
     ("deploy failed", B)),
    # B's build failed after A's container was made.
    ([record(A, 1000), record(B, 4000, "failed")], [], ("failed", B)),
    # B built, its deploy failed; then a revert to A, made anew: nothing since.
    ([record(A, 1000), record(B, 2000)], [record(B, 2500, "deploy failed")], ("", "")),
])
def test_status_last_attempt_is_what_was_tried_since_the_running_container_was_made(tmp_path, builds, deploys, last):
    """LAST_ATTEMPT is the newest build, pull or failed deploy since the running container was made
    (at 3 s here): a build a revert superseded is none, a built image whose deploy failed did not
    succeed."""
    home = tmp_path / "home"
    (home / ".workhub" / "proxy" / "wbsaleshub-staging").mkdir(parents=True)
    (home / ".workhub" / "proxy" / "wbsaleshub-staging" / "haproxy.cfg").write_text(LIVE_MARK + "blue\n")
    (home / ".workhub" / "builds.jsonl").write_text("".join(builds))
    if deploys:
        (home / ".workhub" / "deploys.jsonl").write_text("".join(deploys))
    bin_dir = stand_in_docker(tmp_path, STATUS_DOCKER)
    done = subprocess.run(["bash", "-c", status_script("staging", [HUB], {"wbsaleshub": 1}, "127.0.0.1")],
                          capture_output=True, text=True, check=True, timeout=30,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "RUNNING": A,
                               "CREATED": "1970-01-01T00:00:03.000000000Z"})
    row = json.loads(done.stdout)
    assert (row["image"], row["build"], row["log"]) == (A, "succeeded", f"{A}/log")
    assert (row["last_attempt"], row["last_image"]) == last, row
    if last[0] == "deploy failed":
        assert row["last_log"] == "/logs/b.log"


def test_destroy_removes_every_image_of_the_hub_in_the_stack_and_its_context_uploads(tmp_path):
    bin_dir = stand_in_docker(tmp_path, LISTING_DOCKER)
    (tmp_path / "images").write_text("\n".join([
        IMAGE, "wbsaleshub:staging-aaaaaaaaaaaa", "wbsaleshub:staging-x-bbbbbbbbbbbb", "wbsaleshub:production-cccccccccccc",
        "wbsaleshub:staging-latest"]) + "\n")
    build_dir = tmp_path / ".workhub" / "builds" / "wbsaleshub-staging-aaaaaaaaaaaa"
    (build_dir / "context").mkdir(parents=True)
    (build_dir / "log").write_text("built\n")
    upload = tmp_path / ".workhub" / "contexts" / "staging" / "wbsaleshub"
    upload.mkdir(parents=True)
    subprocess.run(["bash", "-c", remove_image_script(HUB, "staging", IMAGE)], check=True,
                   env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "FAKE": str(tmp_path)})
    removed = (tmp_path / "removed").read_text().split()
    assert sorted(set(removed)) == sorted([IMAGE, "wbsaleshub:staging-aaaaaaaaaaaa"]), "exactly this stack's"
    assert not upload.exists() and not (build_dir / "context").exists()
    assert (build_dir / "log").read_text() == "built\n", "the build log stays"


def test_the_image_the_hub_serves_from_stays_when_its_build_goes(tmp_path):
    """A hub pinned to an earlier image of its stack serves from it; the build's removal, which that
    pin brings, keeps it, even where Docker would untag it (another stack's tag on the same image)."""
    bin_dir = stand_in_docker(tmp_path, LISTING_DOCKER)
    pinned = "wbsaleshub:staging-aaaaaaaaaaaa"
    (tmp_path / "images").write_text("\n".join([IMAGE, pinned]) + "\n")
    proxy = tmp_path / ".workhub" / "proxy" / "wbsaleshub-staging"
    proxy.mkdir(parents=True)
    (proxy / "haproxy.cfg").write_text(f"global\n{LIVE_MARK}blue\n")
    (tmp_path / "container-wbsaleshub-staging-blue").write_text(pinned + "\n")
    done = subprocess.run(["bash", "-c", remove_image_script(HUB, "staging", IMAGE)], check=True, capture_output=True,
                          text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "FAKE": str(tmp_path)})
    assert set((tmp_path / "removed").read_text().split()) == {IMAGE}
    assert f"remove: kept image {pinned}: wbsaleshub serves from it" in done.stderr


# Answers `docker volume inspect NAME` from the files in $FAKE, makes one for `docker volume create`,
# and logs every call.
VOLUME_DOCKER = r"""#!/bin/bash
printf '%s\n' "$*" >>"$FAKE/calls"
case "$1 $2" in
  "volume inspect") [ -e "$FAKE/volume-$3" ] ;;
  "volume create") name=${!#}; : >"$FAKE/volume-$name" ;;
  *) exit 2 ;;
esac
"""


def run_volume_script(tmp_path: Path, text: str, existing: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "docker").write_text(VOLUME_DOCKER)
    (fake / "bin" / "docker").chmod(0o755)
    if existing:
        (fake / "volume-workhub-staging-wbsaleshub-data").write_text("its data\n")
    done = subprocess.run(["bash", "-s"], input=text, text=True, capture_output=True,
                          env={"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "FAKE": str(fake)})
    return done, (fake / "calls").read_text().splitlines()


def test_a_hubs_volume_resource_adopts_a_volume_that_is_there_and_makes_one_that_is_not(tmp_path):
    """The volume's command never empties or replaces a volume: one that is there is only inspected
    (its data as it is); one that is not is made with the labels the deploy gives its volumes."""
    done, calls = run_volume_script(tmp_path / "there", volume_script(HUB, "staging", "data"), existing=True)
    assert done.returncode == 0 and done.stdout == '{"volume": "workhub-staging-wbsaleshub-data"}\n'
    assert calls == ["volume inspect workhub-staging-wbsaleshub-data"]
    assert "is on the host: it is this stack's, with its data as it is" in done.stderr
    assert (tmp_path / "there" / "fake" / "volume-workhub-staging-wbsaleshub-data").read_text() == "its data\n"

    done, calls = run_volume_script(tmp_path / "new", volume_script(HUB, "staging", "data"), existing=False)
    assert done.returncode == 0 and "volume: created workhub-staging-wbsaleshub-data" in done.stderr
    assert calls[1] == ("volume create --label workhub.stack=staging --label workhub.hub=wbsaleshub --label "
                        "workhub.volume=data workhub-staging-wbsaleshub-data")
    _, calls = run_volume_script(tmp_path / "swarm", volume_script(HUB, "staging", "data", "workhub-staging"),
                                 existing=False)
    assert calls[1].endswith("--label com.docker.stack.namespace=workhub-staging workhub-staging-wbsaleshub-data")


def test_a_volumes_check_finds_it_gone_and_nothing_when_it_is_there(tmp_path):
    done, _ = run_volume_script(tmp_path / "there", volume_check_script(HUB, "staging", "data"), existing=True)
    assert (done.returncode, done.stdout) == (0, "")
    done, _ = run_volume_script(tmp_path / "gone", volume_check_script(HUB, "staging", "data"), existing=False)
    assert done.stdout == "drift: the volume workhub-staging-wbsaleshub-data is gone from the host\n"


def test_helper_containers_run_with_no_more_power_than_each_needs():
    """Every helper container of the deploy and the backup runs the helper image with no network and
    no new privileges; as root only with the capabilities named (the walk that changes owners, the
    backup that reads), otherwise as the hub's uid with none."""
    import re

    from components.config.models import run_uid

    uid = run_uid(HUB, "staging")
    runs = [re.sub(r"\\\n\s*", "", line) for text in (run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING),
                                                       backup_script("v", "busybox:1.37"))
            for line in re.findall(r"docker run (?:[^\n]*\\\n)*[^\n]*", text)]
    assert len(runs) == 4, runs  # reown, the copy in, its listing; the backup
    for run in runs:
        assert "--network none" in run and "no-new-privileges" in run and '"$helper_image"' in run, run
        if "--user 0" in run:
            assert "--cap-drop ALL --cap-add" in run, run
        else:
            assert '--user "$uid:$uid" --cap-drop ALL' in run and "--cap-add" not in run, run
    assert f"\nuid={uid}\n" in run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING)


def test_the_move_from_before_the_proxy_keeps_the_old_container_and_counts_only_a_verified_copy():
    """The container from before the proxy is renamed and kept, never removed; a volume is recorded
    as its copy only after the listings compare, and a failed copy restarts it."""
    text = run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING)
    assert 'docker rm "$legacy"' not in text and "2>/dev/null; then" not in text
    assert 'docker rename "$legacy" "$kept"' in text
    seed = text[text.index("\nseed() {"):text.index("\nseeding=false")]
    assert seed.index('cmp -s "$work/source.list" "$work/volume.list"') < seed.index('mv "$seeded_dir/$volume.tmp"')
    failed = text[text.index("\nseed_failed() {"):text.index("\n}", text.index("\nseed_failed() {"))]
    assert 'docker volume rm "$1"' in failed and 'docker start "$legacy"' in failed
