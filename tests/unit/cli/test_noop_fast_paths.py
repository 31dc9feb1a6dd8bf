"""A no-op `scripts/workhub up` skips what it can prove is done already (bench/noop_up.py measures
it); each fast path is left, and the full path taken, as soon as what it relies on changed."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workhub import engine as eng
from workhub import locks

REPO = Path(__file__).resolve().parents[3]


def local_project(tmp_path: Path) -> tuple[eng.Engine, dict]:
    """A local stack's project and state in tmp_path, and the test host's client key."""
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", work / "Pulumi.yaml")
    engine = eng.local_engine(work_dir=work, state_dir=tmp_path / "state")
    key = tmp_path / "client_key"
    key.write_text(Ed25519PrivateKey.generate().private_bytes(  # a client key made at run time
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode())
    return engine, {"private_key_path": str(key)}


@pytest.fixture
def local(tmp_path, toolchain, monkeypatch):
    """A local stack's project and state in tmp_path, and a record of each full configure."""
    engine, host = local_project(tmp_path)
    full: list[dict] = []
    configure = eng.configure_local
    monkeypatch.setattr(eng, "configure_local", lambda engine, stack, host, values, secrets=None: (
        full.append(dict(values)), configure(engine, stack, host, values, secrets)))
    return engine, host, full


VALUES = {"workhub:host.address": "127.0.0.1", "workhub:host.port": "2222", "workhub:sourceRoot": "examples"}
SECRETS = {"wbfinhub": {"TOKEN": "t0ken-of-the-test"}}


def test_an_unchanged_local_config_runs_no_cli_and_any_change_sets_it_again(local):
    engine, host, full = local
    stack = eng.local_stack(engine, eng.LOCAL_STACK, host, VALUES, SECRETS)
    assert len(full) == 1
    calls: list[list[str]] = []
    run = subprocess.run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "run", lambda *a, **k: (calls.append(a[0]), run(*a, **k))[1])
        again = eng.local_stack(engine, eng.LOCAL_STACK, host, VALUES, SECRETS)
    # (`pulumi version`: the Automation API's check of the CLI, as any program's workspace makes it)
    assert len(full) == 1 and [c for c in calls if c[1:2] != ["version"]] == [], \
        "nothing changed: no `stack select`, no `config` run"
    assert again.name == stack.name and eng.flat_config(again.get_all_config())["workhub:host.port"] == "2222"

    eng.local_stack(engine, eng.LOCAL_STACK, host, {**VALUES, "workhub:host.port": "2223"}, SECRETS)
    assert len(full) == 2, "a changed value: the full path"
    assert eng.flat_config(stack.get_all_config())["workhub:host.port"] == "2223"
    eng.local_stack(engine, eng.LOCAL_STACK, host, {**VALUES, "workhub:host.port": "2223"},
                    {"wbfinhub": {"TOKEN": "another"}})
    assert len(full) == 3, "a changed secret: the full path"
    Path(host["private_key_path"]).write_text(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode())
    eng.local_stack(engine, eng.LOCAL_STACK, host, {**VALUES, "workhub:host.port": "2223"},
                    {"wbfinhub": {"TOKEN": "another"}})
    assert len(full) == 4, "a new client key: the full path"


def test_the_fingerprint_keeps_no_secret_and_a_hand_made_change_or_a_removed_stack_is_noticed(local):
    engine, host, full = local
    stack = eng.local_stack(engine, eng.LOCAL_STACK, host, VALUES, SECRETS)
    kept = eng.fingerprint_path(engine, eng.LOCAL_STACK).read_text()
    assert "t0ken-of-the-test" not in kept and "PRIVATE KEY" not in kept

    stack.set_config("workhub:host.port", eng.auto.ConfigValue("2999"), path=True)  # by hand, behind workhub's back
    eng.local_stack(engine, eng.LOCAL_STACK, host, VALUES, SECRETS)
    assert len(full) == 2
    assert eng.flat_config(stack.get_all_config())["workhub:host.port"] == "2222", "set back to what workhub sets"

    stack.workspace.remove_stack(eng.LOCAL_STACK)
    again = eng.local_stack(engine, eng.LOCAL_STACK, host, VALUES, SECRETS)
    assert len(full) == 3, "the stack was removed: created and configured again"
    assert eng.flat_config(again.get_all_config())["workhub:host.port"] == "2222"

    engine.passphrase = "another passphrase"
    assert eng.config_fingerprint(engine, eng.LOCAL_STACK, VALUES, "key", SECRETS) != \
        eng.config_fingerprint(eng.local_engine(engine.work_dir, engine.state_dir), eng.LOCAL_STACK, VALUES, "key",
                               SECRETS)


def test_the_toolchain_setup_just_checked_is_not_checked_again(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a[0]) or subprocess.CompletedProcess(
        a[0], 0, stdout=str(tmp_path / "built") + "\n"))
    monkeypatch.setenv("PATH", os.environ["PATH"])
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pulumi").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "pulumi").chmod(0o755)
    monkeypatch.setenv(eng.TOOLCHAIN_BIN_ENV, str(tmp_path / "bin"))
    assert eng.ensure_toolchain() == tmp_path / "bin" and calls == []
    assert os.environ["PATH"].startswith(str(tmp_path / "bin"))
    (tmp_path / "bin" / "pulumi").unlink()
    assert eng.ensure_toolchain() == tmp_path / "built" and len(calls) == 1, "no CLI there: checked"
    monkeypatch.delenv(eng.TOOLCHAIN_BIN_ENV)
    assert eng.ensure_toolchain() == tmp_path / "built" and len(calls) == 2, "not checked by setup: checked"


def test_scripts_workhub_passes_on_the_toolchain_setup_checked():
    text = (REPO / "scripts" / "workhub").read_text()
    assert 'WORKHUB_TOOLCHAIN_BIN="$(scripts/setup.sh --print-toolchain)"' in text
    done = subprocess.run([str(REPO / "scripts" / "setup.sh"), "--print-toolchain"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert os.access(Path(done.stdout.strip()) / "pulumi", os.X_OK)


def _checkpoint(backend: Path, pending: list, gz: bool = False) -> None:
    path = backend / ".pulumi" / "stacks" / "workhub" / ("local.json.gz" if gz else "local.json")
    path.parent.mkdir(parents=True)
    text = json.dumps({"version": 3, "checkpoint": {"stack": "organization/workhub/local",
                                                    "latest": {"resources": [], "pending_operations": pending}}})
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())


@pytest.mark.parametrize("gz", [False, True])
def test_the_lock_check_reads_pending_operations_from_the_state_file(tmp_path, gz):
    assert locks.recorded_pending(tmp_path, "workhub", "local") is None, "no file: ask the CLI"
    _checkpoint(tmp_path, [], gz)
    assert locks.recorded_pending(tmp_path, "workhub", "local") == []
    op = {"resource": {"urn": "urn:pulumi:local::workhub::x::hub"}, "type": "creating"}
    shutil.rmtree(tmp_path / ".pulumi")
    _checkpoint(tmp_path, [op], gz)
    assert locks.recorded_pending(tmp_path, "workhub", "local") == [op]


class _Stack:
    name = "local"

    class workspace:  # noqa: N801
        @staticmethod
        def project_settings():
            return type("Settings", (), {"name": "workhub"})


def test_the_lock_check_runs_no_cli_when_the_state_records_nothing_pending(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(locks, "_pulumi", lambda env, work_dir, *args, stdin=None: calls.append(args) or json.dumps(
        {"deployment": {"pending_operations": [{"resource": {"urn": "urn:x::hub"}}]}}))
    _checkpoint(tmp_path, [])
    locks.prepare(_Stack(), {}, tmp_path, f"file://{tmp_path}", say=lambda line: None)
    assert calls == []
    shutil.rmtree(tmp_path / ".pulumi")
    _checkpoint(tmp_path, [{"resource": {"urn": "urn:x::hub"}}])
    said: list[str] = []
    locks.prepare(_Stack(), {}, tmp_path, f"file://{tmp_path}", say=said.append)
    assert calls[0][:2] == ("stack", "export") and calls[1][:2] == ("stack", "import")
    assert "left 1 operation(s) unfinished (hub)" in said[0]
