"""`scripts/test -n 2 --dist loadgroup` (tests/e2e_fixtures.py): the end-to-end tests on the Swarm
test bed run in one worker, those on the side host in one worker, the other end-to-end tests in one
worker apart from both, unit tests anywhere."""

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SAMPLE = '''
import os
import pytest


@pytest.fixture
def bed():
    return "bed"


@pytest.mark.e2e
@pytest.mark.parametrize("n", range(5))
def test_on_the_bed(bed, n):
    assert 0, "swarm-bed on " + os.environ["PYTEST_XDIST_WORKER"]


@pytest.fixture(scope="module")
def beside_the_one_host():
    return "side"


@pytest.mark.e2e
@pytest.mark.parametrize("n", range(5))
def test_on_the_side_host(beside_the_one_host, n):
    assert 0, "side-host on " + os.environ["PYTEST_XDIST_WORKER"]


@pytest.mark.e2e
@pytest.mark.parametrize("n", range(10))  # the largest group, as the one-host tests are
def test_on_the_host(n):
    assert 0, "one-host on " + os.environ["PYTEST_XDIST_WORKER"]


@pytest.mark.parametrize("n", range(5))
def test_unit(n):
    assert 0, "unit on " + os.environ["PYTEST_XDIST_WORKER"]
'''


def outside_any_run() -> dict:
    """This process's environment without what an xdist worker running this test sets (a nested run
    would otherwise take itself for a worker of ours and write its groups to our run's file)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_XDIST_", "PYTEST_ADDOPTS"))}
    return {**env, "COLUMNS": "300"}


def test_each_group_runs_in_one_worker(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    e2e: end to end\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                           "-p", "tests.e2e_fixtures", "--rootdir", str(tmp_path), "-q", "-rf",
                           str(tmp_path / "test_sample.py")], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=outside_any_run())
    ran = collections.defaultdict(list)
    for kind, worker in re.findall(r"^FAILED .* - AssertionError: (\S+) on (gw\d)$", done.stdout, re.M):
        ran[kind].append(worker)
    assert {kind: len(workers) for kind, workers in ran.items()} == {"swarm-bed": 5, "side-host": 5, "one-host": 10,
                                                                     "unit": 5}, done.stdout[-3000:]
    assert all(len(set(ran[group])) == 1 for group in ("swarm-bed", "side-host", "one-host")), dict(ran)
    assert ran["one-host"][0] not in ran["swarm-bed"] + ran["side-host"], \
        "the one-host tests have a worker of their own"
