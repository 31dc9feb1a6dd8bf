"""The command line (`scripts/workhub VERB`, workhub/__main__.py): each verb has its own options and
--help, refuses another verb's, and hands its handler the namespace it needs; the installed project
runs from any directory."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workhub import __main__ as cli
from workhub import engine as eng

# Each verb's options, and for each one an argv fragment that sets it.
OPTIONS = {
    "--stack": ["--stack", "staging"],
    "--force-unlock": ["--force-unlock"],
    "--debug": ["--debug"],
    "--purge-data": ["--purge-data"],
    "--yes": ["--yes=staging"],
    "--keep": ["--keep", "2"],
    "--reset-cache": ["--reset-cache"],
    "--hub": ["--hub", "wbsaleshub"],
    "--out": ["--out", "dir"],
    "--volume": ["--volume", "data"],
    "--from": ["--from", "dir"],
    "--from-stack": ["--from-stack", "other"],
    "--from-hub": ["--from-hub", "wbother"],
}
VERB_OPTIONS = {
    "up": {"--stack", "--force-unlock", "--debug"},
    "preview": {"--stack"},
    "refresh": {"--stack", "--force-unlock", "--debug"},
    "destroy": {"--stack", "--force-unlock", "--debug", "--purge-data", "--yes"},
    "outputs": {"--stack"},
    "status": {"--stack"},
    "prune": {"--stack", "--keep", "--reset-cache"},
    "backup": {"--stack", "--hub", "--out"},
    "restore": {"--stack", "--hub", "--volume", "--from", "--from-stack", "--from-hub"},
}
# What a verb needs on every command line, so that only the option under test is wrong.
REQUIRED = {"restore": ["--from", "dir"]}


def test_every_verb_is_in_the_table():
    assert set(VERB_OPTIONS) == set(cli.VERBS)


@pytest.mark.parametrize("verb", VERB_OPTIONS)
def test_a_verbs_help_lists_its_own_options_only(verb, capsys):
    with pytest.raises(SystemExit) as done:
        cli.parse([verb, "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: scripts/workhub {verb} ")
    assert set(re.findall(r"^  (?:-h, )?(--[a-z-]+)", shown, re.M)) == VERB_OPTIONS[verb] | {"--help"}


def test_the_commands_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit):
        cli.parse(["--help"])
    shown = capsys.readouterr().out
    assert set(re.findall(r"^    ([a-z]+) ", shown, re.M)) == set(cli.VERBS) | set(cli.TOOLS)


@pytest.mark.parametrize("verb,option", [(verb, option) for verb in VERB_OPTIONS for option in OPTIONS
                                         if option not in VERB_OPTIONS[verb]])
def test_an_option_of_another_verb_is_refused_in_one_line_after_the_verbs_usage(verb, option, capsys):
    with pytest.raises(SystemExit) as done:
        cli.parse([verb, *REQUIRED.get(verb, []), *OPTIONS[option]])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: scripts/workhub {verb} ")
    assert err.splitlines()[-1] == (f"scripts/workhub {verb}: error: unrecognized arguments: "
                                    f"{' '.join(OPTIONS[option])}")


@pytest.mark.parametrize("argv,message", [
    (["restore"], "scripts/workhub restore: error: the following arguments are required: --from"),
    (["restore", "--from", "x", "--from-hub", "wbother"],
     "scripts/workhub restore: error: --from-hub needs --hub <the hub to restore its data into>"),
    (["prune", "--keep", "many"], "scripts/workhub prune: error: argument --keep: invalid int value: 'many'"),
    (["--stack", "staging", "pulumi", "config"],
     "scripts/workhub pulumi: error: it comes first, before any option: scripts/workhub pulumi ..."),
])
def test_a_wrong_command_line_says_what_is_wrong_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        cli.parse(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and err.splitlines()[-1] == message


def test_an_unknown_verb_is_refused_with_the_verbs_there_are(capsys):
    with pytest.raises(SystemExit):
        cli.parse(["deploy"])
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "scripts/workhub: error: argument VERB: invalid choice: 'deploy' (choose from 'up', 'preview',")


LOCAL = eng.LOCAL_STACK
LOCKED = {"force_unlock": False, "debug": False}
# argv -> the namespace the verb's handler receives.
NAMESPACES = [
    ([], {"operation": "up", "stack": LOCAL, **LOCKED}),
    (["--stack", "staging"], {"operation": "up", "stack": "staging", **LOCKED}),
    (["up", "--stack", "staging", "--force-unlock"], {"operation": "up", "stack": "staging", "force_unlock": True,
                                                      "debug": False}),
    (["--stack", "staging", "up"], {"operation": "up", "stack": "staging", **LOCKED}),
    (["--stack", "staging", "up", "--stack", "production"], {"operation": "up", "stack": "production", **LOCKED}),
    (["preview", "--stack", "staging"], {"operation": "preview", "stack": "staging"}),
    (["refresh", "--debug"], {"operation": "refresh", "stack": LOCAL, "force_unlock": False, "debug": True}),
    (["destroy"], {"operation": "destroy", "stack": LOCAL, **LOCKED, "purge_data": False, "yes": None}),
    (["destroy", "--stack", "production", "--yes=production", "--purge-data"],
     {"operation": "destroy", "stack": "production", **LOCKED, "purge_data": True, "yes": "production"}),
    (["outputs"], {"operation": "outputs", "stack": LOCAL}),
    (["status", "--stack", "staging"], {"operation": "status", "stack": "staging"}),
    (["prune"], {"operation": "prune", "stack": LOCAL, "keep": 3, "reset_cache": False}),
    (["prune", "--stack", "staging", "--keep", "1", "--reset-cache"],
     {"operation": "prune", "stack": "staging", "keep": 1, "reset_cache": True}),
    (["backup"], {"operation": "backup", "stack": LOCAL, "hub": None, "out": None}),
    (["backup", "--hub", "wbsaleshub", "--out", "dir"],
     {"operation": "backup", "stack": LOCAL, "hub": "wbsaleshub", "out": Path("dir")}),
    (["restore", "--from", "dir"], {"operation": "restore", "stack": LOCAL, "source": Path("dir"), "hub": None,
                                    "volume": None, "from_stack": None, "from_hub": None}),
    (["restore", "--stack", "staging", "--from", "dir/manifest.json", "--hub", "wbsaleshub", "--volume", "data",
      "--from-stack", "production", "--from-hub", "wbother"],
     {"operation": "restore", "stack": "staging", "source": Path("dir/manifest.json"), "hub": "wbsaleshub",
      "volume": "data", "from_stack": "production", "from_hub": "wbother"}),
]


@pytest.mark.parametrize("argv,expected", NAMESPACES, ids=[" ".join(argv) or "(none)" for argv, _ in NAMESPACES])
def test_each_verbs_handler_receives_its_options_only(argv, expected, monkeypatch, capsys):
    received = []
    monkeypatch.setattr(cli, "open_stack", lambda args: ("engine", "stack"))
    monkeypatch.setattr(cli.eng, "ensure_toolchain", lambda: None)
    monkeypatch.setattr(cli.os, "umask", lambda mask: 0)
    for verb, (summary, _) in cli.VERBS.items():
        monkeypatch.setitem(cli.VERBS, verb, (summary, lambda args, engine, stack: received.append(
            (vars(args), engine, stack)) or 0))
    assert cli.main(argv) == 0
    assert received == [(expected, "engine", "stack")]
    assert capsys.readouterr().err == f"workhub: {expected['operation']} of stack {expected['stack']!r}\n"


@pytest.mark.parametrize("argv,first", [(["--help"], "usage: scripts/workhub [-h] [--stack STACK] VERB ..."),
                                        (["backup", "--help"], "usage: scripts/workhub backup [-h] [--stack STACK]")])
def test_the_installed_project_runs_from_any_directory(tmp_path, argv, first):
    """scripts/setup.sh installs the project into .venv: its python runs workhub from outside the checkout."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "workhub", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(first)
