"""Shared fixtures. End-to-end fixtures live in tests/e2e_fixtures.py."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

pytest_plugins = ["tests.e2e_fixtures", "tests.mock_state"]
