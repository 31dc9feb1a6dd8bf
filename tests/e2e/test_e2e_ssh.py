"""The SSH runner against the real sshd of the test host (marker `e2e`): lines stream as they come,
heartbeats while a script is quiet, failures name the host, the exit code and the last lines, stdout
kept is bounded, and neither the script nor the data it reads shows in any process's command line.
Its unit tests are in tests/unit/ssh/test_remote.py."""

import hashlib
from pathlib import Path

import pytest

from components.ssh import STDOUT_LIMIT, RemoteCommandError, run_script
from tests.unit.ssh.test_remote import connection

pytestmark = pytest.mark.e2e


@pytest.fixture
def ssh(test_host):
    """A connection to the test host and the private key text."""
    key = Path(test_host["private_key_path"]).read_text()
    return connection(test_host["port"], test_host["host_public_key"]), key


def test_lines_stream_as_they_come_and_stdout_is_returned(ssh):
    """stdout and stderr lines reach the log, labelled; the return value is stdout alone."""
    conn, key = ssh
    logs: list[str] = []
    out = run_script(conn, key, "echo one\necho two >&2\nprintf last\n", "job", logs.append)
    assert out == "one\nlast"
    assert {"job: one", "job: two", "job: last"} <= set(logs)


def test_heartbeat_while_the_script_is_quiet(ssh):
    """A quiet script still shows signs of life in the log."""
    conn, key = ssh
    logs: list[str] = []
    run_script(conn, key, "sleep 2\necho done\n", "build", logs.append, heartbeat=0.5)
    beats = [line for line in logs if line.startswith("build: still running after")]
    assert len(beats) >= 2, logs
    assert logs[-1] == "build: done"


def test_failure_names_the_host_exit_code_and_last_lines(ssh):
    conn, key = ssh
    with pytest.raises(RemoteCommandError) as caught:
        run_script(conn, key, "echo step one\necho 'it broke' >&2\nexit 3\n", "build", lambda _: None)
    message = str(caught.value)
    assert message.startswith(f"step: build (build on deploy@127.0.0.1:{conn.port}, exit code 3)\n")
    assert message.endswith("last log lines:\n    step one\n    it broke")


def test_stdout_kept_is_bounded(ssh):
    """Only the tail of a large output is kept, so Pulumi state stays small."""
    conn, key = ssh
    out = run_script(conn, key, "head -c 200000 /dev/zero | tr '\\0' x\necho end\n", "big", lambda _: None)
    assert len(out) == STDOUT_LIMIT
    assert out.endswith("xend\n")


def test_the_script_does_not_show_in_the_process_list(ssh):
    """The script travels on stdin; the host runs plain `bash -s`."""
    conn, key = ssh
    out = run_script(conn, key, "marker=workhub-secret-marker\nps -eo args | grep -c \"$marker\" || true\n",
                     "ps", lambda _: None)
    assert out.strip() == "1"  # only the grep itself


def test_a_script_followed_by_data_does_not_show_in_the_process_list(ssh, tmp_path):
    """With data after it on stdin (a restore's archive), the script (and the secrets in front of
    it) is read by the shell that runs it: no process has it in its command line, and it still
    fails with its own exit code under its own `set -e`."""
    conn, key = ssh
    (tmp_path / "data").write_bytes(b"the archive\n")
    script = "set -eu\nmarker=workhub-secret-marker\nps -eo args | grep -c \"$marker\" || true\nhead -c 3\n"
    with (tmp_path / "data").open("rb") as data_in:
        out = run_script(conn, key, script, "ps", lambda _: None, data_in=data_in)
    assert out.split() == ["1", "the"]  # only the grep itself; then the data
    with pytest.raises(RemoteCommandError) as caught, (tmp_path / "data").open("rb") as data_in:
        run_script(conn, key, "set -eu\nfalse\necho not reached\n", "fails", lambda _: None, data_in=data_in)
    assert "exit code 1" in str(caught.value) and "not reached" not in str(caught.value)


def test_data_streams_in_and_out_byte_for_byte(ssh, tmp_path):
    """A script reads a file's bytes on its stdin after its own text, and a script's stdout can be
    data written to a file (a backup), neither through the log nor the bounded stdout tail."""
    conn, key = ssh
    payload = bytes(range(256)) * 4096 + b"\n\0end"
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    logs: list[str] = []
    with source.open("rb") as data_in:
        out = run_script(conn, key, "echo reading >&2\nsha256sum | cut -d' ' -f1\n", "restore", logs.append,
                         data_in=data_in)
    assert out.strip() == hashlib.sha256(payload).hexdigest()
    assert "restore: reading" in logs
    sink = tmp_path / "out.bin"
    with sink.open("wb") as data_out:
        rest = run_script(conn, key, "echo writing >&2\ncat /dev/stdin\n", "backup", logs.append,
                          data_in=source.open("rb"), data_out=data_out)
    assert sink.read_bytes() == payload and rest == ""
    assert [line for line in logs if line.startswith("backup: ")] == ["backup: writing"]
