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


class LateOutputChannel:
    """A session channel whose exit status arrives before the last of the command's stdout, as sshd
    may send it (the status when the command ends, what was left in its pipe after), then EOF."""

    def __init__(self, chunks: list[bytes]):
        self.events = [("status", 0)] + [("out", chunk) for chunk in chunks] + [("eof", None)]
        self.out = b""
        self.status: int | None = None
        self.eof_received = False
        self.closed = False

    def _advance(self) -> None:
        if self.events:
            kind, value = self.events.pop(0)
            if kind == "status":
                self.status = value
            elif kind == "out":
                self.out += value
            else:
                self.eof_received = True

    def exec_command(self, command: str) -> None:
        self._advance()  # the command ends at once: its status is there first

    def sendall(self, data: bytes) -> None:
        pass

    def shutdown_write(self) -> None:
        pass

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv(self, size: int) -> bytes:
        data, self.out = self.out[:size], self.out[size:]
        return data

    def recv_stderr_ready(self) -> bool:
        return False

    def exit_status_ready(self) -> bool:
        ready = self.status is not None
        self._advance()  # time passes: the next message arrives
        return ready

    def recv_exit_status(self) -> int:
        return self.status


class OneChannelTransport:
    def __init__(self, channel: LateOutputChannel):
        self.channel = channel

    def open_session(self) -> LateOutputChannel:
        return self.channel

    def is_active(self) -> bool:
        return True


def test_output_that_arrives_after_the_exit_status_is_kept():
    """The facts' JSON line, sent after the exit status, is still the command's stdout (read to EOF)."""
    from components.ssh import _execute

    channel = LateOutputChannel([b"first line\n", b'{"cpus": 2}\n'])
    status, stdout, _ = _execute(OneChannelTransport(channel), "true", b"", "host-facts", lambda line: None, 60.0)
    assert status == 0 and stdout.decode().splitlines()[-1] == '{"cpus": 2}'
