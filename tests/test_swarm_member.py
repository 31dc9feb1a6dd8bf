"""SwarmMember's provider against two real SSH servers (the paramiko ones of test_remote_provider.py),
a manager and a node, each with a stand-in `docker`: the node joins with the token the manager
gave, and the token reaches neither the log, nor the outputs, nor any command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import SwarmNode
from components.swarm_member import SwarmMemberProvider, join
from components.swarm_scripts import join_script
from tests.test_remote_provider import Host, connection, keys  # noqa: F401 (the keys fixture)

TOKEN = "SWMTKN-1-0123456789abcdefghijklmnopqrstuvwxyz-secret"
# A stand-in docker: the manager gives the token; the node's engine is in no Swarm (or, with
# $HOME/active, in one), and records how it was asked to join.
DOCKER = f"""#!/bin/bash
case "$*" in
  "swarm join-token --quiet manager") echo {TOKEN} ;;
  "info --format {{{{.Swarm.LocalNodeState}}}}") [ -e "$HOME/active" ] && echo active || echo inactive ;;
  "info --format "*) echo manager ;;
  "swarm join "*) printf '%s\\n' "$*" >>"$HOME/joins" ;;
  *) echo "unexpected: docker $*" >&2; exit 3 ;;
esac
"""


@pytest.fixture
def hosts(tmp_path, keys, monkeypatch):  # noqa: F811
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    servers = []
    for name in ("manager", "node"):
        home = tmp_path / name
        home.mkdir()
        servers.append(Host(home, keys["host"].pkey, keys["client"].pkey))
    yield servers
    for server in servers:
        server.close()


def member_props(hosts, keys) -> dict:  # noqa: F811
    manager, node = hosts
    nodes = [SwarmNode(name=f"node{i}", address="127.0.0.1", port=server.port, hostKey=keys["host"].line)
             for i, server in enumerate(hosts, start=1)]
    return {"label": "swarm-node2", "connection": connection(node.port, keys["host"].line).to_props(),
            "manager": connection(manager.port, keys["host"].line).to_props(), "role": "manager",
            "privateKey": keys["client"].text, "create": join_script(nodes[1], nodes[0], "manager"), "stdout": None}


def joins(home: Path) -> list[str]:
    path = home / "joins"
    return path.read_text().splitlines() if path.exists() else []


def test_the_node_joins_with_the_managers_token_which_is_logged_nowhere(hosts, keys):  # noqa: F811
    manager, node = hosts
    logged: list[str] = []
    stdout = join(member_props(hosts, keys), log=logged.append)
    assert joins(node.home) == [f"swarm join --advertise-addr 127.0.0.1 --token {TOKEN} 127.0.0.1:2377"]
    assert not any(TOKEN in line for line in logged), logged
    assert TOKEN not in stdout
    # On its command lines: bash reading the script; the token came on the session's stdin.
    assert not any(TOKEN in command for command in manager.commands + node.commands)
    assert any("joined the Swarm of 127.0.0.1 as a manager" in line for line in logged)


def test_a_node_in_the_swarm_already_does_not_join_again(hosts, keys):  # noqa: F811
    _, node = hosts
    (node.home / "active").touch()
    logged: list[str] = []
    join(member_props(hosts, keys), log=logged.append)
    assert joins(node.home) == []
    assert any("is in the Swarm already (as manager)" in line for line in logged)


def test_outputs_hold_no_token_and_an_unchanged_member_does_not_join_again(hosts, keys, monkeypatch):  # noqa: F811
    _, node = hosts
    monkeypatch.setattr("components.swarm_member._log_to_engine", lambda line: None)
    provider = SwarmMemberProvider()
    props = member_props(hosts, keys)
    created = provider.create(props)
    assert TOKEN not in repr(created.outs)
    assert provider.diff(created.id, created.outs, props).changes is False
    provider.update(created.id, created.outs, props)
    assert len(joins(node.home)) == 1
    moved = {**props, "role": "worker"}
    assert provider.diff(created.id, created.outs, moved).changes is True
