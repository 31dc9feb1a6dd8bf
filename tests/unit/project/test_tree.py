"""Tests mirror the tree: every end-to-end test (marker `e2e`) lives under tests/e2e/, and nothing
else does, so `tests/unit` is the fast suite and `tests/e2e` the one that needs the test host."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("folder, marker", [("tests/unit", "e2e"), ("tests/e2e", "not e2e")])
def test_each_folder_holds_only_its_kind_of_test(folder, marker):
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", marker, folder], cwd=REPO, capture_output=True, text=True, timeout=300)
    stray = [line for line in done.stdout.splitlines() if "::" in line]
    assert done.returncode == 5 and not stray, (f"{folder} holds tests marked '{marker}' (move them, or mark "
                                                f"them): {stray or done.stdout[-2000:]}")
