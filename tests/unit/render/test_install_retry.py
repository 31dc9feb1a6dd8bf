"""The install's own retry (components.render.host.build.install_retry), run as a hub Dockerfile's install step
runs it, `eval "$WORKHUB_RETRY" npm ci` under the shells the base images have (dash, busybox ash),
against a stand-in `npm` that plays a scripted outcome per call: a try that fails from the network
runs again at once in the same step; any other failure ends it at once; a try that stored new
packages in the npm cache is free, the others use up `installTries`, and `installMaxTries` ends it.
The build runner's side (no new build try): tests/unit/render/test_build_runner.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.config.models import BuildSettings
from components.render.host.build import _FILL_CACHE, _STOP_AT_CUT, NOT_NETWORK, install_retry

# A stand-in npm: each call runs the next line of $FAKE/npm-steps as shell code and notes its
# arguments in $FAKE/npm-calls; `store` puts one new file in the npm cache's content store, as a
# download that arrived whole does.
FAKE_NPM = r"""#!/bin/sh
printf '%s\n' "$*" >>"$FAKE/npm-calls"
printf '%s|%s|%s\n' "${NODE_OPTIONS:-}" "${WR_NODE_OPTIONS:-}" "${NPM_CONFIG_PREFER_OFFLINE:-}" >>"$FAKE/npm-env"
store() {
  c="$HOME/.npm/_cacache/content-v2/sha512"; mkdir -p "$c"
  touch "$c/$(wc -l <"$FAKE/npm-calls" | tr -d ' ')-$(ls "$c" | wc -l | tr -d ' ')"
}
step=$(sed -n 1p "$FAKE/npm-steps")
[ -n "$step" ] || { echo "unexpected npm call: no step left"; exit 99; }
sed -i 1d "$FAKE/npm-steps"
eval "$step"
"""
# A stand-in node: notes its arguments after the script (`node -e SCRIPT NPM ARGS...`: the cache
# fill's, NPM as its base name) in $FAKE/node-calls; $FAKE/fill is run as its work.
FAKE_NODE = r"""#!/bin/sh
shift 2
npm=$1; shift
printf '%s %s\n' "${npm##*/}" "$*" >>"$FAKE/node-calls"
if [ -f "$FAKE/fill" ]; then . "$FAKE/fill"; fi
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

    def run(npm_steps: list[str], build: BuildSettings | None = settings(), command: str = "npm ci",
            node: bool = True, fill: str = "", env_extra: dict[str, str] | None = None) -> Step:
        here = Path(tempfile.mkdtemp(dir=tmp_path))  # a test may run the step more than once
        fake = here / "fake"
        (fake / "bin").mkdir(parents=True)
        (here / "root").mkdir()
        for name, text in (("npm", FAKE_NPM), ("node", FAKE_NODE)) if node else (("npm", FAKE_NPM),):
            (fake / "bin" / name).write_text(text)
            (fake / "bin" / name).chmod(0o755)
        (fake / "npm-steps").write_text("".join(f"{s}\n" for s in npm_steps))
        if fill:
            (fake / "fill").write_text(fill + "\n")
        # Only the stand-ins and the shell's tools: no real node (or npm) on the PATH.
        tools = fake / "tools"
        tools.mkdir()
        for tool in ("find", "wc", "tee", "cat", "grep", "mktemp", "rm", "mkdir", "touch", "ls", "sed", "tr", "env"):
            (tools / tool).symlink_to(shutil.which(tool))
        env = {"PATH": f"{fake / 'bin'}:{tools}", "HOME": str(here / "root"), "FAKE": str(fake),
               **(env_extra or {})}
        if build is not None:
            env["WORKHUB_RETRY"] = install_retry(build)
        shell = [shutil.which("busybox"), "sh"] if request.param == "busybox" else [shutil.which(request.param)]
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


# The cache fill (build.installFillCache, on by default): after a try that failed from the network,
# node runs the fill with npm's path, the try budget and the install's npm words; the next try
# installs with prefer-offline. The first try of `npm ci` has the stop-at-cut script preloaded, the
# NODE_OPTIONS it had kept for npm's own children.
STORE_ALL = 'c="$HOME/.npm/_cacache/content-v2/sha512"; mkdir -p "$c"; touch "$c/filled-1" "$c/filled-2"'


def test_after_a_cut_the_fill_runs_and_the_next_try_installs_from_the_cache(step):
    done = step([CUT_ALONE, OK], fill=STORE_ALL, env_extra={"NODE_OPTIONS": "--max-old-space-size=512"})
    assert done.code == 0
    assert done.notes("node-calls") == ["npm 10 ci"], "npm's path, installMaxTries, the npm words"
    first, second = done.notes("npm-env")
    assert first.startswith("--max-old-space-size=512 --require=") and first.endswith("/stop.js|--max-old-space-size=512|")
    assert second.endswith("|true"), "after the fill, the next try prefers the cache"
    assert "try 1 of npm ci failed from the network; it stored 2 new files in the npm cache, so it is free" in done.out, \
        "what the fill stored counts as the try's progress: no pause, no budget"
    assert done.notes("pauses") == []


def test_the_fill_gets_the_installs_own_npm_words(step):
    done = step([CUT, OK], command="npm --prefix frontend ci --omit=dev")
    assert done.code == 0 and done.notes("node-calls") == ["npm 10 --prefix frontend ci --omit=dev"]
    assert done.notes("npm-calls") == ["--prefix frontend ci --omit=dev"] * 2, "the command is run as written again"


def test_no_fill_after_a_success_or_an_error_not_from_the_network_nor_after_the_last_try(step):
    assert step([OK]).notes("node-calls") == []
    assert step([OUT_OF_SYNC]).notes("node-calls") == []


def test_no_fill_after_the_last_try(step):
    done = step([CUT, CUT], settings(max_tries=2))
    assert done.code == 1 and done.notes("node-calls") == ["npm 2 ci"], "only between tries"


def test_without_node_or_with_the_fill_off_the_retry_is_as_before(step):
    for done in (step([CUT, OK], node=False), step([CUT, OK], BuildSettings(installFillCache=False))):
        assert done.code == 0 and done.notes("npm-calls") == ["ci", "ci"]
        assert done.notes("node-calls") == []
        assert [line.split("|")[0] for line in done.notes("npm-env")] == ["", ""], "no script preloaded"


def test_a_command_that_is_not_npm_gets_no_fill(step):
    done = step([CUT, OK], command="env npm ci")
    assert done.code == 0 and done.notes("node-calls") == []


def test_the_fill_scripts_are_quoted_settings_and_only_with_the_fill_on():
    on, off = install_retry(BuildSettings()), install_retry(BuildSettings(installFillCache=False))
    assert "\n" not in on
    assert "; wr_fill=true; wr_stop_js='" in on and "; wr_fill_js='" in on
    assert "; wr_fill=false; " in off and "wr_stop_js=" not in off and "wr_fill_js=" not in off
    assert "'" not in _STOP_AT_CUT + _FILL_CACHE, "single-quoted as they are, so no quote in them"
    # the stop script acts only in npm's own process, only for npm ci, only on a tarball's body
    assert 'realpathSync(process.argv[1] || "/")' in _STOP_AT_CUT and '["ci", "clean-install", "ic", "install-clean"]' in _STOP_AT_CUT
    assert 'req.method === "GET"' in _STOP_AT_CUT and r"/\/-\/[^/?]+\.tgz(\?|$)/" in _STOP_AT_CUT
    assert 'process.env.NODE_OPTIONS = process.env.WR_NODE_OPTIONS || ""' in _STOP_AT_CUT
    # the fill uses npm's own modules and config, skips what npm ci skips, tries each download apart
    assert 'need("pacote")' in _FILL_CACHE and "await npm.load()" in _FILL_CACHE
    assert "checks.checkPlatform" in _FILL_CACHE and "omit.has(kind)" in _FILL_CACHE
    assert "if (n >= Number(tries))" in _FILL_CACHE and "length: 16" in _FILL_CACHE
