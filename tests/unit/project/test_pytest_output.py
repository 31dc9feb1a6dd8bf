"""What `scripts/test` prints (pytest.ini): a green run a short summary, a failure all it has."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SAMPLE = '''
import logging
import sys


def test_passes_noisily():
    for i in range(200):
        print(f"passing-chatter {i}")
    logging.getLogger("x").warning("passing-log")


def test_fails_with_its_story():
    print("failing-stdout")
    print("failing-stderr", file=sys.stderr)
    logging.getLogger("x").warning("failing-log")
    assert 1 == 2
'''


def _run(tmp_path: Path, *tests: str) -> list[str]:
    shutil.copy(REPO / "pytest.ini", tmp_path / "pytest.ini")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(SAMPLE)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
                           *(f"tests/test_sample.py::{t}" for t in tests)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return done.stdout.splitlines()


def test_a_green_run_prints_a_short_summary_without_the_tests_output(tmp_path):
    lines = _run(tmp_path, "test_passes_noisily")
    assert not [line for line in lines if "passing-chatter" in line or "passing-log" in line]
    assert len(lines) <= 10, "\n".join(lines)
    assert " 1 passed" in lines[-1]


def test_a_failure_keeps_its_captured_output_log_and_summary_line(tmp_path):
    out = "\n".join(_run(tmp_path, "test_passes_noisily", "test_fails_with_its_story"))
    for part in ("failing-stdout", "failing-stderr", "failing-log", "assert 1 == 2",
                 "FAILED tests/test_sample.py::test_fails_with_its_story"):
        assert part in out
    assert "passing-chatter" not in out
