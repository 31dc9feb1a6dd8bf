"""The Swarm test bed (scripts/swarm-testbed.sh) for the whole test run: made once (`up
--hub-images`), given to each module that uses it as `up` left it (`reset`: every node's engine
running, out of any Swarm, with nothing of a test's left), and taken down at the run's end, where
`down` must leave nothing of it on the machine. A pytest plugin (tests/conftest.py), so every module
shares the one bed; under xdist, its tests are one group, in one worker (tests/e2e_fixtures.py)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTBED = REPO / "scripts" / "swarm-testbed.sh"
RUN_DIR = "/run/workhub-swarm"
DATA_TOP = "/var/lib/workhub-swarm"  # the nodes' engine data (scripts/swarm-testbed.sh)


def run_testbed(state: Path, *args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([str(TESTBED), *args], env={**os.environ, "WORKHUB_STATE_DIR": str(state)},
                          capture_output=True, text=True, timeout=600, pass_fds=pass_fds)


def holders(path: Path) -> list[str]:
    """The processes other than this one that hold `path` open: `pid command`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == str(path) for fd in (proc / "fd").iterdir()):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name} {command[:120]}")
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def leftovers(state: Path) -> list[str]:
    """What of the test bed still exists on the machine."""
    found = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in namespaces.splitlines() if line.startswith("workhub-swarm-")]
    if subprocess.run(["ip", "link", "show", "whswarm0"], capture_output=True).returncode == 0:
        found.append("bridge whswarm0")
    with open("/proc/self/mountinfo") as mounts:
        found += [f"mount {line.split()[4]}" for line in mounts
                  if line.split()[4].startswith((RUN_DIR, str(state), DATA_TOP))]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (proc / "cgroup").read_text()
        except OSError:
            continue
        if re.search(r"^State:\s+Z", status, re.M):
            continue  # a zombie is no process; its parent reaps it
        if str(state) in command or RUN_DIR in command or ":/workhub-swarm-" in cgroups:
            found.append(f"process {proc.name}: {command[:120]}")
    if Path(RUN_DIR).exists():
        found.append(f"directory {RUN_DIR}")
    return found


@pytest.fixture(scope="session")
def swarm_testbed(tmp_path_factory):
    """The test bed with the Node base and proxy images in its registry: its env (JSON) and state
    directory. Under pytest's own directory, which only root may enter: the nodes' engines keep their
    data elsewhere (scripts/swarm-testbed.sh), where the deploy user's steps on the build node read
    the free disk, as on a real node. After the run, `down` must leave nothing of it on the machine
    (a failure there is this fixture's error)."""
    state = tmp_path_factory.mktemp("swarm")
    # `up` runs holding a lock, as under `flock LOCK pytest ...`: the daemons it starts must not keep it.
    lock = state / "caller.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = run_testbed(state, "up", "--hub-images", pass_fds=(held.fileno(),))
        state_holders = holders(lock)
    if started.returncode != 0:
        logs = run_testbed(state, "logs").stdout
        run_testbed(state, "down", "--purge")
        pytest.fail(f"the Swarm test bed did not come up:\n{started.stderr[-3000:]}\n{logs[-5000:]}")
    env = json.loads(started.stdout)
    env["lock_holders"] = state_holders
    yield env, state
    assert run_testbed(state, "status").returncode == 0
    stopped = run_testbed(state, "down")
    left = leftovers(state)
    after = run_testbed(state, "status").returncode
    run_testbed(state, "down", "--purge")
    assert stopped.returncode == 0, stopped.stderr
    assert left == [], f"`down` left behind: {left}"
    assert after != 0, "status says the test bed is up after `down`"


def reset_testbed(bed: tuple[dict, Path]) -> tuple[dict, Path]:
    """The shared bed as `up` left it, for the next module (`swarm-testbed.sh reset`)."""
    _, state = bed
    done = run_testbed(state, "reset")
    if done.returncode != 0:
        pytest.fail(f"the Swarm test bed could not be reset:\n{done.stderr[-3000:]}")
    return bed
