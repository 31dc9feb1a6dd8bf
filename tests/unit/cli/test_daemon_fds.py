"""The test hosts' daemons hold none of their starter's file descriptors (scripts/lib/daemon.sh): a
daemon started inside `flock LOCK ...` (as every e2e run is) must not keep LOCK held once that run
ends, or every later run waits for it for the daemon's whole life."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

DAEMON_SH = Path(__file__).resolve().parents[3] / "scripts" / "lib" / "daemon.sh"

START = r"""
source "$1"
exec 7>"$2.other"
( {close} exec sleep 30 ) >/dev/null 2>&1 </dev/null &
echo $!
"""


def start_under_flock(tmp_path: Path, close: bool) -> tuple[Path, int]:
    lock = tmp_path / "lock"
    body = START.replace("{close}", "close_inherited_fds &&" if close else "")
    out = subprocess.run(["flock", str(lock), "bash", "-c", body, "start", str(DAEMON_SH), str(lock)],
                         capture_output=True, text=True, check=True, timeout=30)
    return lock, int(out.stdout.strip())


def open_files(pid: int) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    return sorted(str(fd.readlink()) for fd in fds.iterdir() if int(fd.name) > 2)


@pytest.mark.parametrize("close", [True, False], ids=["closed", "inherited"])
def test_a_daemon_started_under_flock_leaves_the_lock_free(tmp_path, close):
    lock, pid = start_under_flock(tmp_path, close)
    try:
        free = subprocess.run(["flock", "--nonblock", str(lock), "true"], timeout=30).returncode == 0
        # Without close_inherited_fds the daemon keeps the lock (and every other descriptor): the
        # test's own check that it can tell the difference.
        assert free is close
        assert (open_files(pid) == []) is close
    finally:
        subprocess.run(["kill", str(pid)], check=False)
