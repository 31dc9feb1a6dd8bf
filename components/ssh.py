"""The SSH session to a host: connect with a pinned host key, run a script with its output streamed
line by line (a heartbeat while it is quiet, a bounded tail kept), resume after a dropped connection,
and say once what failed, where and why. Both the RemoteCommand provider (components.resources.command)
and the CLI (workhub/) run their scripts through it.
"""

from __future__ import annotations

import base64
import io
import re
import shlex
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping, Optional

from components.constants import PULUMI_CLI, STREAM_MARK
from components.render.shell import assignments

if TYPE_CHECKING:
    import paramiko
# paramiko (with cryptography, most of the provider's start) is imported by the functions that
# talk SSH, when they first run: the provider's process answers a no-op's checks and diffs without.

# State keeps at most this much of a command's stdout: enough for the facts a script reports.
STDOUT_LIMIT = 64 * 1024
ERROR_TAIL_LINES = 40
HEARTBEAT_SECONDS = 30


@dataclass(frozen=True)
class Connection:
    """How to reach the host. The private key is kept apart: it travels only as a secret."""

    host: str
    port: int
    user: str
    host_key: str
    dial_error_limit: int
    per_dial_timeout: int
    keep_alive_interval: int

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def to_props(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "hostKey": self.host_key,
            "dialErrorLimit": self.dial_error_limit,
            "perDialTimeout": self.per_dial_timeout,
            "keepAliveInterval": self.keep_alive_interval,
        }

    @staticmethod
    def from_props(props: Mapping[str, Any]) -> "Connection":
        return Connection(
            host=props["host"],
            port=int(props["port"]),
            user=props["user"],
            host_key=props["hostKey"],
            dial_error_limit=int(props["dialErrorLimit"]),
            per_dial_timeout=int(props["perDialTimeout"]),
            keep_alive_interval=int(props["keepAliveInterval"]),
        )


class RemoteCommandError(Exception):
    """A remote script failed, or the host could not be reached or trusted."""


# What a command's role (the end of its label, `<hub>-<role>` or `build-host-<role>`) does, in words.
STEP_WORDS = {"build": "build", "pull": "pull", "push": "push", "run": "deploy", "promote": "promotion",
              "facts": "host facts", "preflight": "preflight", "setup": "host setup", "deploy": "Swarm deploy"}
HUB_STEPS = {"build", "pull", "push", "run", "promote"}
# The steps of the whole stack, not of one hub: the build host's, and the Swarm's (swarm-init,
# swarm-join-<node>, swarm-labels, swarm-deploy).
STACK_STEPS = ("build-host-", "swarm-")
# A workhub script says why it fails on one line, `<step>: FAILED: <reason>`, and where its whole
# log is kept with "full log on the host: <path>" at the end of that line (components.render.host.build, deploy).
_FAILED = re.compile(r"^(?:[\w-]+: )?FAILED: (.*)$")
_LOG_PATH = re.compile(r"[;,.]? *full log on the host: (\S+?)\.?$")
FAILURE_TAIL_LINES = 15


def failure_message(label: str, host: str, code: int, tail: list[str]) -> str:
    """What a failed script tells the user, from its last lines: the hub, the step, the reason (its
    FAILED line), its other last lines and where its whole log is on the host."""
    hub, _, role = label.rpartition("-")
    if label.startswith(STACK_STEPS) and role not in HUB_STEPS:
        hub = ""
    step = STEP_WORDS.get(role, label)
    if "-volume-" in label:  # a hub's volume (components.resources.host.hub_data): <hub>-volume-<name>
        hub, _, name = label.partition("-volume-")
        step = f"volume {name}"
    failed = [i for i, line in enumerate(tail) if _FAILED.match(line)]
    reason, log, others = f"the script ended with exit code {code}", "", tail
    if failed:
        reason = _FAILED.match(tail[failed[-1]]).group(1)
        found = _LOG_PATH.search(reason)
        if found:
            reason, log = reason[:found.start()].rstrip(" ;,"), found.group(1)
        others = [line for i, line in enumerate(tail) if i not in failed]
    others = [line for line in others if line.strip()][-FAILURE_TAIL_LINES:]
    lines = [f"hub: {hub}"] if hub else []
    lines += [f"step: {step} ({label} on {host}, exit code {code})", f"reason: {reason}"]
    if others:
        lines += ["last log lines:", *(f"    {line}" for line in others)]
    if log:
        lines.append(f"log on the host: {log}")
    return "\n".join(lines)


class ConnectionDropped(RemoteCommandError):
    """The SSH connection went away while a command ran; what the command started goes on.
    `streamed` is how many lines after its stream mark the command had printed (None: no mark)."""

    def __init__(self, message: str, streamed: Optional[int] = None):
        super().__init__(message)
        self.streamed = streamed


def _private_key(text: str) -> paramiko.PKey:
    import paramiko

    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise RemoteCommandError(
        "workhub:sshPrivateKey is not an unencrypted ed25519, ECDSA or RSA private key"
    )


def _host_key(line: str) -> paramiko.PKey:
    import paramiko

    kind, data = line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def connect(
    conn: Connection,
    private_key: str,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> paramiko.Transport:
    """An authenticated SSH transport to a host whose key matches the pinned one.

    Network errors are retried up to the dial error limit with a growing pause; a wrong host key
    or a refused login fails at once, since trying again cannot fix either.
    """
    import paramiko

    key = _private_key(private_key)
    expected = _host_key(conn.host_key)
    last_error: Optional[Exception] = None
    for attempt in range(1, conn.dial_error_limit + 1):
        transport: Optional[paramiko.Transport] = None
        try:
            sock = socket.create_connection((conn.host, conn.port), timeout=conn.per_dial_timeout)
            transport = paramiko.Transport(sock)
            transport.banner_timeout = conn.per_dial_timeout
            transport.handshake_timeout = conn.per_dial_timeout
            if not expected.get_name().startswith("ssh-rsa"):
                transport.get_security_options().key_types = [expected.get_name()]
            transport.start_client(timeout=conn.per_dial_timeout)
        except (OSError, paramiko.SSHException, EOFError) as error:
            if transport is not None:
                transport.close()
            last_error = error
            if attempt < conn.dial_error_limit:
                pause = min(2 ** (attempt - 1), 10)
                log(f"cannot reach {conn.describe()} ({error}); try {attempt + 1} of {conn.dial_error_limit} in {pause} s")
                sleep(pause)
            continue
        offered = transport.get_remote_server_key()
        if offered.asbytes() != expected.asbytes():
            transport.close()
            raise RemoteCommandError(
                f"host key mismatch for {conn.describe()}: it offered {offered.get_name()} "
                f"{offered.get_base64()}, the stack pins {conn.host_key}. If the host was rebuilt, "
                f"set the new key with `{PULUMI_CLI} config set --stack <stack> --path 'workhub:host.hostKey' '<key>'`."
            )
        try:
            transport.auth_publickey(conn.user, key)
        except paramiko.AuthenticationException as error:
            transport.close()
            raise RemoteCommandError(
                f"{conn.describe()} refused the SSH key ({error}); check workhub:sshPrivateKey and "
                f"the authorized_keys of {conn.user}"
            ) from error
        if conn.keep_alive_interval:
            transport.set_keepalive(conn.keep_alive_interval)
        return transport
    raise RemoteCommandError(
        f"cannot connect to {conn.describe()} after {conn.dial_error_limit} attempt(s): {last_error}"
    )


class _Lines:
    """Splits a byte stream into lines, handing each complete one to `emit`."""

    def __init__(self, emit: Callable[[str], None]):
        self._emit = emit
        self._partial = b""

    def feed(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._emit(line.decode("utf-8", "replace"))

    def close(self) -> None:
        if self._partial:
            self._emit(self._partial.decode("utf-8", "replace"))
            self._partial = b""


class _Output:
    """What a command printed: every line to the log (labelled), the last lines for an error
    message, and a bounded tail of stdout (or, with a sink, all of stdout to the sink)."""

    def __init__(self, label: str, log: Callable[[str], None], sink: Optional[BinaryIO]):
        self.label, self.log, self.sink = label, log, sink
        self.started = self.last = time.monotonic()
        self.tail: list[str] = []
        self.stdout = bytearray()
        self.out, self.err = _Lines(self.line), _Lines(self.line)
        self.streamed: Optional[int] = None
        """Lines after the script's stream mark (None before it printed one)."""

    def line(self, text: str) -> None:
        if text == STREAM_MARK:
            self.streamed = 0
            return
        if self.streamed is not None:
            self.streamed += 1
        self.last = time.monotonic()
        self.log(f"{self.label}: {text}")
        self.tail.append(text)
        del self.tail[:-ERROR_TAIL_LINES]

    def stdout_data(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.write(data)
            return
        self.stdout += data
        del self.stdout[:-STDOUT_LIMIT]
        self.out.feed(data)

    def heartbeat(self, every: float) -> None:
        now = time.monotonic()
        if now - self.last >= every:
            self.log(f"{self.label}: still running after {int(now - self.started)} s (quiet for {int(now - self.last)} s)")
            self.last = now


# How long, after a command's exit status, its output may still arrive before the channel's EOF.
EOF_GRACE_S = 5.0


def _execute(
    transport: paramiko.Transport,
    command: str,
    stdin: bytes | BinaryIO,
    label: str,
    log: Callable[[str], None],
    heartbeat: float,
    sink: Optional[BinaryIO] = None,
) -> tuple[int, bytes, list[str]]:
    """Run `command`, feeding it `stdin` (bytes, or a file read to its end); stream its lines;
    return (status, stdout tail, last lines). With `sink`, stdout is data: all of it goes there,
    none to the log. Raises ConnectionDropped when the connection goes away before the command's
    exit status arrives."""
    import paramiko

    output = _Output(label, log, sink)
    try:
        channel = transport.open_session()
        channel.exec_command(command)
        if isinstance(stdin, bytes):
            channel.sendall(stdin)
        else:
            while chunk := stdin.read(1 << 16):
                channel.sendall(chunk)
        channel.shutdown_write()
        status_at: Optional[float] = None
        while True:
            busy = False
            if channel.recv_ready():
                output.stdout_data(channel.recv(32768))
                busy = True
            if channel.recv_stderr_ready():
                output.err.feed(channel.recv_stderr(32768))
                busy = True
            if busy:
                continue
            if channel.exit_status_ready():
                # The exit status can come before the last of the output: sshd sends it when the
                # command ends, and what the command left in its pipes after it, up to the channel's
                # EOF. So read on to the EOF (a server that never sends one gets a few seconds).
                status_at = status_at if status_at is not None else time.monotonic()
                if channel.eof_received or channel.closed or time.monotonic() - status_at > EOF_GRACE_S:
                    break
            if not transport.is_active():
                raise ConnectionDropped(f"{label}: the SSH connection dropped", output.streamed)
            output.heartbeat(heartbeat)
            time.sleep(0.05)
    except (OSError, EOFError, paramiko.SSHException) as error:
        raise ConnectionDropped(f"{label}: the SSH connection dropped ({error or type(error).__name__})",
                                output.streamed) from None
    output.out.close()
    output.err.close()
    status = channel.recv_exit_status()
    if status == -1:
        # The channel closed with no exit status: the session went away under the command.
        raise ConnectionDropped(f"{label}: the SSH session ended before the command did", output.streamed)
    return status, bytes(output.stdout), output.tail


def run_script(
    conn: Connection,
    private_key: str,
    script: str,
    label: str,
    log: Callable[[str], None],
    heartbeat: float = HEARTBEAT_SECONDS,
    upload: Optional[tuple[bytes, str]] = None,
    data_in: Optional[BinaryIO] = None,
    data_out: Optional[BinaryIO] = None,
) -> str:
    """Run `script` with bash on the host, streaming its output; return the tail of its stdout.

    With `upload` (a gzipped tar and a directory under the user's home), that directory is first
    replaced by the archive's content, over the same connection. With `data_in`, the script reads
    that file's bytes on its stdin (after its own text); with `data_out`, its stdout is data
    written there (a backup), and only its stderr is logged.

    When the connection drops while the script runs, it connects again (up to the dial error
    limit, with connect's growing pause) and runs the script again: workhub's scripts are made for
    that (a build attaches to the one running on the host, by its content id; a deploy takes up
    where the last one was). Only when the host cannot be reached again does it fail, saying what
    goes on there."""
    drops = 0
    stream_from = 1
    while True:
        try:
            transport = connect(conn, private_key, log)
        except RemoteCommandError as error:
            if not drops:
                raise
            raise RemoteCommandError(
                f"{label}: the SSH connection to {conn.describe()} dropped and could not be made again ({error}). "
                "What the command started goes on on the host: a build keeps building (its log is under "
                "~/.workhub/builds/ there), a deploy finishes or leaves the old container serving. Once the host "
                "answers, run `scripts/workhub up` again: it attaches to what runs there instead of starting "
                "again."
            ) from None
        try:
            resumed = script if stream_from == 1 else assignments({"stream_from": stream_from}) + "\n" + script
            status, stdout, tail = _run_once(transport, conn, resumed, label, log, heartbeat, upload, data_in,
                                             data_out)
            break
        except ConnectionDropped as dropped:
            drops += 1
            streams = [stream for stream in (data_in, data_out) if stream is not None]
            if drops >= conn.dial_error_limit or not all(stream.seekable() for stream in streams):
                raise RemoteCommandError(
                    f"{dropped}, {drops} time(s); what the command started goes on on the host. Run "
                    "`scripts/workhub up` again: it attaches to it.") from None
            if dropped.streamed is not None:
                stream_from += dropped.streamed
            log(f"{label}: the SSH connection to {conn.describe()} dropped; connecting again (what the command "
                "started on the host goes on, and running it again attaches to it)")
            for stream in streams:
                stream.seek(0)
                if stream is data_out:
                    stream.truncate()
        finally:
            transport.close()
    if status != 0:
        raise RemoteCommandError(failure_message(label, conn.describe(), status, tail))
    return stdout.decode("utf-8", "replace")


def _run_once(transport: paramiko.Transport, conn: Connection, script: str, label: str, log: Callable[[str], None],
              heartbeat: float, upload: Optional[tuple[bytes, str]], data_in: Optional[BinaryIO],
              data_out: Optional[BinaryIO]) -> tuple[int, bytes, list[str]]:
    """One run of the upload (if any) and the script over one connection."""
    if upload is not None:
        archive, remote_dir = upload
        target = '"$HOME"/' + shlex.quote(remote_dir)
        # The directory it is in (~/.workhub) is the user's alone; the context's own files keep the
        # modes Docker sends (they become the image's), whatever the session's umask.
        top = '"$HOME"/' + shlex.quote(remote_dir.split("/", 1)[0])
        command = (f"(umask 077 && mkdir -p -- {top}) && chmod 700 -- {top} && umask 022 && rm -rf -- {target} "
                   f"&& mkdir -p -- {target} && tar -xzf - -C {target}")
        status, _, tail = _execute(transport, command, archive, label, log, heartbeat)
        if status != 0:
            raise RemoteCommandError(
                f"{label}: uploading the build context to ~/{remote_dir} on {conn.describe()} failed "
                f"with exit code {status}:\n" + "\n".join(f"    {t}" for t in tail)
            )
        log(f"{label}: uploaded {len(archive)} bytes to ~/{remote_dir}")
    # The script goes in on stdin: nothing of it (nor the secrets in front of it) shows in the
    # host's process list. With data to pass on, the script is read whole first, then run.
    if data_in is None:
        return _execute(transport, "bash -s", script.encode(), label, log, heartbeat, data_out)
    return _execute(transport, _SCRIPT_THEN_DATA, _Chain(_framed(script), data_in), label, log, heartbeat, data_out)


# Reads a script of a given length from stdin (bash's read takes exactly those bytes from a pipe;
# head or cat could read ahead), then runs it with `eval`, in the same shell, so the rest of stdin
# is its own and its text stays in that shell's memory: as the argument of another command (`bash -c
# "$s"`) it would be in that process's command line, readable by every user of the host, for as
# long as the script runs.
_SCRIPT_THEN_DATA = "bash -c " + shlex.quote(
    'IFS= read -r workhub_n && LC_ALL=C IFS= read -r -N "$workhub_n" workhub_script || exit 2; '
    'unset workhub_n; eval "$workhub_script"')


def _framed(script: str) -> bytes:
    data = script.encode()
    return f"{len(data)}\n".encode() + data


class _Chain:
    """Bytes, then a file, as one stream to read."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = io.BytesIO(head), rest

    def read(self, size: int) -> bytes:
        return self._head.read(size) or self._rest.read(size)


def with_secrets(script: str, values: Mapping[str, str]) -> str:
    """`script` with a shell variable (not exported) holding each secret value put in front of it,
    at run time only: the secrets travel on the session's stdin with the script, so they are in no
    command line, no environment, no log and no state outside the secret input."""
    if not values:
        return script
    try:
        return assignments(dict(sorted(values.items()))) + "\n" + script
    except ValueError as error:
        raise RemoteCommandError(f"{error} (the name of a secret value)") from None
