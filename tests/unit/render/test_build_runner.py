"""The detached build runner's behaviour, run by bash in a temporary home against a stand-in `docker`
that plays a scripted outcome per build call: which failures are tried again (every network error
class `transient()` names) and which fail at once (a compile error, a Dockerfile error), a try still
running at the attempt timeout stopped and tried again, the growing pause, the final failure after
the last attempt, and what reaches the build record and the `status` and `attempts` files."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.config.models import BuildSettings, Hub
from components.render.host.build import build_runner

HUB = Hub(name="wbsaleshub", context="WBSalesHub", port=4091)
STACK = "staging"
BUILD_ID = "0123456789ab"
IMAGE = f"wbsaleshub:{STACK}-{BUILD_ID}"

# A stand-in for the Docker CLI without buildx (so the runner builds with `env DOCKER_BUILDKIT=1
# docker build`): each build runs the next line of $FAKE/steps as its shell code (what it prints,
# how it exits), and logs a line to $FAKE/builds; a build with no step left is an error.
FAKE_DOCKER = r"""#!/usr/bin/env bash
case "$1" in
  buildx) exit 1 ;;
  build)
    printf '%s\n' "$*" >>"$FAKE/builds"
    step=$(sed -n 1p "$FAKE/steps")
    [ -n "$step" ] || { echo "unexpected build: no step left" >&2; exit 99; }
    sed -i 1d "$FAKE/steps"
    eval "$step" ;;
  *) echo "unexpected: docker $*" >&2; exit 2 ;;
esac
"""

# A stand-in `sleep` that only notes how long the runner asked to pause, so the pauses cost no time.
FAKE_SLEEP = r"""#!/usr/bin/env bash
printf '%s\n' "$1" >>"$FAKE/pauses"
"""


def fail(line: str, code: int = 1) -> str:
    """A build step that prints `line` and exits with `code`."""
    return f"echo {shlex.quote(line)}; exit {code}"


def ok(*lines: str) -> str:
    """A build step that prints `lines` and succeeds."""
    return "; ".join(f"echo {shlex.quote(line)}" for line in lines) or "true"


# A try that does not end in time on its own: it notes its pid, then waits longer than a run may take.
HANG = f'echo "$$" >"$FAKE/hung.pid"; exec {shutil.which("sleep")} 30'


@dataclass
class Build:
    """A finished run of the runner: its log, the record it appended, its files, the stand-ins' notes."""

    home: Path
    fake: Path

    @property
    def dir(self) -> Path:
        return self.home / ".workhub" / "builds" / f"{HUB.name}-{STACK}-{BUILD_ID}"

    @property
    def log(self) -> str:
        return (self.dir / "log").read_text()

    def notes(self, name: str) -> list[str]:
        path = self.fake / name
        return path.read_text().splitlines() if path.exists() else []

    @property
    def record(self) -> dict:
        (line,) = (self.home / ".workhub" / "builds.jsonl").read_text().splitlines()
        return json.loads(line)

    def file(self, name: str) -> str:
        return (self.dir / name).read_text()


def settings(attempts: int = 3, backoff: int = 0, attempt_timeout: int | None = None) -> BuildSettings:
    built = BuildSettings(attempts=attempts, retryBackoffSeconds=backoff)
    if attempt_timeout is not None:
        # The config allows 60 s at the least; the runner only reads the value as its
        # `attempt_timeout` variable, so a smaller one is set past validation with model_copy.
        built = built.model_copy(update={"attempt_timeout_seconds": attempt_timeout})
    return built


@pytest.fixture
def run(tmp_path):
    """Runs the runner with bash as the build script starts it (its build dir and context made),
    playing `steps` one build call each; returns the finished Build."""

    def run(steps: list[str], build: BuildSettings = settings(), retry_secret: bool = False) -> Build:
        home, fake = tmp_path / "home", tmp_path / "fake"
        (fake / "bin").mkdir(parents=True, exist_ok=True)
        for name, text in (("docker", FAKE_DOCKER), ("sleep", FAKE_SLEEP)):
            (fake / "bin" / name).write_text(text)
            (fake / "bin" / name).chmod(0o755)
        (fake / "steps").write_text("".join(f"{step}\n" for step in steps))
        done = Build(home, fake)
        (done.dir / "context").mkdir(parents=True)
        (done.dir / "context" / "Dockerfile").write_text("FROM node:20-bookworm-slim\n")
        (done.dir / "run.sh").write_text(build_runner(HUB, STACK, IMAGE, BUILD_ID, build, None,
                                                              retry_secret))
        env = {"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "HOME": str(home), "FAKE": str(fake)}
        finished = subprocess.run(["bash", str(done.dir / "run.sh")], env=env, capture_output=True, text=True,
                                  timeout=20)
        assert finished.returncode == 0 and finished.stdout == finished.stderr == "", finished
        return done

    return run


def assert_result(build: Build, result: str, attempts: int, status: int) -> None:
    """The outcome, as the record, the `attempts` and `status` files and the log's last line say it."""
    assert build.record["result"] == result and build.record["attempts"] == attempts
    assert build.file("attempts") == f"{attempts}\n" and build.file("status") == f"{status}\n"
    assert not (build.dir / "status.tmp").exists()
    assert build.log.splitlines()[-1].startswith(f"build: {result} after {attempts} attempt(s) in ")
    assert len(build.notes("builds")) == attempts
    assert len(build.notes("pauses")) == attempts - 1, "a pause before each try again, none after the last"


# One line for each class of network fault `transient()` names, as npm and BuildKit print them.
NETWORK_ERRORS = [
    "npm ERR! code ECONNRESET",
    "npm ERR! errno ETIMEDOUT",
    "npm ERR! code ESOCKETTIMEDOUT",
    "npm ERR! request to https://registry.invalid/express failed, reason: getaddrinfo EAI_AGAIN registry.invalid",
    "npm ERR! request to http://127.0.0.1:4873/express failed, reason: connect ECONNREFUSED 127.0.0.1:4873",
    "npm ERR! code EPIPE",
    "npm ERR! network socket hang up",
    "npm error network request to https://registry.invalid/x failed",
    "npm ERR! network This is a problem related to network connectivity.",
    "npm error network aborted",
    "npm ERR! code EINTEGRITY",
    "npm ERR! code TAR_BAD_ARCHIVE",
    "npm ERR! TAR_ABORT: zlib: incorrect data check",
    "npm ERR! zlib: unexpected end of file",
    "npm ERR! unexpected end of data",
    "npm ERR! code ERR_SOCKET_TIMEOUT",
    "npm ERR! Premature close",
    "npm ERR! code E503",
    "npm ERR! 500 Internal Server Error - GET https://registry.invalid/express",
    "npm ERR! 502 Bad Gateway - GET https://registry.invalid/express",
    "npm ERR! 503 Service Unavailable - GET https://registry.invalid/express",
    "npm ERR! 504 Gateway Timeout - GET https://registry.invalid/express",
    # A name that did not resolve: BuildKit pulling a FROM image (Go's resolver), npm, apt, curl, wget.
    'ERROR: failed to solve: node:20-alpine: failed to do request: Head "https://registry.invalid/v2/library/node/'
    'manifests/20-alpine": dial tcp: lookup registry.invalid on 127.0.0.11:53: no such host',
    "failed to resolve source metadata for registry.invalid/node:20-alpine: dial tcp: lookup registry.invalid "
    "on 10.0.2.3:53: server misbehaving",
    "dial tcp: lookup registry.invalid on 127.0.0.11:53: read udp 172.17.0.2:40000->127.0.0.11:53: i/o timeout",
    "npm ERR! request to https://registry.invalid/express failed, reason: getaddrinfo ENOTFOUND registry.invalid",
    "socket.gaierror: [Errno -3] Temporary failure in name resolution",
    "W: Failed to fetch http://deb.invalid/dists/bookworm/InRelease  Temporary failure resolving 'deb.invalid'",
    "E: Could not resolve 'deb.invalid'",
    "curl: (6) Could not resolve host: registry.invalid",
    "wget: unable to resolve host address 'registry.invalid'",
]

# Failures no try can fix: a failing compile, and Dockerfile errors (parse, missing file, a failing step).
PERMANENT_ERRORS = [
    "src/server.ts(12,7): error TS2322: Type 'string' is not assignable to type 'number'.",
    "ERROR: failed to solve: dockerfile parse error on line 4: unknown instruction: RUNN",
    'ERROR: failed to solve: failed to compute cache key: "/app/missing.json": not found',
    'ERROR: process "/bin/sh -c npm run build" did not complete successfully: exit code: 2',
]


@pytest.mark.parametrize("error, said, outcome", [
    *[(error, "failed from the network (exit code 1); trying again in 0 s", ("succeeded", 2, 0))
      for error in NETWORK_ERRORS],
    *[(error, "failed (exit code 1), and not from the network: not trying again", ("failed", 1, 1))
      for error in PERMANENT_ERRORS],
])
def test_only_a_failure_from_the_network_is_tried_again(run, error, said, outcome):
    """The first try fails with `error`; a second one would succeed."""
    build = run([fail(error), ok("added 7 packages in 2s")])
    assert f"build: attempt 1 {said}" in build.log
    assert_result(build, *outcome)


def test_a_try_still_running_at_the_attempt_timeout_is_stopped_and_tried_again(run):
    build = run([HANG, ok("added 5 packages in 1s")], settings(attempt_timeout=1))
    assert "build: attempt 1 ran past 1 s and was stopped" in build.log
    assert "build: attempt 1 failed from the network (exit code 124); trying again in 0 s" in build.log
    assert_result(build, "succeeded", 2, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(int(build.notes("hung.pid")[0]), 0)  # the hung try is gone, not left behind


def test_the_pause_grows_with_each_try(run):
    build = run([fail("npm ERR! code ECONNRESET")] * 3 + [ok()], settings(attempts=4, backoff=1))
    for attempt in (1, 2, 3):
        assert (f"build: attempt {attempt} failed from the network (exit code 1); trying again in {attempt} s"
                in build.log)
    assert build.notes("pauses") == ["1", "2", "3"]
    assert_result(build, "succeeded", 4, 0)


def test_the_last_attempts_failure_is_final(run):
    build = run([fail("npm ERR! code ETIMEDOUT", 2)] * 4, settings(attempts=3, backoff=1))
    assert build.notes("pauses") == ["1", "2"]
    assert "attempt 3 failed from the network" not in build.log
    assert_result(build, "failed", 3, 2)
    assert len(build.notes("steps")) == 1, "the fourth step was never played"


def test_the_record_counts_the_packages_added_over_all_attempts(run):
    build = run([ok("#9 [deps 3/4] RUN npm ci", "added 3 packages in 1s") + "; " + fail("npm ERR! code ECONNRESET"),
                 ok("added 40 packages, and audited 41 packages in 3s", "added 2 packages in 1s")])
    record = build.record
    assert record["packages_added"] == 45
    assert {key: record[key] for key in ("hub", "stack", "hash", "image", "result", "attempts", "log")} == {
        "hub": HUB.name, "stack": STACK, "hash": BUILD_ID, "image": IMAGE, "result": "succeeded", "attempts": 2,
        "log": str(build.dir / "log")}
    assert 0 < record["start_ms"] <= record["end_ms"]
    assert (build.dir / "attempt-1.log").read_text().endswith("npm ERR! code ECONNRESET\n")
    assert (build.home / ".workhub" / "build.lock.holder").read_text() == "", "the lock holder is cleared"
    assert_result(build, "succeeded", 2, 0)


# A build step that runs a hub Dockerfile's install as BuildKit would: `eval "$WORKHUB_RETRY" npm ci`
# with the WORKHUB_RETRY build arg the runner passed (from the stand-in docker's own arguments),
# against tests/unit/render/test_install_retry.py's stand-in npm playing $FAKE/npm-steps.
INSTALL_STEP = ('retry=$(printf "%s\\n" "$@" | sed -n "s/^WORKHUB_RETRY=//p"); '
                'WORKHUB_RETRY="$retry" HOME="$FAKE/root" sh -c \'eval "$WORKHUB_RETRY" npm ci\'')


# The same install where the Dockerfile mounts the retry's secret: the file the runner gave as
# `--secret id=workhub-retry,src=FILE` stands at the path WORKHUB_RETRY names, as BuildKit mounts it.
SECRET_INSTALL_STEP = (
    'src=$(printf "%s\\n" "$@" | sed -n "s/^id=workhub-retry,src=//p"); '
    'retry=$(printf "%s\\n" "$@" | sed -n "s/^WORKHUB_RETRY=//p" | sed "s#/run/secrets/workhub-retry#$src#"); '
    'WORKHUB_RETRY="$retry" HOME="$FAKE/root" sh -c \'eval "$WORKHUB_RETRY" npm ci\'')


@pytest.fixture
def run_with_npm(run, tmp_path):
    from tests.unit.render.test_install_retry import FAKE_NPM

    def go(npm_steps: list[str], build_steps: list[str], build: BuildSettings = settings(),
           retry_secret: bool = False) -> Build:
        fake = tmp_path / "fake"
        (fake / "bin").mkdir(parents=True)
        (fake / "bin" / "npm").write_text(FAKE_NPM)
        (fake / "bin" / "npm").chmod(0o755)
        (fake / "npm-steps").write_text("".join(f"{s}\n" for s in npm_steps))
        return run(build_steps, build, retry_secret)

    return go


def test_a_cut_download_is_retried_inside_the_step_without_a_new_build_try(run_with_npm):
    from tests.unit.render.test_install_retry import CUT, OK

    build = run_with_npm([CUT, OK], [INSTALL_STEP])
    assert "workhub: try 1 of npm ci failed from the network; it stored 1 new files" in build.log
    assert "build: attempt 1 failed" not in build.log
    assert (build.fake / "npm-calls").read_text().splitlines() == ["ci", "ci"]
    assert build.notes("pauses") == []
    assert_result(build, "succeeded", 1, 0)


def test_the_retry_given_as_a_secret_runs_inside_the_step_too(run_with_npm):
    """Where the Dockerfile mounts it, the runner gives the retry as a secret file, and the build
    arg that reaches the step's log only names that file."""
    from tests.unit.render.test_install_retry import CUT, OK

    build = run_with_npm([CUT, OK], [SECRET_INSTALL_STEP], retry_secret=True)
    (call,) = build.notes("builds")
    assert "WORKHUB_RETRY=sh /run/secrets/workhub-retry " in call and "wr_pattern" not in call
    assert f"--secret id=workhub-retry,src={build.dir}/install-retry " in call
    assert "workhub: try 1 of npm ci failed from the network; it stored 1 new files" in build.log
    assert (build.fake / "npm-calls").read_text().splitlines() == ["ci", "ci"]
    assert_result(build, "succeeded", 1, 0)


def test_an_install_that_ends_on_a_non_network_error_is_not_tried_again_by_the_runner(run_with_npm):
    """Its log names a network error from its first try, but the last one failed otherwise."""
    from tests.unit.render.test_install_retry import CUT, OUT_OF_SYNC

    build = run_with_npm([CUT, OUT_OF_SYNC, OUT_OF_SYNC], [INSTALL_STEP, INSTALL_STEP])
    assert "build: attempt 1 failed (exit code 1), and not from the network: not trying again" in build.log
    assert_result(build, "failed", 1, 1)


def test_an_install_that_ran_out_of_tries_is_tried_again_by_the_runner(run_with_npm):
    from tests.unit.render.test_install_retry import CUT_ALONE, OK

    build = run_with_npm([CUT_ALONE] * 3 + [OK], [INSTALL_STEP, INSTALL_STEP], settings(attempts=3))
    assert "giving up after 3 tries" in build.log
    assert "build: attempt 1 failed from the network (exit code 1)" in build.log
    assert_result(build, "succeeded", 2, 0)


def test_the_first_error_lines_leave_out_the_install_retrys_text(run_with_npm):
    """BuildKit echoes each step's command with its build args expanded: the retry's pattern holds
    error words, so that line would crowd out npm's own error in the failure's last lines."""
    from tests.unit.render.test_install_retry import OUT_OF_SYNC

    echo = ('retry=$(printf "%s\\n" "$@" | sed -n "s/^WORKHUB_RETRY=//p"); '
            'printf "#9 [4/6] RUN --mount=type=cache eval \\"%s\\" npm ci\\n" "$retry"; ')
    build = run_with_npm([OUT_OF_SYNC], [echo + INSTALL_STEP])
    lines = build.log.split("build: its first error lines:\n", 1)[1].splitlines()
    assert lines[0] == "  npm error code EUSAGE" and not any("wr_pattern" in line for line in lines)
    assert_result(build, "failed", 1, 1)
