"""Shared fixtures. End-to-end fixtures live in tests/e2e_fixtures.py."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

pytest_plugins = ["tests.e2e_fixtures", "tests.swarm_bed", "tests.mock_state"]


@pytest.fixture(autouse=True)
def _umask_kept():
    """The CLI's main() makes the process's files private (umask 077) and leaves it so, as a CLI may;
    a test that calls it must not change the files every later test makes."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)
