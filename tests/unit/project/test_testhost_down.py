"""`scripts/testhost.sh down` stops what the deploy user still runs from its test host's SSH sessions
(a detached build runner an interrupted test left), and nothing from another test host's."""

from __future__ import annotations

import getpass
import os
import random
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def detached(port: int) -> subprocess.Popen:
    """A process in a session of its own, as a build runner is, that an SSH session to `port` began."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True,
                            env={**os.environ, "SSH_CONNECTION": f"127.0.0.1 40022 127.0.0.1 {port}"})


def gone(process: subprocess.Popen, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return True
        time.sleep(0.05)
    return False


def test_down_stops_the_sessions_left_on_its_port_only():
    ours, theirs = random.sample(range(20000, 30000), 2)
    left, other = detached(ours), detached(theirs)
    try:
        done = subprocess.run(["bash", "-c", f'source scripts/testhost.sh; SSH_USER={getpass.getuser()}; '
                                             f'stop_sessions_left {ours}'],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert gone(left), "the runner left by this test host's session still runs"
        assert other.poll() is None, "a process of another test host's session was stopped"
        assert f"process groups {left.pid}" in done.stderr
    finally:
        for process in (left, other):
            process.kill()
            process.wait()
