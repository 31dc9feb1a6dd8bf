"""The install's own retry (components.scripts.install_retry), run as a hub Dockerfile's install step
runs it, `eval "$WORKHUB_RETRY" npm ci` under the shells the base images have (dash, busybox ash),
against a stand-in `npm` that plays a scripted outcome per call: a try that fails from the network
runs again at once in the same step; any other failure ends it at once; a try that stored new
packages in the npm cache is free, the others use up `installTries`, and `installMaxTries` ends it.
The build runner's side (no new build try): tests/test_build_runner.py."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.config import BuildSettings
from components.scripts import NOT_NETWORK, install_retry

# A stand-in npm: each call runs the next line of $FAKE/npm-steps as shell code and notes its
# arguments in $FAKE/npm-calls; `store` puts one new file in the npm cache's content store, as a
# download that arrived whole does.
FAKE_NPM = r"""#!/bin/sh
printf '%s\n' "$*" >>"$FAKE/npm-calls"
store() {
  c="$HOME/.npm/_cacache/content-v2/sha512"; mkdir -p "$c"
  touch "$c/$(wc -l <"$FAKE/npm-calls" | tr -d ' ')-$(ls "$c" | wc -l | tr -d ' ')"
}
step=$(sed -n 1p "$FAKE/npm-steps")
[ -n "$step" ] || { echo "unexpected npm call: no step left"; exit 99; }
sed -i 1d "$FAKE/npm-steps"
eval "$step"
"""
# A stand-in `sleep` (a function: busybox's own applet would win over one on PATH) noting each pause.
FAKE_SLEEP = "sleep() { printf '%s\\n' \"$1\" >>\"$FAKE/pauses\"; }; "

CUT = "store; echo 'npm error code ECONNRESET'; echo 'npm error network aborted'; exit 1"   # others arrived
CUT_ALONE = "echo 'npm error code ECONNRESET'; echo 'npm error network aborted'; exit 1"  # nothing new
OUT_OF_SYNC = ("echo 'npm error code EUSAGE'; echo 'npm error `npm ci` can only install packages when your "
               "package.json and package-lock.json are in sync.'; exit 1")
OK = "store; echo 'added 120 packages in 9s'"

SHELLS = [name for name in ("dash", "busybox") if shutil.which(name)]


@dataclass
class Step:
    code: int
    out: str
    fake: Path

    def notes(self, name: str) -> list[str]:
        path = self.fake / name
        return path.read_text().splitlines() if path.exists() else []


def settings(tries: int = 3, max_tries: int = 10, backoff: int = 10) -> BuildSettings:
    return BuildSettings(installTries=tries, installMaxTries=max_tries, retryBackoffSeconds=backoff)


@pytest.fixture(params=SHELLS)
def step(request, tmp_path):
    """Runs `eval "$WORKHUB_RETRY" npm ci` with the shell of the parameter, `WORKHUB_RETRY` as
    workhub renders it (None: the build arg not given, as in a plain `docker build`)."""

    def run(npm_steps: list[str], build: BuildSettings | None = settings(), command: str = "npm ci") -> Step:
        fake = tmp_path / "fake"
        (fake / "bin").mkdir(parents=True)
        (tmp_path / "root").mkdir()
        (fake / "bin" / "npm").write_text(FAKE_NPM)
        (fake / "bin" / "npm").chmod(0o755)
        (fake / "npm-steps").write_text("".join(f"{s}\n" for s in npm_steps))
        env = {"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "root"), "FAKE": str(fake)}
        if build is not None:
            env["WORKHUB_RETRY"] = install_retry(build)
        shell = ["busybox", "sh"] if request.param == "busybox" else [request.param]
        done = subprocess.run([*shell, "-c", FAKE_SLEEP + f'eval "$WORKHUB_RETRY" {command}'], env=env, capture_output=True,
                              text=True, timeout=20)
        assert done.stderr == "", done.stderr
        return Step(done.returncode, done.stdout, fake)

    return run


def test_a_cut_download_is_fetched_again_in_the_same_step_at_once(step):
    done = step([CUT, OK])
    assert done.code == 0
    assert done.notes("npm-calls") == ["ci", "ci"]
    assert ("workhub: try 1 of npm ci failed from the network; it stored 1 new files in the npm cache, so it is "
            "free; trying again in 0 s") in done.out
    assert done.notes("pauses") == [], "a try that made progress is tried again without a pause"
    assert done.out.rstrip().endswith("added 120 packages in 9s"), "npm's own output streams through"


def test_the_command_and_its_folder_are_run_as_written(step):
    done = step([CUT, OK], command="npm --prefix frontend ci --omit=dev")
    assert done.code == 0 and done.notes("npm-calls") == ["--prefix frontend ci --omit=dev"] * 2


def test_an_error_not_from_the_network_fails_at_once(step):
    done = step([OUT_OF_SYNC, OK])
    assert done.code == 1 and done.notes("npm-calls") == ["ci"]
    assert f"workhub: npm ci failed (exit code 1), {NOT_NETWORK}" in done.out
    assert len(done.notes("npm-steps")) == 1, "the second try was never played"


def test_after_a_network_failure_the_next_error_still_ends_it(step):
    done = step([CUT, "echo 'src/a.ts(1,1): error TS2322'; exit 2", OK])
    assert done.code == 2 and done.notes("npm-calls") == ["ci", "ci"]
    assert f"workhub: npm ci failed (exit code 2), {NOT_NETWORK}" in done.out


def test_tries_without_progress_use_up_the_budget_with_a_growing_pause(step):
    done = step([CUT_ALONE] * 4, settings(tries=3, backoff=10))
    assert done.code == 1 and done.notes("npm-calls") == ["ci"] * 3
    assert "nothing new fetched (1 of 3 such tries); trying again in 0 s" in done.out
    assert "nothing new fetched (2 of 3 such tries); trying again in 10 s" in done.out
    assert "nothing new fetched (3 of 3 such tries); giving up after 3 tries" in done.out
    assert done.notes("pauses") == ["10"], "the first try without progress is tried again at once"


def test_a_progressing_try_does_not_use_the_budget_but_the_cap_ends_it(step):
    done = step([CUT] * 12, settings(tries=1, max_tries=6))
    assert done.code == 1
    assert done.notes("npm-calls") == ["ci"] * 6, "six tries, although the budget is one try without progress"
    assert "try 5 of npm ci failed from the network; it stored 1 new files" in done.out
    assert "try 6 of npm ci failed from the network; it stored 1 new files in the npm cache, so it is free; " \
           "giving up after 6 tries" in done.out
    assert done.notes("pauses") == []


def test_progress_and_no_progress_mixed(step):
    done = step([CUT, CUT_ALONE, CUT, CUT_ALONE, OK], settings(tries=3))
    assert done.code == 0 and len(done.notes("npm-calls")) == 5
    assert done.notes("pauses") == ["10"]


def test_without_the_build_arg_the_step_is_a_plain_npm_ci(step):
    """A `docker build` without workhub's build args runs the install once, as written."""
    assert step([CUT, OK], build=None).code == 1


def test_the_retry_is_one_line_of_quoted_settings():
    """It travels as a build arg: one line, its settings first, as shell assignments."""
    text = install_retry(settings(tries=2, max_tries=7, backoff=3))
    assert "\n" not in text
    assert text.startswith("wr_tries=2; wr_max=7; wr_pause=3; wr_pattern='ECONNRESET|")
    assert text.endswith("; workhub_retry")
