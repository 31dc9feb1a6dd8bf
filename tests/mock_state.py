"""What the program reads of the stacks' state (components.program.StackState), stood in for in the
tests that run it under Pulumi's mocks, where no CLI answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import pytest

from components.resources.host.stack_key import DYNAMIC, NAME


class FakeStackState:
    """A stack with nothing in its state yet (its key is made now) unless `key` is set; `hubs` is
    the `hubs` output of any stack it promotes from."""

    key: Optional[str] = None
    hubs: Mapping[str, Any] = {}
    read: list[str] = []
    """What was read, in order (`state of <stack>`, `outputs of <stack>`)."""

    def __init__(self, project_dir: Path, env: Optional[Mapping[str, str]] = None):
        pass

    def deployment(self, stack: str) -> Optional[Mapping[str, Any]]:
        self.read.append(f"state of {stack}")
        if self.key is None:
            return None
        urn = f"urn:pulumi:{stack}::workhub::{DYNAMIC}::{NAME}"
        return {"resources": [{"urn": urn, "type": DYNAMIC, "outputs": {"key": self.key}}]}

    def outputs(self, stack: str) -> dict[str, Any]:
        self.read.append(f"outputs of {stack}")
        return {"hubs": dict(self.hubs)}


@pytest.fixture
def stack_state(monkeypatch) -> type[FakeStackState]:
    """The program reads a FakeStackState; set its class attributes `key` and `hubs` to give it one."""
    state = type("StackState", (FakeStackState,), {"key": None, "hubs": {}, "read": []})
    monkeypatch.setattr("components.program.StackState", state)
    return state
