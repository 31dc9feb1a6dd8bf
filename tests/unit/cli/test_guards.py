"""Guards on what cannot be undone: a destroy of any stack but `local`, and any --purge-data, asks
for the stack's name on the terminal (typed back exactly) or takes --yes=<stack>, and refuses with no
terminal; a stack name that does not exist is refused by every verb and creates nothing."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

from workhub import engine as eng
from workhub import guards

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def terminal():
    """A pseudo-terminal: the file a program reads as its terminal, and a function that types a
    line on it."""
    master, slave = pty.openpty()
    reader = os.fdopen(slave, "r")
    yield reader, lambda line: os.write(master, (line + "\n").encode())
    reader.close()
    os.close(master)


def test_the_local_stack_is_destroyed_without_a_question_but_not_its_data(terminal):
    """Destroying the throwaway local stack asks nothing; purging its data, or destroying any other
    stack, asks."""
    reader, _ = terminal
    guards.confirm_destroy("local", False, None, reader, io.StringIO())
    assert guards.needs_confirmation("local", True)
    assert guards.needs_confirmation("staging", False) and guards.needs_confirmation("production", False)


def test_the_stack_name_typed_back_exactly_goes_ahead(terminal):
    reader, type_line = terminal
    asked = io.StringIO()
    type_line("production")
    guards.confirm_destroy("production", True, None, reader, asked)
    assert asked.getvalue() == (
        "workhub: destroy of stack 'production' removes its hubs' containers, proxies, images and files from the "
        "host, and --purge-data deletes their volumes: the hubs' data.\n"
        "Type the stack's name (production) to go ahead: ")


@pytest.mark.parametrize("typed, why", [
    ("Production", "'Production' is not the stack's name 'production'"),
    ("production ", "'production ' is not the stack's name 'production'"),
    ("prod", "'prod' is not the stack's name 'production'"),
    ("", "no stack name was typed"),
])
def test_any_other_answer_changes_nothing(terminal, typed, why):
    reader, type_line = terminal
    type_line(typed)
    with pytest.raises(guards.Refused) as refused:
        guards.confirm_destroy("production", False, None, reader, io.StringIO())
    assert str(refused.value) == f"{why}; nothing was changed"


def test_with_no_terminal_it_refuses_and_says_how_a_script_names_the_stack():
    with pytest.raises(guards.Refused) as refused:
        guards.confirm_destroy("staging", False, None, io.StringIO("staging\n"), io.StringIO())
    assert str(refused.value) == (
        "destroy of stack 'staging' removes its hubs' containers, proxies, images and files from the host (their "
        "volumes stay), so it asks for the stack's name on a terminal, and there is none; nothing was changed. In "
        "a script, name the stack: --yes=staging")
    with pytest.raises(guards.Refused):
        guards.confirm_destroy("local", True, None, io.StringIO(), io.StringIO())


def test_yes_goes_ahead_for_the_stack_it_names_only():
    guards.confirm_destroy("production", True, "production", io.StringIO(), io.StringIO())
    with pytest.raises(guards.Refused) as refused:
        guards.confirm_destroy("production", True, "staging", io.StringIO(), io.StringIO())
    assert str(refused.value) == "--yes=staging does not name the stack 'production'; nothing was changed"
    with pytest.raises(guards.Refused):
        guards.confirm_destroy("local", False, "locla", io.StringIO(), io.StringIO())


# --- through `python -m workhub`, on stacks of a backend of the test's own --------------------------

PRIVATE_KEY = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFloHIpcBboBa5fvOHzc3/flmdn24bmBRbRH+dbManFE"


@pytest.fixture(scope="module")
def team(tmp_path_factory, toolchain) -> eng.Engine:
    """This project with stacks staging and production in a file backend, as an operator's login
    holds them (staging configured, and with nothing deployed)."""
    tmp_path = tmp_path_factory.mktemp("team")
    work = tmp_path / "project"
    work.mkdir()
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    project["config"]["workhub:hubs"]["value"] = []
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    (tmp_path / "backend").mkdir()
    engine = eng.Engine(work_dir=work, backend_url=f"file://{tmp_path / 'backend'}", passphrase="team")
    staging = engine.stack("staging")
    staging.set_all_config({"workhub:host.address": auto.ConfigValue("127.0.0.1"),
                            "workhub:host.user": auto.ConfigValue("deploy"),
                            "workhub:host.hostKey": auto.ConfigValue(HOST_KEY)}, path=True)
    engine.set_secret("staging", "workhub:sshPrivateKey", PRIVATE_KEY)
    engine.stack("production")
    return engine


def workhub(engine: eng.Engine, *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """`scripts/workhub ARGS` as the operator runs it, with the project, backend and passphrase of `engine`."""
    env = {**os.environ, **engine.env(), eng.PROJECT_DIR_ENV: str(engine.work_dir),
           eng.TOOLCHAIN_BIN_ENV: str(eng.ensure_toolchain())}
    return subprocess.run([sys.executable, "-m", "workhub", *args], cwd=REPO, env=env, stdin=stdin,
                          capture_output=True, text=True, timeout=300)


def checkpoint(engine: eng.Engine, name: str) -> bytes:
    backend = Path(engine.backend_url.removeprefix("file://"))
    return (backend / ".pulumi" / "stacks" / "workhub" / f"{name}.json").read_bytes()


def test_a_destroy_whose_name_is_typed_wrong_on_the_terminal_changes_nothing(team):
    before = checkpoint(team, "staging")
    master, slave = pty.openpty()
    try:
        os.write(master, b"stagign\n")
        done = workhub(team, "destroy", "--stack", "staging", stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 1
    # (On a terminal the answer's line break, echoed, ends the question's line; stderr here is a pipe.)
    assert done.stderr.endswith("Type the stack's name (staging) to go ahead: workhub: destroy of stack 'staging' "
                                "did not run: 'stagign' is not the stack's name 'staging'; nothing was changed\n")
    assert checkpoint(team, "staging") == before


def test_a_destroy_with_no_terminal_and_no_yes_refuses_and_one_named_with_yes_goes_ahead(team):
    refused = workhub(team, "destroy", "--stack", "staging")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1].endswith(
        "there is none; nothing was changed. In a script, name the stack: --yes=staging")
    wrong = workhub(team, "destroy", "--stack", "staging", "--yes=production")
    assert wrong.stderr.splitlines()[-1] == ("workhub: destroy of stack 'staging' did not run: --yes=production does "
                                             "not name the stack 'staging'; nothing was changed")
    done = workhub(team, "destroy", "--stack", "staging", "--yes=staging")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("workhub: stack 'staging' destroyed:")


@pytest.mark.parametrize("verb", ["up", "preview", "refresh", "destroy", "outputs", "status", "prune", "backup",
                                  "restore"])
def test_a_stack_name_that_does_not_exist_is_refused_by_every_verb_and_creates_nothing(team, verb, monkeypatch,
                                                                                       capsys):
    from workhub.__main__ import main

    for key, value in {**team.env(), eng.PROJECT_DIR_ENV: str(team.work_dir),
                       eng.TOOLCHAIN_BIN_ENV: str(eng.ensure_toolchain())}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", os.environ["PATH"])
    extra = ["--from", str(team.work_dir)] if verb == "restore" else []
    assert main([verb, "--stack", "stagign", *extra]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"workhub: {verb} of stack 'stagign' did not run: there is no stack 'stagign' in the backend "
        f"{team.backend_url} (its stacks: production, staging); nothing was created. To create it on purpose: "
        "scripts/workhub pulumi stack init stagign")
    backend = Path(team.backend_url.removeprefix("file://"))
    assert not list(backend.rglob("stagign*")) and not (team.work_dir / "Pulumi.stagign.yaml").exists()


def test_the_preview_summary_refuses_a_stack_that_does_not_exist(team, monkeypatch, capsys):
    from workhub.summary import main

    for key, value in {**team.env(), eng.TOOLCHAIN_BIN_ENV: str(eng.ensure_toolchain())}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", os.environ["PATH"])
    assert main(["--stack", "prodution"]) == 1
    assert "there is no stack 'prodution' in the backend" in capsys.readouterr().err
    assert not (REPO / "Pulumi.prodution.yaml").exists()
