"""workhub as it was before its modules moved into layer folders (issue #21), taken from the
repository's own history: the state-compatibility tests deploy with it, or unpickle what it wrote.

A stack's state holds each dynamic resource's provider pickled by its module path
(`components.remote.RemoteCommandProvider`, ...): stacks deployed before the move hold these paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

BEFORE_THE_MOVE = "ef26a9d"
"""main's head before any module of components/ moved into the layer folders (issue #21)."""


def tree_before_the_move(into: Path) -> Path:
    """The whole tree of BEFORE_THE_MOVE, written into the new directory `into`; a clear failure when
    this clone does not hold that commit (a shallow clone)."""
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{BEFORE_THE_MOVE}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.fail(f"the state-compatibility tests deploy with commit {BEFORE_THE_MOVE} (workhub before the layer "
                    f"move), which the history of {REPO} does not hold ({found.stderr.strip()}); they need the "
                    "repository's full history: `git fetch --unshallow`, or a clone without --depth", pytrace=False)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", BEFORE_THE_MOVE],
                             capture_output=True, check=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


@pytest.fixture(scope="session")
def before_the_move(tmp_path_factory) -> Path:
    """The tree of BEFORE_THE_MOVE, once per test session."""
    return tree_before_the_move(tmp_path_factory.mktemp("before-the-move") / "workhub")
