"""Fixtures for end-to-end tests: the real Pulumi toolchain, a throwaway SSH + Docker host, and a
`local` stack in a local file backend of its own. Nothing here skips: a missing part is a failure
that says what is missing. When an e2e test fails, the host's sshd and dockerd logs are attached."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from workhub import engine as eng

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def toolchain() -> Path:
    try:
        return eng.ensure_toolchain()
    except (subprocess.CalledProcessError, OSError) as error:
        pytest.fail(f"the Pulumi toolchain could not be made ready ({error}); run scripts/toolchain.sh to see why")


@pytest.fixture(scope="session")
def host_state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp(f"testhost-{RUN_ID}")


@pytest.fixture(scope="session")
def test_host(host_state: Path):
    """The test host for this session: its own keys and sshd port; the Docker engine is shared."""
    try:
        host = eng.testhost_up(state_dir=host_state)
    except subprocess.CalledProcessError as error:
        pytest.fail(f"the SSH + Docker test host did not start ({error}); run scripts/testhost.sh up to see why")
    yield host
    eng.testhost("down", "--purge", state_dir=host_state)


def new_local_stack(tmp_path: Path, host: dict, overrides: dict[str, str] | None = None):
    """A `local` stack in a fresh project directory and file backend, pointed at `host`."""
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(eng.REPO / "Pulumi.yaml", work / "Pulumi.yaml")
    engine = eng.local_engine(work_dir=work, state_dir=tmp_path)
    stack = engine.stack(eng.LOCAL_STACK)
    eng.configure_local(engine, stack, host, overrides or {})
    return engine, stack


@pytest.fixture
def local_stack(tmp_path: Path, toolchain: Path, test_host: dict):
    engine, stack = new_local_stack(tmp_path, test_host)
    yield stack
    # Leave nothing behind on the host even when the test failed half-way.
    stack.destroy(color="never")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.get_closest_marker("e2e") and "host_state" in item.fixturenames:
        state = item.funcargs.get("host_state")
        try:
            logs = eng.testhost("logs", state_dir=state) if state else ""
        except subprocess.CalledProcessError as error:
            logs = f"(could not read the test host's logs: {error})"
        report.sections.append(("test host logs (sshd, dockerd)", logs))
