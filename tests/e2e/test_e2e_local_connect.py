"""The local stack connects to the test host it was deployed to, running, and not to another one
(marker `e2e`; the unit tests of connecting are in tests/unit/cli/test_local_connect.py)."""

from __future__ import annotations

import pytest

from tests.unit.cli.test_local_connect import _deployed_local_stack
from workhub import engine as eng
from workhub.__main__ import connect_local

pytestmark = pytest.mark.e2e


def test_a_local_stack_connects_to_its_running_test_host_and_not_to_another(tmp_path, toolchain, test_host, host_state):
    engine = _deployed_local_stack(tmp_path, test_host["port"], test_host["host_public_key"])
    engine.state_dir = host_state
    assert connect_local(engine, needs_host=True).name == eng.LOCAL_STACK

    other = _deployed_local_stack(tmp_path / "other", test_host["port"] + 1, test_host["host_public_key"])
    other.state_dir = host_state
    with pytest.raises(eng.NotRunning) as caught:
        connect_local(other, needs_host=True)
    assert str(caught.value) == (f"the local stack points at another test host than the one on "
                                 f"127.0.0.1:{test_host['port']}; 'scripts/workhub up' points it there")
