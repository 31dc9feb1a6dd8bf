"""RemoteCommand's provider end to end against a real SSH server: a paramiko server in a thread on
127.0.0.1 that takes one client key and runs each `exec` request with `bash -c` in a temporary
home, so `connect`, `run_script`, `_pack` and the provider's create, diff, update and delete run
their real code paths without sshd. Each test fails when its line in components/ssh.py or
components/resources/command.py breaks:
the host key check, the inputs diff compares, the inputs that rerun the script, the delete script,
the planned-hash check of an upload, the stdout bound, the webhook notices and the drift a
refresh's check finds."""

from __future__ import annotations

import io
import json
import os
import stat
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from components.plan.context import build_files, content_hash, context_files
from components.ssh import STDOUT_LIMIT, Connection, RemoteCommandError, run_script
from components.resources.command import RemoteCommandProvider, Upload

USER = "deploy"


class Key:
    """A fresh Ed25519 key (paramiko cannot generate one): as paramiko's key, as the private key text
    the stack holds, and as the `ssh-ed25519 AAAA...` line the stack pins."""

    def __init__(self):
        self.text = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()
        self.pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(self.text))
        self.line = f"{self.pkey.get_name()} {self.pkey.get_base64()}"


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {"host": Key(), "other_host": Key(), "client": Key()}


class Host:
    """An SSH server offering `host_key`, letting in only `client_key`, running every command with
    bash in `home` (feeding it the channel's stdin, streaming back stdout and stderr, then sending
    the exit status). `commands` lists what it was asked to run."""

    def __init__(self, home: Path, host_key: paramiko.PKey, client_key: paramiko.PKey):
        self.home, self.host_key, self.client_key = home, host_key, client_key
        self.commands: list[str] = []
        self.transports: list[paramiko.Transport] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            try:
                transport.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    def execute(self, channel: paramiko.Channel, command: str) -> None:
        env = {"HOME": str(self.home), "PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"}
        proc = subprocess.Popen(["bash", "-c", command], cwd=self.home, env=env, bufsize=0,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def feed() -> None:
            writing = True
            while data := channel.recv(65536):
                if writing:
                    try:
                        proc.stdin.write(data)
                    except BrokenPipeError:
                        writing = False  # keep draining, so the client's send never blocks
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass

        def pump(stream, send) -> None:
            while data := os.read(stream.fileno(), 65536):
                send(data)

        threading.Thread(target=feed, daemon=True).start()
        pumps = [threading.Thread(target=pump, args=(proc.stdout, channel.sendall)),
                 threading.Thread(target=pump, args=(proc.stderr, channel.sendall_stderr))]
        for thread in pumps:
            thread.start()
        for thread in pumps:
            thread.join()
        channel.send_exit_status(proc.wait())
        channel.close()

    def close(self) -> None:
        self.listener.close()
        for transport in self.transports:
            transport.close()


class _Server(paramiko.ServerInterface):
    def __init__(self, host: Host):
        self.host = host

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == USER and key.asbytes() == self.host.client_key.asbytes():
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.host.commands.append(command.decode())
        threading.Thread(target=self.host.execute, args=(channel, command.decode()), daemon=True).start()
        return True


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def host(home, keys):
    server = Host(home, keys["host"].pkey, keys["client"].pkey)
    yield server
    server.close()


class Webhook:
    """A local HTTP server recording the JSON body of every POST."""

    def __init__(self):
        posts = self.posts = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def connection(port: int, host_key: str) -> Connection:
    return Connection(host="127.0.0.1", port=port, user=USER, host_key=host_key, dial_error_limit=2,
                      per_dial_timeout=5, keep_alive_interval=30)


# The create script leaves its mark in the host's home: one line per run, saying which script ran.
CREATE = 'echo created >>"$HOME/runs"\necho "{\\"runs\\": $(wc -l <"$HOME/runs")}"\n'
DELETE = 'echo deleted >>"$HOME/runs"\n'


def props(port: int, keys: dict[str, Key], **changes) -> dict:
    """A RemoteCommand's inputs as the provider receives them (the shape of `RemoteCommand.__init__`,
    secrets already plain)."""
    inputs = {
        "label": "wbsaleshub-build",
        "connection": connection(port, keys["host"].line).to_props(),
        "privateKey": keys["client"].text,
        "create": CREATE,
        "delete": None,
        "triggers": ["a"],
        "upload": None,
        "notifyUrl": None,
        "secretValues": None,
        "check": None,
        "stdout": None,
    }
    inputs.update(changes)
    return inputs


def runs(home: Path) -> list[str]:
    path = home / "runs"
    return path.read_text().splitlines() if path.exists() else []


def planned(root: Path, remote_dir: str = ".workhub/contexts/staging/wbsaleshub") -> dict:
    """The upload input for `root` as the program plans it: with the content hash of its files now."""
    return Upload(str(root), remote_dir, content_hash(root, context_files(root))).to_props()


@pytest.fixture
def context(tmp_path) -> Path:
    root = tmp_path / "context"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM node:20-bookworm-slim\n")
    (root / "server.js").write_text("console.log('v1')\n")
    (root / ".dockerignore").write_text("secret.txt\n")
    (root / "secret.txt").write_text("not for the host\n")
    return root


# --- the host key ------------------------------------------------------------------------------

def test_a_host_offering_another_key_is_refused_before_any_command_runs(home, keys):
    impostor = Host(home, keys["other_host"].pkey, keys["client"].pkey)
    try:
        conn = connection(impostor.port, keys["host"].line)
        with pytest.raises(RemoteCommandError) as caught:
            run_script(conn, keys["client"].text, CREATE, "build", lambda _: None)
    finally:
        impostor.close()
    message = str(caught.value)
    assert message.startswith(f"host key mismatch for {USER}@127.0.0.1:{impostor.port}: it offered "
                              f"{keys['other_host'].line}, the stack pins {keys['host'].line}.")
    assert impostor.commands == [] and runs(home) == []


def test_the_pinned_host_runs_the_script_on_stdin_and_returns_its_stdout(host, home, keys):
    logs: list[str] = []
    out = run_script(connection(host.port, keys["host"].line), keys["client"].text,
                     CREATE + "echo to-the-log >&2\n", "build", logs.append)
    assert out == '{"runs": 1}\n' and runs(home) == ["created"]
    assert host.commands == ["bash -s"]
    assert {"build: {\"runs\": 1}", "build: to-the-log"} <= set(logs)


# --- diff ----------------------------------------------------------------------------------------

def planned_stub() -> dict:
    return {"localDir": "/src/WBSalesHub", "remoteDir": ".workhub/contexts/staging/wbsaleshub", "hash": "0" * 64}


@pytest.mark.parametrize("key, value", [
    ("create", "echo another script\n"),
    ("triggers", ["b"]),
    ("upload", {"localDir": "/src/WBSalesHub", "remoteDir": ".workhub/contexts/staging/wbsaleshub",
                "hash": "f" * 64}),
    ("secretValues", {"registry_password": "new"}),
    ("privateKey", Key().text),  # another key, made at run time
    ("connection", connection(2222, "ssh-ed25519 AAAA").to_props()),
    ("delete", "docker image rm x\n"),
    ("label", "wbsaleshub-build-2"),
    ("check", "echo 'drift: another check'\n"),
])
def test_diff_reports_a_change_of_each_input_it_compares(keys, key, value):
    olds = {**props(22, keys, upload=planned_stub(), secretValues={"registry_password": "old"}),
            "stdout": '{"runs": 1}\n'}
    news = {**olds, "stdout": None, key: value}
    assert RemoteCommandProvider().diff("id", olds, news).changes is True


def test_diff_reports_nothing_when_no_input_changed(keys):
    """The stdout the old state holds is an output, not an input: it is no change."""
    news = props(22, keys, upload=planned_stub(), secretValues={"registry_password": "old"})
    olds = {**news, "stdout": '{"runs": 1}\n'}
    assert RemoteCommandProvider().diff("id", olds, dict(news)).changes is False



# --- create, update, delete ----------------------------------------------------------------------

@pytest.mark.parametrize("key, reruns", [
    ("create", True), ("triggers", True), ("upload", True), ("delete", False), ("label", False),
])
def test_update_reruns_the_script_only_when_create_triggers_or_upload_changed(host, home, keys, context, key,
                                                                                reruns):
    provider = RemoteCommandProvider()
    olds = props(host.port, keys, upload=planned(context), delete=DELETE)
    created = provider.create(olds)
    assert runs(home) == ["created"] and created.outs["stdout"] == '{"runs": 1}\n'
    if key == "upload":
        (context / "server.js").write_text("console.log('v2')\n")
    value = {"create": CREATE.replace("created", "created again"), "triggers": ["b"], "upload": planned(context),
             "delete": 'echo "deleted, differently" >>"$HOME/runs"\n', "label": "renamed"}[key]
    news = {**olds, key: value}
    updated = provider.update(created.id, created.outs, news).outs
    assert updated[key] == value
    if reruns:
        assert runs(home) == ["created", "created again" if key == "create" else "created"]
        assert updated["stdout"] == '{"runs": 2}\n'
    else:
        assert runs(home) == ["created"] and updated["stdout"] == '{"runs": 1}\n'
    uploaded = home / ".workhub/contexts/staging/wbsaleshub/server.js"
    assert uploaded.read_text() == ("console.log('v2')\n" if key == "upload" else "console.log('v1')\n")


def test_create_uploads_the_context_as_docker_sees_it_replacing_the_last_one(host, home, keys, context):
    stale = home / ".workhub/contexts/staging/wbsaleshub/removed.js"
    stale.parent.mkdir(parents=True)
    stale.write_text("from the last upload\n")
    check = 'cd "$HOME/.workhub/contexts/staging/wbsaleshub" && find . -type f | sort >&2 && cat server.js\n'
    out = RemoteCommandProvider().create(props(host.port, keys, upload=planned(context), create=check)).outs
    assert out["stdout"] == "console.log('v1')\n"
    uploaded = sorted(p.name for p in stale.parent.iterdir())
    assert uploaded == [".dockerignore", "Dockerfile", "server.js"], "ignored and stale files are not there"
    assert host.commands[0].startswith('(umask 077 && mkdir -p -- "$HOME"/.workhub) && chmod 700 -- "$HOME"/.workhub '
                                       '&& umask 022 && rm -rf -- "$HOME"/.workhub/contexts/staging/wbsaleshub && ')
    assert host.commands[1:] == ["bash -s"]


def test_an_upload_keeps_workhubs_directory_private_and_the_contexts_modes_whatever_the_umask(host, home, keys,
                                                                                               context):
    """~/.workhub is made 0700 (an older, looser one too); the context's files keep the modes Docker
    sends (they become the image's), even in a session whose umask is 077."""
    (home / ".workhub").mkdir()
    os.chmod(home / ".workhub", 0o755)
    (context / "start.sh").write_text("#!/bin/sh\nexec node server.js\n")
    os.chmod(context / "start.sh", 0o755)
    previous = os.umask(0o077)  # the test server's sessions run with this process's umask
    try:
        RemoteCommandProvider().create(props(host.port, keys, upload=planned(context), create="true\n"))
    finally:
        os.umask(previous)
    uploaded = home / ".workhub/contexts/staging/wbsaleshub"
    assert stat.S_IMODE((home / ".workhub").stat().st_mode) == 0o700
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in [uploaded, *uploaded.iterdir()]} == {
        "wbsaleshub": 0o755, "server.js": 0o644, "start.sh": 0o755, "Dockerfile": 0o644, ".dockerignore": 0o644}


def test_the_upload_carries_links_as_links_and_the_build_files_docker_reads_anyway(host, home, keys, context,
                                                                                    tmp_path):
    """A link to a file outside the context arrives as the same link (never the file), and a Dockerfile
    and .dockerignore that .dockerignore leaves out of the context arrive all the same."""
    (tmp_path / "id_ed25519").write_text("the contents of a file outside the context\n")
    (context / "key").symlink_to(tmp_path / "id_ed25519")
    (context / ".dockerignore").write_text("secret.txt\nDockerfile\n.dockerignore\n")
    files = context_files(context)
    assert files == ["key", "server.js"]
    upload = Upload(str(context), ".workhub/contexts/staging/wbsaleshub", content_hash(context, files),
                    build_files(context, files, "Dockerfile")).to_props()
    assert upload["buildFiles"] == ["Dockerfile", ".dockerignore"]
    RemoteCommandProvider().create(props(host.port, keys, upload=upload, create="true\n"))
    uploaded = home / ".workhub/contexts/staging/wbsaleshub"
    assert sorted(p.name for p in uploaded.iterdir()) == [".dockerignore", "Dockerfile", "key", "server.js"]
    assert os.readlink(uploaded / "key") == str(tmp_path / "id_ed25519")


def test_an_upload_whose_content_changed_after_the_plan_is_refused(host, home, keys, context, webhook):
    inputs = props(host.port, keys, upload=planned(context), notifyUrl=webhook.url)
    (context / "server.js").write_text("console.log('edited after the preview')\n")
    with pytest.raises(RemoteCommandError) as caught:
        RemoteCommandProvider().create(inputs)
    assert str(caught.value) == (f"{context} changed after this update was planned; run `scripts/workhub up` again to "
                                 "build what is there now")
    assert host.commands == [] and runs(home) == []
    assert [post["result"] for post in webhook.posts] == ["failed"]


def test_delete_runs_the_delete_script_without_upload_or_notice(host, home, keys, context, webhook):
    RemoteCommandProvider().delete("id", props(host.port, keys, delete=DELETE, upload=planned(context),
                                               notifyUrl=webhook.url))
    assert runs(home) == ["deleted"]
    assert host.commands == ["bash -s"], "no upload before a delete"
    assert webhook.posts == []


def test_delete_without_a_delete_script_runs_nothing(host, home, keys):
    RemoteCommandProvider().delete("id", props(host.port, keys))
    assert host.commands == [] and runs(home) == []


# --- what state keeps ---------------------------------------------------------------------------

def test_only_the_last_stdout_limit_bytes_of_stdout_reach_the_state(host, keys):
    big = "head -c 200000 /dev/zero | tr '\\0' x\necho end\n"
    out = RemoteCommandProvider().create(props(host.port, keys, create=big)).outs["stdout"]
    assert out == ("x" * 200000 + "end\n")[-STDOUT_LIMIT:]


# --- the webhook ---------------------------------------------------------------------------------

def test_a_failing_script_posts_one_failed_notice_with_the_errors_first_and_last_lines(host, keys, webhook):
    failing = 'for i in $(seq 1 50); do echo "line $i"; done\nexit 3\n'
    with pytest.raises(RemoteCommandError) as caught:
        RemoteCommandProvider().create(props(host.port, keys, create=failing, notifyUrl=webhook.url))
    lines = str(caught.value).splitlines()
    assert lines[:4] == ["hub: wbsaleshub", f"step: build (wbsaleshub-build on {USER}@127.0.0.1:{host.port}, exit code 3)",
                         "reason: the script ended with exit code 3", "last log lines:"]
    assert lines[4:] == [f"    line {i}" for i in range(36, 51)]
    (notice,) = webhook.posts
    assert notice == {"command": "wbsaleshub-build", "result": "failed", "detail": "\n".join(lines)}


def test_a_succeeding_script_posts_one_succeeded_notice_with_its_last_stdout_line(host, keys, webhook):
    RemoteCommandProvider().create(props(host.port, keys, notifyUrl=webhook.url))
    assert webhook.posts == [{"command": "wbsaleshub-build", "result": "succeeded", "detail": '{"runs": 1}'}]


# --- refresh: the check and the drift it finds -----------------------------------------------------

CHECK = 'echo "drift: the live container wbsaleshub-e2e-blue is gone"\necho "not a drift line"\n'


def created(host, keys, **changes) -> dict:
    """A command's state after its create ran once on the host (the engine's outputs)."""
    return RemoteCommandProvider().create(props(host.port, keys, **changes)).outs


def test_read_without_a_check_keeps_the_state_and_runs_nothing(host, home, keys):
    state = {**props(host.port, keys), "stdout": '{"runs": 1}\n'}
    read = RemoteCommandProvider().read("id", dict(state))
    assert (read.id, read.outs, read.inputs) == ("id", state, None)
    assert host.commands == []


def test_read_keeps_each_drift_line_of_the_check_in_the_outputs_and_the_inputs(host, home, keys):
    state = created(host, keys, check=CHECK)
    read = RemoteCommandProvider().read("id", dict(state))
    assert read.outs == {**state, "drift": ["the live container wbsaleshub-e2e-blue is gone"]}
    assert read.inputs == {**read.outs, "stdout": None}, "the next diff compares the drift, not what create printed"
    assert runs(home) == ["created"], "the check ran, create did not"


def test_the_check_runs_without_the_secret_values(host, keys):
    check = 'echo "drift: the secret is ${registry_password:-not here}"\n'
    state = created(host, keys, check=check, secretValues={"registry_password": "s3cret"})
    assert RemoteCommandProvider().read("id", state).outs["drift"] == ["the secret is not here"]


def test_a_check_finding_nothing_clears_the_drift_an_earlier_refresh_found(host, keys):
    state = {**created(host, keys, check="true\n"), "drift": ["the proxy wbsaleshub-e2e-proxy is gone"]}
    read = RemoteCommandProvider().read("id", dict(state))
    assert "drift" not in read.outs and "drift" not in read.inputs
    assert read.outs == {key: value for key, value in state.items() if key != "drift"}


def test_a_check_finding_nothing_where_nothing_was_found_changes_nothing(host, keys):
    state = created(host, keys, check="true\n")
    read = RemoteCommandProvider().read("id", dict(state))
    assert (read.outs, read.inputs) == (state, None)


def test_a_failing_check_fails_the_refresh_with_its_last_lines(host, keys):
    state = created(host, keys, check="echo 'docker: not found' >&2\nexit 127\n")
    with pytest.raises(RemoteCommandError) as caught:
        RemoteCommandProvider().read("id", state)
    assert "exit code 127" in str(caught.value) and "docker: not found" in str(caught.value)


def test_recorded_drift_makes_the_diff_an_update_and_the_update_runs_create_again(host, home, keys):
    provider = RemoteCommandProvider()
    state = created(host, keys, check=CHECK)
    news = props(host.port, keys, check=CHECK)
    assert provider.diff("id", state, dict(news)).changes is False
    drifted = provider.read("id", dict(state)).outs
    diff = provider.diff("id", drifted, dict(news))
    assert diff.changes is True and diff.replaces == [], "an update, never a replace (its delete would stop the hub)"
    updated = provider.update("id", drifted, dict(news)).outs
    assert runs(home) == ["created", "created"] and updated["stdout"] == '{"runs": 2}\n'
    assert "drift" not in updated and provider.diff("id", updated, dict(news)).changes is False
