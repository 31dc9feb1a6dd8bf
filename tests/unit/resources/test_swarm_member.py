"""SwarmMember's provider against two real SSH servers (the paramiko ones of test_remote_provider.py),
a manager and a node, each with a stand-in `docker` and `curl`: the node joins with the token the
manager gave, through the Engine API (POST /swarm/join, the token in the body curl reads on stdin),
and the token reaches neither the log, nor the outputs, nor any command line; a node without curl,
or whose engine refuses the join, fails saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.config.models import SwarmNode
from components.ssh import RemoteCommandError
from components.resources.swarm.member import SwarmMemberProvider, join
from components.render.swarm.scripts import join_script
from tests.unit.resources.test_remote_provider import Host, connection, keys  # noqa: F401 (the keys fixture)

TOKEN = "SWMTKN-1-0123456789abcdefghijklmnopqrstuvwxyz-secret"
# A stand-in docker: the manager gives the token; the node's engine is in no Swarm (or, with
# $HOME/active, in one), and its CLI reaches it on a unix socket in $HOME.
DOCKER = f"""#!/bin/bash
case "$*" in
  "swarm join-token --quiet manager") echo {TOKEN} ;;
  "info --format {{{{.Swarm.LocalNodeState}}}}") [ -e "$HOME/active" ] && echo active || echo inactive ;;
  "info --format "*) echo manager ;;
  "context inspect --format {{{{.Endpoints.docker.Host}}}}") echo "unix://$HOME/docker.sock" ;;
  *) echo "unexpected: docker $*" >&2; exit 3 ;;
esac
"""
# A stand-in curl for the Engine API: records its arguments and the request body it reads on
# stdin; answers 200 and {} (or the code and body in $HOME/answer, one line each).
CURL = """#!/bin/bash
printf '%s\\n' "$*" >>"$HOME/curl-args"
{ cat; echo; } >>"$HOME/joins"
while [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done
if [ -e "$HOME/answer" ]; then
  sed -n 2p "$HOME/answer" >"$out"
  sed -n 1p "$HOME/answer" | tr -d '\\n'
else
  echo '{}' >"$out"
  printf 200
fi
"""


@pytest.fixture
def hosts(tmp_path, keys, monkeypatch):  # noqa: F811
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", DOCKER), ("curl", CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
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


def joins(home: Path) -> list[dict]:
    """The request bodies of the joins the node's engine was asked for."""
    path = home / "joins"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_node_joins_with_the_managers_token_which_is_logged_nowhere(hosts, keys):  # noqa: F811
    manager, node = hosts
    logged: list[str] = []
    stdout = join(member_props(hosts, keys), log=logged.append)
    # What `docker swarm join --advertise-addr 127.0.0.1 --token ... 127.0.0.1:2377` sends the engine.
    assert joins(node.home) == [{"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "127.0.0.1",
                                 "RemoteAddrs": ["127.0.0.1:2377"], "JoinToken": TOKEN}]
    (args,) = (node.home / "curl-args").read_text().splitlines()
    assert f"--unix-socket {node.home}/docker.sock" in args and args.endswith(" http://docker/swarm/join")
    assert TOKEN not in args, "curl reads the token in the request's body, on its stdin"
    assert not any(TOKEN in line for line in logged), logged
    assert TOKEN not in stdout
    # On its command lines: bash reading the script; the token came on the session's stdin.
    assert not any(TOKEN in command for command in manager.commands + node.commands)
    assert any("joined the Swarm of 127.0.0.1 as a manager" in line for line in logged)


def test_a_join_the_engine_refuses_fails_with_its_words(hosts, keys):  # noqa: F811
    _, node = hosts
    (node.home / "answer").write_text('503\n{"message":"rpc error: code = Unavailable desc = connection error"}\n')
    logged: list[str] = []
    with pytest.raises(RemoteCommandError) as caught:
        join(member_props(hosts, keys), log=logged.append)
    assert "reason: node2 could not join the Swarm of 127.0.0.1 as a manager (the engine answered 503: rpc error: " \
           "code = Unavailable desc = connection error)" in str(caught.value)
    assert TOKEN not in str(caught.value) and not any(TOKEN in line for line in logged)


def test_a_node_without_curl_fails_before_it_changes_anything(hosts, keys, tmp_path, monkeypatch):  # noqa: F811
    _, node = hosts
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "docker").symlink_to(tmp_path / "bin" / "docker")
    (bare / "bash").symlink_to("/bin/bash")
    monkeypatch.setenv("PATH", str(bare))
    with pytest.raises(RemoteCommandError) as caught:
        join(member_props(hosts, keys), log=lambda line: None)
    assert "reason: node2 has no curl: the join goes to the Docker Engine API through curl, so that its token is " \
           "in no command line; install curl on node2 (apt-get install curl), then run up again" in str(caught.value)
    assert joins(node.home) == []


def test_a_node_in_the_swarm_already_does_not_join_again(hosts, keys):  # noqa: F811
    _, node = hosts
    (node.home / "active").touch()
    logged: list[str] = []
    join(member_props(hosts, keys), log=logged.append)
    assert joins(node.home) == []
    assert any("is in the Swarm already (as manager)" in line for line in logged)


def test_outputs_hold_no_token_and_an_unchanged_member_does_not_join_again(hosts, keys, monkeypatch):  # noqa: F811
    _, node = hosts
    monkeypatch.setattr("components.resources.swarm.member._log_to_engine", lambda line: None)
    provider = SwarmMemberProvider()
    props = member_props(hosts, keys)
    created = provider.create(props)
    assert TOKEN not in repr(created.outs)
    assert provider.diff(created.id, created.outs, props).changes is False
    provider.update(created.id, created.outs, props)
    assert len(joins(node.home)) == 1
    moved = {**props, "role": "worker"}
    assert provider.diff(created.id, created.outs, moved).changes is True
