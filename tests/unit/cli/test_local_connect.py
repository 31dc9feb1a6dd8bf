"""Operations on the deployed local stack (outputs, status, prune, backup, restore) start nothing:
they only connect, and say clearly when the stack or its test host is not there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pulumi import automation as auto

from workhub import engine as eng
from workhub.__main__ import connect_local

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("operation", ["status", "prune", "outputs", "backup", "preview", "refresh", "destroy"])
def test_an_operation_on_a_local_stack_never_deployed_starts_nothing_and_says_so(tmp_path, operation):
    env = {**os.environ, "WORKHUB_STATE_DIR": str(tmp_path)}
    done = subprocess.run([str(REPO / "scripts" / "workhub"), operation], env=env, text=True, capture_output=True,
                          timeout=300)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (f"workhub: {operation} of stack 'local' did not run: the local stack was "
                                            "never deployed; 'scripts/workhub up' deploys it")
    assert not [line for line in done.stderr.splitlines() if line.startswith(("testhost:", "registry:"))]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".modes-tightened", "passphrase", "state"], \
        "no test host or registry was started (only the checkout's passphrase was made)"


def _deployed_local_stack(tmp_path: Path, port: int, host_key: str) -> eng.Engine:
    """A local stack in a project and backend of the test's own, configured for a test host."""
    work = tmp_path / "project"
    work.mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", work / "Pulumi.yaml")
    engine = eng.local_engine(work_dir=work, state_dir=tmp_path / "state")
    engine.stack(eng.LOCAL_STACK).set_all_config({"workhub:host.port": auto.ConfigValue(str(port)),
                                                  "workhub:host.hostKey": auto.ConfigValue(host_key)}, path=True)
    return engine


def test_a_local_stack_whose_test_host_is_gone_or_stopped_says_which_and_what_starts_it(tmp_path, toolchain):
    engine = _deployed_local_stack(tmp_path, 2222, "ssh-ed25519 AAAA")
    with pytest.raises(eng.NotRunning) as caught:
        connect_local(engine, needs_host=True)
    assert str(caught.value) == (f"there is no test host (no state in {tmp_path / 'state' / 'testhost'}); "
                                 "'scripts/workhub up' (or 'scripts/testhost.sh up') starts it")

    host = tmp_path / "state" / "testhost"
    host.mkdir()
    for name, text in {"sshd.port": "2222", "client_key": "", "known_hosts": "", "sshd.pid": "999999999"}.items():
        (host / name).write_text(text + "\n")
    with pytest.raises(eng.NotRunning) as caught:
        connect_local(engine, needs_host=True)
    assert str(caught.value) == ("the test host is not running: its sshd (127.0.0.1:2222) is stopped; "
                                 "'scripts/workhub up' (or 'scripts/testhost.sh up') starts it")
    assert connect_local(engine, needs_host=False).name == eng.LOCAL_STACK, "outputs need no host"


def test_pointing_the_local_stack_at_its_test_host_again_sets_nothing(tmp_path, toolchain, monkeypatch):
    """A no-op `up` runs no `pulumi config set`: only a value that differs is set."""
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", work / "Pulumi.yaml")
    engine = eng.local_engine(work_dir=work, state_dir=tmp_path / "state")
    stack = engine.stack(eng.LOCAL_STACK)
    key = tmp_path / "client_key"
    key.write_text(Ed25519PrivateKey.generate().private_bytes(  # a client key made at run time
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode())
    values = {"workhub:host.address": "127.0.0.1", "workhub:host.port": "2222", "workhub:sourceRoot": "examples",
              "workhub:hostPorts.wbfinhub": "24092"}
    secrets = {"wbfinhub": {"LEDGER_SIGNING_KEY": "-----BEGIN TEST KEY-----\nAbC\n-----END TEST KEY-----",
                            "TOKEN": "t0ken"}}
    calls: list[str] = []
    set_secret, set_all = engine.set_secret, stack.set_all_config
    monkeypatch.setattr(engine, "set_secret", lambda *a, **k: (calls.append(a[1]), set_secret(*a, **k)))
    monkeypatch.setattr(stack, "set_all_config", lambda *a, **k: (calls.append("plain"), set_all(*a, **k)))

    eng.configure_local(engine, stack, {"private_key_path": str(key)}, values, secrets)
    assert sorted(calls) == ["plain", "workhub:secrets.wbfinhub.LEDGER_SIGNING_KEY", "workhub:secrets.wbfinhub.TOKEN",
                             "workhub:sshPrivateKey"]
    calls.clear()
    eng.configure_local(engine, stack, {"private_key_path": str(key)}, values, secrets)
    assert calls == []
    eng.configure_local(engine, stack, {"private_key_path": str(key)}, {**values, "workhub:host.port": "2223"},
                        {"wbfinhub": {**secrets["wbfinhub"], "TOKEN": "other"}})
    assert calls == ["plain", "workhub:secrets.wbfinhub.TOKEN"]
    assert eng.flat_config(stack.get_all_config())["workhub:host.port"] == "2223"
