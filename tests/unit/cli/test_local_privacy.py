"""A local stack safe on a shared machine: a random passphrase per checkout, in a 0600 file the CLI
reads (never a value in an environment); a stack encrypted with the former fixed passphrase moved to
it; the state directory 0700 and what is written there private, what earlier versions left loose
tightened once; on the host, ~/.workhub 0700 with nothing in it others may read."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pulumi
import pytest
import yaml
from pulumi import automation as auto

from components.config.models import SshKeepAlive
from components.render.host.build import host_setup_script
from workhub import engine as eng

REPO = Path(__file__).resolve().parents[3]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def loose(root: Path) -> dict[str, int]:
    """What under `root` (not a link) group or others may use, with its mode."""
    return {str(path.relative_to(root)): mode(path) for path in root.rglob("*")
            if not path.is_symlink() and mode(path) & 0o077}


@pytest.fixture
def project(tmp_path) -> Path:
    work = tmp_path / "project"
    work.mkdir()
    (work / "Pulumi.yaml").write_text("name: workhub\nruntime: python\n")
    return work


def test_the_checkouts_passphrase_is_random_private_and_made_once(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    first = eng.local_passphrase(state)
    assert first == state / "passphrase" and mode(first) == 0o600
    phrase = first.read_text().strip()
    assert len(phrase) == 43 and phrase != eng.FORMER_LOCAL_PASSPHRASE
    assert eng.local_passphrase(state).read_text().strip() == phrase, "made once"
    (tmp_path / "other").mkdir()
    assert eng.local_passphrase(tmp_path / "other").read_text() != first.read_text(), "each checkout its own"
    assert [p.name for p in state.iterdir()] == ["passphrase"], "nothing left of its making"


def test_the_cli_gets_the_passphrase_by_file_and_the_users_own_wins(tmp_path, project):
    engine = eng.local_engine(project, tmp_path / "state", environ={})
    env = engine.env()
    assert env["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(tmp_path / "state" / "passphrase")
    assert "PULUMI_CONFIG_PASSPHRASE" not in env
    for own in ({"PULUMI_CONFIG_PASSPHRASE": "mine"}, {"PULUMI_CONFIG_PASSPHRASE_FILE": "/home/me/phrase"}):
        theirs = eng.local_engine(project, tmp_path / "theirs", environ=own)
        assert theirs.passphrase_file is None
        assert "PULUMI_CONFIG_PASSPHRASE" not in theirs.env() and "PULUMI_CONFIG_PASSPHRASE_FILE" not in theirs.env()
    assert not (tmp_path / "theirs" / "passphrase").exists(), "no passphrase of the checkout's is made then"


def test_the_state_directory_is_private_and_what_was_left_loose_is_tightened_once(tmp_path, project):
    """Everything an earlier version wrote with the default umask (keys, logs, backups, secrets, the
    state, Pulumi.<stack>.yaml) loses group's and others' permissions once; links are left alone."""
    state = tmp_path / "state"
    outside = tmp_path / "outside.txt"
    outside.write_text("not workhub's\n")
    files = ["local-secrets.json", "testhost/client_key.pub", "testhost/sshd.log", "backups/local/t/data.tar.gz",
             "state/.pulumi/stacks/workhub/local.json", "state/.pulumi/history/workhub/local/x.json"]
    for name in files:
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_text("{}\n")
        os.chmod(state / name, 0o644)
    for folder in [state, *[(state / name).parent for name in files]]:
        os.chmod(folder, 0o755)
    (state / "link").symlink_to(outside)
    (project / "Pulumi.local.yaml").write_text("encryptionsalt: v1:x\n")
    os.chmod(project / "Pulumi.local.yaml", 0o644)

    eng.private_state(state, project)
    assert mode(state) == 0o700 and loose(state) == {}
    assert mode(project / "Pulumi.local.yaml") == 0o600
    assert mode(outside) == 0o644 and (state / "link").is_symlink(), "a link's target is not workhub's"

    os.chmod(state, 0o755)
    os.chmod(state / "local-secrets.json", 0o644)
    eng.private_state(state, project)
    assert mode(state) == 0o700, "the directory is kept 0700"
    assert mode(state / "local-secrets.json") == 0o644, "the rest was tightened once: workhub writes privately since"


def test_what_workhub_writes_in_the_state_directory_is_private_whatever_the_umask(tmp_path, project):
    previous = os.umask(0o022)
    try:
        engine = eng.local_engine(project, tmp_path / "state", environ={})
        eng.local_secrets([{"name": "wbfinhub", "secrets": ["TOKEN"]}], engine.state_dir)
        with eng.private_files():
            (engine.state_dir / "backups" / "local").mkdir(parents=True)
        assert os.umask(0o022) == 0o022, "the caller's umask is given back"
    finally:
        os.umask(previous)
    assert mode(engine.state_dir / "local-secrets.json") == 0o600
    assert loose(engine.state_dir) == {}


def test_a_local_stack_made_with_the_former_fixed_passphrase_is_moved_to_the_checkouts_own(tmp_path, project,
                                                                                             toolchain, monkeypatch):
    """Made the way the old code made it (its config and its state encrypted with the fixed passphrase),
    it opens with the checkout's passphrase afterwards, and no longer with the old one."""
    state = tmp_path / "state"
    (state / "state").mkdir(parents=True)
    old = eng.Engine(work_dir=project, backend_url=f"file://{state / 'state'}",
                     passphrase=eng.FORMER_LOCAL_PASSPHRASE, state_dir=state)

    def program():
        pulumi.export("token", pulumi.Output.secret("a secret of the state"))

    def stack_of(engine: eng.Engine) -> auto.Stack:
        options = auto.LocalWorkspaceOptions(work_dir=str(project), env_vars=engine.env())
        return auto.create_or_select_stack("local", project_name="workhub", program=program, opts=options)

    made = stack_of(old)
    made.set_config("workhub:sshPrivateKey", auto.ConfigValue("a secret of the config", secret=True))
    made.up(color="never")
    assert eng.opens(yaml.safe_load((project / "Pulumi.local.yaml").read_text())["encryptionsalt"],
                     eng.FORMER_LOCAL_PASSPHRASE)

    said: list[str] = []
    engine = eng.local_engine(project, state, say=said.append, environ={})
    assert said == [f"workhub: local stack 'local' was encrypted with workhub's former fixed passphrase; its config "
                    f"and state are now encrypted with this checkout's own ({state / 'passphrase'}, mode 0600)"]
    salt = yaml.safe_load((project / "Pulumi.local.yaml").read_text())["encryptionsalt"]
    assert eng.opens(salt, (state / "passphrase").read_text().strip())
    assert not eng.opens(salt, eng.FORMER_LOCAL_PASSPHRASE)
    moved = stack_of(engine)
    assert moved.get_config("workhub:sshPrivateKey").value == "a secret of the config"
    assert moved.outputs()["token"].value == "a secret of the state"
    assert moved.up(color="never").summary.resource_changes == {"same": 1}, "its state decrypts and re-encrypts"
    with pytest.raises(auto.errors.CommandError):
        stack_of(old).get_all_config()
    assert eng.FORMER_LOCAL_PASSPHRASE not in " ".join(engine.env().values())

    calls: list = []
    run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (calls.append(a[0]), run(*a, **k))[1])
    eng.local_engine(project, state, say=said.append, environ={})
    assert len(said) == 1 and calls == [], "moved once; then known to open, without the CLI"


def test_a_local_stack_whose_secrets_open_with_no_passphrase_workhub_knows_says_what_to_do(tmp_path, project,
                                                                                            toolchain):
    state = tmp_path / "state"
    (state / "state").mkdir(parents=True)
    theirs = eng.Engine(work_dir=project, backend_url=f"file://{state / 'state'}", passphrase="the user's own",
                        state_dir=state)
    theirs.stack("local")
    theirs.set_secret("local", "workhub:sshPrivateKey", "key")
    before = (project / "Pulumi.local.yaml").read_text()
    with pytest.raises(eng.PassphraseError) as caught:
        eng.local_engine(project, state, environ={})
    assert str(caught.value) == (
        f"the secrets of local stack 'local' (Pulumi.local.yaml) open neither with this checkout's passphrase "
        f"({state / 'passphrase'}) nor with workhub's former fixed one; if you encrypted them with your own, set "
        "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) to it again")
    assert (project / "Pulumi.local.yaml").read_text() == before, "nothing was changed"


# --- on the host -----------------------------------------------------------------------------------


def test_the_host_setup_makes_workhubs_directory_the_deploy_users_alone_once(tmp_path):
    """~/.workhub becomes 0700 and what earlier versions left readable by others in it private; the
    uploaded build contexts keep their modes (the images' files) and each proxy's config stays
    readable by the proxy's user in its container."""
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    state = home / ".workhub"
    loose_files = ["builds.jsonl", "builds/wbfinhub-e2e-0123456789ab/log", "logs/wbfinhub-e2e-blue-1.log",
                   "compose/wbfinhub-e2e-blue.yml", "env/x.env"]
    kept = {"contexts/e2e/wbfinhub/server.js": 0o644, "contexts/e2e/wbfinhub/start.sh": 0o755,
            "builds/wbfinhub-e2e-0123456789ab/context/server.js": 0o644, "proxy/wbfinhub-e2e/haproxy.cfg": 0o644}
    for name in [*loose_files, *kept]:
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_text("x\n")
        os.chmod(state / name, kept.get(name, 0o644))
    for folder in {path for name in [*loose_files, *kept] for path in (state / name).parents if state in path.parents}:
        os.chmod(folder, 0o755)
    os.chmod(state, 0o755)
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text("#!/bin/sh\nexit 1\n")  # no passwordless sudo: sshd's settings stay as they are
    (bin_dir / "sudo").chmod(0o755)
    done = subprocess.run(["bash", "-s"], input=host_setup_script(SshKeepAlive()), text=True, capture_output=True,
                          env={"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert f"host-setup: {state} (0700) and what is in it are the deploy user's alone" in done.stderr
    assert mode(state) == 0o700
    assert {name: mode(state / name) for name in loose_files} == {name: 0o600 for name in loose_files}
    assert {name: mode(state / name) for name in kept} == kept
    assert mode(state / "contexts" / "e2e" / "wbfinhub") == 0o755 and mode(state / "proxy" / "wbfinhub-e2e") == 0o755
