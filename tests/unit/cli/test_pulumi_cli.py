"""`scripts/workhub pulumi ARGS...`: the project's Pulumi CLI with the local stack's backend and
passphrase, or the user's own login for any other stack; and every fix workhub prints uses it."""

from __future__ import annotations

import ast
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from components.constants import PULUMI_CLI
from workhub import engine as eng
from workhub import pulumi_cli

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("args, stack", [
    (["config", "set", "--stack", "staging", "workhub:x", "1"], "staging"),
    (["config", "set", "--stack=production", "workhub:x", "1"], "production"),
    (["config", "get", "-s", "acme/workhub/staging", "workhub:x"], "staging"),
    (["config", "get", "-s=local", "workhub:x"], "local"),
    (["stack", "select", "staging"], "staging"),
    (["-C", "elsewhere", "stack", "init", "local"], "local"),
    (["stack", "ls"], None),
    (["config"], None),
])
def test_the_stack_is_read_from_every_way_the_cli_names_one(args, stack):
    """Flags, `=` forms, fully qualified names and `stack select|init|rm NAME` all name a stack."""
    assert pulumi_cli.stack_named(args) == stack


@pytest.mark.parametrize("args, local", [
    (["config", "--stack", "local"], True),
    (["stack", "output"], True),
    (["cancel", "--yes"], True),
    (["config", "set", "--stack", "staging", "workhub:x", "1"], False),
    (["stack", "select", "production"], False),
    (["login", "s3://bucket"], False),
    (["--cwd", "here", "whoami"], False),
    (["logout"], False),
])
def test_only_the_local_stack_gets_its_backend_and_login_commands_never_do(args, local):
    assert pulumi_cli.uses_local_backend(args) is local


def test_the_local_stack_gets_its_file_backend_and_passphrase_other_stacks_the_users():
    base = {"PATH": "/usr/bin", "PULUMI_BACKEND_URL": "s3://team-state"}
    local = pulumi_cli.environment(["config"], base)
    assert local["PULUMI_BACKEND_URL"] == f"file://{eng.STATE_DIR / 'state'}"
    assert local["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(eng.STATE_DIR / "passphrase"), "the checkout's own, by file"
    assert "PULUMI_CONFIG_PASSPHRASE" not in local, "never a passphrase's value in an environment"
    assert local["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    staging = pulumi_cli.environment(["config", "--stack", "staging"], base)
    assert staging["PULUMI_BACKEND_URL"] == "s3://team-state"
    assert "PULUMI_CONFIG_PASSPHRASE" not in staging and "PULUMI_CONFIG_PASSPHRASE_FILE" not in staging
    own = pulumi_cli.environment(["config", "--stack", "local"], {**base, "PULUMI_CONFIG_PASSPHRASE": "mine"})
    assert own["PULUMI_CONFIG_PASSPHRASE"] == "mine" and "PULUMI_CONFIG_PASSPHRASE_FILE" not in own
    own_file = pulumi_cli.environment(["config"], {**base, "PULUMI_CONFIG_PASSPHRASE_FILE": "/home/me/phrase"})
    assert own_file["PULUMI_CONFIG_PASSPHRASE_FILE"] == "/home/me/phrase", "the user's own file wins"


def _workhub_pulumi(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts" / "workhub"), "pulumi", *args], env=env, text=True,
                          capture_output=True, timeout=300)


def test_scripts_workhub_pulumi_runs_the_projects_cli_on_the_local_stacks_backend(tmp_path):
    """With no `pulumi` on PATH and no passphrase set, a secret set on the local stack lands in the
    local file backend, reads back, and prints nothing but the command's own output; a named other
    stack goes to the user's backend with the user's passphrase."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: workhub\nruntime: python\n")
    state, team = tmp_path / "state", tmp_path / "team"
    team.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"], "WORKHUB_STATE_DIR": str(state),
           "PULUMI_BACKEND_URL": f"file://{team}"}
    assert subprocess.run(["sh", "-c", "command -v pulumi"], env=env, capture_output=True).returncode != 0

    for args in (["stack", "init", "local"],
                 ["config", "set", "--secret", "--stack", "local", "workhub:token", "s3cr3t"]):
        done = _workhub_pulumi("-C", str(project), *args, env=env)
        assert done.returncode == 0, done.stderr
    got = _workhub_pulumi("-C", str(project), "config", "get", "--stack", "local", "workhub:token", env=env)
    assert (got.returncode, got.stdout, got.stderr) == (0, "s3cr3t\n", "")
    assert (state / "state" / ".pulumi" / "stacks" / "workhub" / "local.json").is_file()
    assert "s3cr3t" not in (project / "Pulumi.local.yaml").read_text()
    # Written for its user alone: the state directory, the checkout's passphrase, the state, the stack file.
    assert _mode(state) == 0o700 and _mode(state / "passphrase") == 0o600
    assert _mode(project / "Pulumi.local.yaml") == 0o600
    assert {path: _mode(path) for path in (state / "state").rglob("*") if _mode(path) & 0o077} == {}

    staging = _workhub_pulumi("-C", str(project), "stack", "init", "staging",
                              env={**env, "PULUMI_CONFIG_PASSPHRASE": "team"})
    assert staging.returncode == 0, staging.stderr
    assert (team / ".pulumi" / "stacks" / "workhub" / "staging.json").is_file()
    assert not (state / "state" / ".pulumi" / "stacks" / "workhub" / "staging.json").exists()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _hints(text: str) -> list[str]:
    """Every `pulumi <command>` a text tells its reader to run that is not the project's CLI."""
    found = re.findall(r"(.{0,16})\bpulumi (config|login|stack|cancel|state|logout|whoami)\b", text)
    return [f"{before}pulumi {command}" for before, command in found if not before.endswith("scripts/workhub ")]


def _messages(source: str) -> str:
    """The string literals of a module but its docstrings (bare string statements: they talk to
    its readers, not to users)."""
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append("".join(part.value if isinstance(part, ast.Constant) else PULUMI_CLI for part in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            texts.append(node.value)
    return "\n".join(texts)


@pytest.mark.parametrize("path", ["README.md", "Pulumi.staging.yaml", "Pulumi.production.yaml"])
def test_every_hint_in_the_docs_to_run_pulumi_uses_the_projects_cli(path):
    """The CLI built here is not on PATH, so a bare `pulumi config ...` would not run."""
    assert _hints((REPO / path).read_text()) == []


@pytest.mark.parametrize("path", ["components/config/models.py", "components/config/checks.py", "components/config/parse.py",
                                  "components/plan/hubs.py", "components/ssh.py", "components/config/swarm.py",
                                  "components/config/runtime.py", "policy/guardrails.py", "workhub/locks.py",
                                  "workhub/__main__.py", "workhub/engine.py", "workhub/data.py"])
def test_every_hint_in_a_message_to_run_pulumi_uses_the_projects_cli(path):
    assert _hints(_messages((REPO / path).read_text())) == []
