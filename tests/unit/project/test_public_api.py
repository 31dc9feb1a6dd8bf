"""workhub uses Pulumi's public API only: no private module, name or attribute of the SDK (a name
with a leading underscore), which a new SDK may change without notice. The few places that truly
have no public way are listed here, each with why; a new one fails this test until it is listed."""

from __future__ import annotations

import re
from pathlib import Path

import pulumi
from pulumi import automation as auto

REPO = Path(__file__).resolve().parents[3]
SOURCES = ("components", "workhub", "policy", "tools")
# `pulumi.x._y`, `pulumi_policy._x`, and `from pulumi... import _x`.
PRIVATE = re.compile(r"\bpulumi(?:_[a-z]+)?(?:\.[A-Za-z0-9_]+)*\._[A-Za-z0-9_]*"
                     r"|\bfrom\s+pulumi[\w.]*\s+import\s+\(?[^\n)]*?\b_[A-Za-z0-9_]+")
LISTED = {
    ("components/resources/command.py", "pulumi.dynamic.__main__"):
        "not an access but a module's name: the dynamic provider's process runs `python -m pulumi.dynamic`, "
        "and its __main__ module's name is how command.py knows it runs there",
}


def private_uses() -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            for match in PRIVATE.finditer(path.read_text()):
                key = (str(path.relative_to(REPO)), match.group(0))
                found[key] = found.get(key, 0) + 1
    return found


def test_no_private_pulumi_api_but_the_listed_ones():
    unlisted = sorted(f"{path}: {text}" for path, text in private_uses() if (path, text) not in LISTED)
    assert not unlisted, ("private Pulumi API (a new SDK may change it without notice); use the public one, "
                          "or list it in tests/unit/project/test_public_api.py with why there is none:\n  " + "\n  ".join(unlisted))
    stale = sorted(f"{path}: {text}" for path, text in LISTED if (path, text) not in private_uses())
    assert not stale, "listed but no longer used (take it off the list): " + ", ".join(stale)


def test_the_pattern_finds_private_access_and_imports():
    for text in ("from pulumi.automation._stack import StackInitMode", "pulumi.runtime.config._SECRET_KEYS.get()",
                 "from pulumi.runtime.sync_await import _sync_await", "import pulumi.automation._cmd",
                 "from pulumi.runtime import config, _sync", "pulumi_policy._private"):
        assert PRIVATE.search(text), text
    for text in ("from pulumi.runtime import is_config_secret", "pulumi.runtime.is_config_secret(key)",
                 "auto.Stack.select(name, workspace)", "pulumi_policy.proxy"):
        assert not PRIVATE.search(text), text


def test_the_public_api_workhub_relies_on_is_there():
    """What replaced private access: if the SDK drops or renames one, this says which."""
    assert callable(pulumi.runtime.is_config_secret)
    assert callable(pulumi.runtime.config.get_config_env) and isinstance(pulumi.runtime.config.CONFIG.get(), dict)
    # Stack.select asks the workspace to select the stack; the engine's KnownStackWorkspace answers
    # without a CLI run for a stack known to exist.
    assert callable(auto.Stack.select) and callable(auto.LocalWorkspace.select_stack)
    assert callable(auto.LocalWorkspace.export_stack) and callable(auto.LocalWorkspace.stack_outputs)


def test_a_known_stack_is_selected_without_a_cli_run(monkeypatch):
    """Stack.select on the engine's KnownStackWorkspace: no `pulumi stack select` (the SDK's Stack
    calls the workspace's select_stack; if it stops doing so, this fails)."""
    from workhub.engine import KnownStackWorkspace

    selected: list[str] = []
    monkeypatch.setattr(auto.LocalWorkspace, "select_stack", lambda self, name: selected.append(name))
    workspace = object.__new__(KnownStackWorkspace)  # no CLI: only its select_stack is asked
    stack = auto.Stack.select("local", workspace)
    assert (stack.name, stack.workspace, selected) == ("local", workspace, [])
    auto.Stack.select("local", object.__new__(auto.LocalWorkspace))
    assert selected == ["local"], "the SDK's Stack selects through its workspace"
