"""The SSH runner's dial limits, with no host (its runs against the test host's sshd are in
tests/e2e/test_e2e_ssh.py)."""

import socket
import subprocess

import pytest

from components.ssh import Connection, RemoteCommandError, connect


def connection(port: int, host_key: str, **overrides) -> Connection:
    settings = dict(host="127.0.0.1", port=port, user="deploy", host_key=host_key,
                    dial_error_limit=3, per_dial_timeout=5, keep_alive_interval=30)
    settings.update(overrides)
    return Connection(**settings)


def test_unreachable_host_gives_up_after_the_dial_limit(tmp_path):
    """Connection errors are retried up to dialErrorLimit, with a pause between tries."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    host_key = (tmp_path / "k.pub").read_text().split(" ", 2)
    conn = connection(port, " ".join(host_key[:2]), dial_error_limit=3, per_dial_timeout=1)
    logs: list[str] = []
    pauses: list[float] = []
    with pytest.raises(RemoteCommandError) as caught:
        connect(conn, (tmp_path / "k").read_text(), logs.append, sleep=pauses.append)
    assert f"cannot connect to deploy@127.0.0.1:{port} after 3 attempt(s)" in str(caught.value)
    assert pauses == [1, 2]
    assert [line.split(";")[1].strip() for line in logs] == ["try 2 of 3 in 1 s", "try 3 of 3 in 2 s"]
