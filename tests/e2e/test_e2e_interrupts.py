"""Interrupted deploys recover on their own, on the real test host: a dropped connection reconnects
within the same `up`; a host that stays away fails the `up` saying the build goes on, and the next
`up` adopts it; an `up` killed with SIGKILL leaves no process behind and its dead lock is cleared by
the next one, which attaches; a live lock is never broken."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import build_records, deploy_home, forget_local_images, new_local_stack, records_since
from tests.e2e.test_e2e_faults import HUB, drop_layer_cache, in_background, session_processes, wait_for
from workhub import engine as eng
from workhub import locks
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def running_build(stack: str) -> Path:
    """The build directory of the hub's build once it is running on the host (in its npm install)."""
    builds = deploy_home() / ".workhub" / "builds"
    return wait_for(lambda: next((d for d in builds.glob(f"wbhubmanager-{stack}-*")
                                  if (d / "pid").exists() and not (d / "status").exists()
                                  and "npm ci" in (d / "log").read_text()), None),
                    180, "the detached build to reach npm ci")


def fresh_build(tmp_path, test_host, npm_registry, sources, **overrides):
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources,
                                    overrides=overrides)
    forget_local_images()
    drop_layer_cache()
    return engine, stack


def test_a_dropped_connection_reconnects_and_the_same_up_attaches_to_the_build(
    tmp_path, toolchain, test_host, host_state, npm_registry, sources
):
    engine, stack = fresh_build(tmp_path, test_host, npm_registry, sources)
    before = len(build_records())
    lines: list[str] = []
    try:
        thread, outcome = in_background(lambda: stack.up(on_output=lambda line: (lines.append(line), print_line(line)),
                                                         color="never"))
        run_dir = running_build("e2e")
        for pid in session_processes(host_state):
            os.kill(pid, signal.SIGKILL)
        thread.join(600)
        assert "result" in outcome, outcome.get("error")
        text = "\n".join(lines)
        assert "dropped; connecting again" in text
        assert "attaching to the build of wbhubmanager:e2e-" in text, "the build streamed on, not built again"
        # The engine shows each line as it comes (on its progress lines), then again in its summary.
        streamed = [line for line in lines if "pulumi:pulumi:Stack" in line and "build: attempt 1 of 5: building" in line]
        assert len(streamed) == 1, f"its log goes on from where it was, not from its start: {streamed}"
        (record,) = records_since(before)
        assert record["result"] == "succeeded" and Path(record["log"]).parent == run_dir
    finally:
        stack.destroy(color="never")


def test_a_host_that_stays_away_fails_the_up_saying_the_build_goes_on(
    tmp_path, toolchain, test_host, host_state, npm_registry, sources
):
    engine, stack = fresh_build(tmp_path, test_host, npm_registry, sources,
                                **{"workhub:host.dialErrorLimit": "2", "workhub:host.perDialTimeout": "2"})
    before = len(build_records())
    sshd = host_state / "testhost" / "sshd.pid"
    try:
        thread, outcome = in_background(lambda: stack.up(on_output=print_line, color="never"))
        run_dir = running_build("e2e")
        sessions = session_processes(host_state)
        os.kill(int(sshd.read_text()), signal.SIGTERM)  # the listener first: no new connection
        for pid in sessions:
            os.kill(pid, signal.SIGKILL)
        thread.join(900)
        error = outcome.get("error")
        assert isinstance(error, auto.errors.CommandError), outcome
        message = str(error)
        assert "dropped and could not be made again" in message and "a build keeps building" in message
        assert "run `scripts/workhub up` again: it attaches to what runs there" in message
        wait_for(lambda: (run_dir / "status").exists(), 600, "the build to finish on the host")
        eng.testhost_up(state_dir=host_state)  # sshd back
        again = stack.up(on_output=print_line, color="never")
        assert "adopting the finished build" in again.stdout
        (record,) = records_since(before)
        assert record["result"] == "succeeded"
    finally:
        eng.testhost_up(state_dir=host_state)
        stack.destroy(color="never")


DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from workhub import engine as eng
engine = eng.local_engine(work_dir=Path({work!r}), state_dir=Path({state!r}))
eng.run("up", engine.stack("e2e"))
"""


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


def test_a_killed_up_leaves_nothing_running_and_the_next_one_clears_its_lock_and_attaches(
    tmp_path, toolchain, test_host, host_state, npm_registry, sources
):
    engine, stack = fresh_build(tmp_path, test_host, npm_registry, sources)
    before = len(build_records())
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER.format(
        repo=str(eng.REPO), work=str(engine.work_dir), state=str(tmp_path)))],
        env={**os.environ, **engine.env()}, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        running_build("e2e")
        started = descendants(driver.pid)
        providers = [pid for pid in started if b"pulumi.dynamic" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert providers, "the dynamic provider runs under the up"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
        try:
            wait_for(lambda: not any(alive(pid) for pid in started), 30, "every process of the killed up to end")
        except AssertionError:
            left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200]
                    for pid in started if alive(pid)}
            raise AssertionError(f"processes of the killed up still run: {left}") from None
        wait_for(lambda: not session_processes(host_state), 30, "its SSH sessions to close")

        said: list[str] = []
        locks.prepare(stack, engine.env(), engine.work_dir, engine.backend_url, say=said.append)
        assert any("which no longer runs: clearing the lock (scripts/workhub pulumi cancel)" in line for line in said), said
        assert any("operation(s) unfinished" in line and "they run again now" in line for line in said), said
        again = stack.up(on_output=print_line, color="never")
        assert "attaching to the build" in again.stdout or "adopting the finished build" in again.stdout
        (record,) = records_since(before)
        assert record["result"] == "succeeded"
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        stack.destroy(color="never")


def test_a_second_up_says_who_holds_the_lock_and_leaves_it(tmp_path, toolchain, test_host, npm_registry, sources):
    engine, stack = fresh_build(tmp_path, test_host, npm_registry, sources)
    try:
        thread, outcome = in_background(lambda: stack.up(on_output=print_line, color="never"))
        backend = locks.backend_dir(engine.backend_url)
        project = stack.workspace.project_settings().name
        (held,) = wait_for(lambda: locks.stack_locks(backend, project, "e2e"), 60, "the first up's lock")
        with pytest.raises(locks.LockHeld) as caught:
            locks.prepare(stack, engine.env(), engine.work_dir, engine.backend_url, say=print)
        assert f"is being updated by pid {held.pid} of " in str(caught.value) and "since " in str(caught.value)
        assert held.path.exists(), "the live lock is kept"
        thread.join(600)
        assert "result" in outcome, outcome.get("error")
    finally:
        stack.destroy(color="never")
