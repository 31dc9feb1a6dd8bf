"""An interrupted `up` leaves its stack locked and, often, operations it never finished. Before the
next operation, workhub clears a lock whose process is gone (on this machine: its pid no longer
runs the Pulumi CLI), refuses to touch one held by a live process (it says who holds it and since
when), and lets the operations the interrupted update left run again: workhub's commands attach to
what they started on the host, so nothing runs twice.

Locks of a local file backend are files under `.pulumi/locks/`, written by the CLI with its pid,
user, host and time; a lock of another machine is only broken when asked (`--force-unlock`), since
whether its process lives cannot be known from here.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from pulumi import automation as auto


class LockHeld(Exception):
    """Another operation of the stack runs (or may run): nothing was touched."""


@dataclass(frozen=True)
class Lock:
    path: Path
    pid: int
    user: str
    host: str
    since: str

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    @property
    def alive(self) -> bool:
        """Whether the process that holds it still runs the Pulumi CLI (on this machine)."""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            name = Path(f"/proc/{self.pid}/comm").read_text().strip()
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and name.startswith("pulumi")  # a zombie has ended

    def describe(self) -> str:
        return f"pid {self.pid} of {self.user}@{self.host}, since {self.since} ({self.age()})"

    def age(self) -> str:
        try:
            started = datetime.fromisoformat(self.since.replace("Z", "+00:00"))
        except ValueError:
            return "for an unknown time"
        seconds = int((datetime.now(timezone.utc) - started).total_seconds())
        return f"{seconds // 60} min {seconds % 60} s ago" if seconds >= 60 else f"{seconds} s ago"


def backend_dir(backend_url: Optional[str]) -> Optional[Path]:
    """The directory of a local file backend (`file://...`), None for any other backend."""
    url = backend_url or os.environ.get("PULUMI_BACKEND_URL")
    if not url or not url.startswith("file://"):
        return None
    return Path(urlsplit(url).path or url[len("file://"):]).expanduser()


def stack_locks(backend: Path, project: str, stack: str) -> list[Lock]:
    """The locks the CLI holds on `stack` of `project` in the file backend at `backend`."""
    root = backend / ".pulumi" / "locks"
    found = []
    # <organization>/<project>/<stack>/ in a project-scoped backend, <stack>/ in an older one.
    for path in sorted([*root.glob(f"*/{project}/{stack}/*.json"), *root.glob(f"{stack}/*.json")]):
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found.append(Lock(path, int(content.get("pid") or 0), str(content.get("username") or "?"),
                          str(content.get("hostname") or "?"), str(content.get("timestamp") or "?")))
    return found


def _pulumi(env: dict[str, str], work_dir: Path, *args: str, stdin: Optional[str] = None) -> str:
    return subprocess.run(["pulumi", *args], cwd=work_dir, env={**os.environ, **env}, input=stdin, text=True,
                          capture_output=True, check=True).stdout


def clear_pending_operations(env: dict[str, str], work_dir: Path, stack: str) -> list[str]:
    """Drop the operations an interrupted update left unfinished from the stack's state (exported and
    imported encrypted, as the CLI keeps it); the names of the resources they were for."""
    exported = json.loads(_pulumi(env, work_dir, "stack", "export", "--stack", stack))
    pending = (exported.get("deployment") or {}).get("pending_operations") or []
    if not pending:
        return []
    exported["deployment"]["pending_operations"] = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(exported, file)
    try:
        _pulumi(env, work_dir, "stack", "import", "--stack", stack, "--file", file.name)
    finally:
        os.unlink(file.name)
    return [op.get("resource", {}).get("urn", "?").rsplit("::", 1)[-1] for op in pending]


def recorded_pending(backend: Path, project: str, stack: str) -> Optional[list]:
    """The operations left unfinished in the stack's checkpoint in the file backend at `backend`,
    read from the file itself (the `pending_operations` a `stack export` shows, without running
    the CLI); None when there is no such file to read (then the CLI is asked)."""
    base = backend / ".pulumi" / "stacks" / project / stack
    for path, read in ((Path(f"{base}.json"), Path.read_bytes),
                       (Path(f"{base}.json.gz"), lambda path: gzip.decompress(path.read_bytes()))):
        if path.is_file():
            try:
                checkpoint = json.loads(read(path)).get("checkpoint") or {}
            except (OSError, ValueError):
                return None
            return (checkpoint.get("latest") or {}).get("pending_operations") or []
    return None


def prepare(stack: auto.Stack, env: dict[str, str], work_dir: Path, backend_url: Optional[str],
            force_unlock: bool = False, say: Callable[[str], None] = print) -> None:
    """Make the stack ready for an operation after an interrupted one; raises LockHeld when another
    operation holds it (saying who and since when)."""
    backend = backend_dir(backend_url)
    project = stack.workspace.project_settings().name
    locks = stack_locks(backend, project, stack.name) if backend else []
    for lock in locks:
        if lock.here and lock.alive and not force_unlock:
            raise LockHeld(f"stack {stack.name!r} is being updated by {lock.describe()}; wait for it to finish "
                           "(nothing was touched)")
        if not lock.here and not force_unlock:
            raise LockHeld(f"stack {stack.name!r} is locked by {lock.describe()}, on another machine; if that "
                           "update is gone (a CI runner that died), run this again with --force-unlock")
        why = "which no longer runs" if lock.here else "on another machine, cleared as asked (--force-unlock)"
        say(f"workhub: stack {stack.name!r} was locked by {lock.describe()}, {why}: clearing the lock "
            "(scripts/workhub pulumi cancel)")
        _pulumi(env, work_dir, "cancel", "--yes", "--stack", stack.name)
    if not backend and force_unlock:
        say(f"workhub: clearing the lock of stack {stack.name!r} as asked (scripts/workhub pulumi cancel)")
        subprocess.run(["pulumi", "cancel", "--yes", "--stack", stack.name], cwd=work_dir,
                       env={**os.environ, **env}, capture_output=True, text=True)
    recorded = recorded_pending(backend, project, stack.name) if backend else None
    names = clear_pending_operations(env, work_dir, stack.name) if recorded is None or recorded else []
    if names:
        say(f"workhub: the interrupted update left {len(names)} operation(s) unfinished ({', '.join(names)}); "
            "they run again now, and attach to what they started on the host")
