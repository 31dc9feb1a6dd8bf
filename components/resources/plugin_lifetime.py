"""The engine's plugins (the dynamic provider that runs workhub's commands, the policy pack) end
with the engine that started them.

The Pulumi CLI starts a plugin in a process group of its own, the dynamic provider through a
shell script. An `up` killed with SIGKILL (a CI runner dying, a laptop closing) takes the engine,
but would leave its plugins running, the provider holding its SSH session to the host open.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def _parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def end_with_the_engine() -> None:
    """Exit this process once its parent, or its parent's parent, is gone (the engine is one of them:
    the provider's parent is the shell script the engine ran, the policy pack's the engine itself).
    A thread polls /proc once a second; Linux's PR_SET_PDEATHSIG would follow only the parent, and
    fires when the thread that started the process ends, which in the Go engine is any thread."""
    parent = os.getppid()
    grandparent = _parent_of(parent)

    def watch() -> None:
        while os.getppid() == parent and _parent_of(parent) == grandparent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="workhub-engine-watch", daemon=True).start()
