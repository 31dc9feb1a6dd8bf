"""tools/procwatch.py, the watcher the end-to-end tests look for secrets in every process with: it
sees a process that lives milliseconds, names it and where the value was (without printing the
value), finds a value quoted for a shell or cut into lines, leaves out only the environment of a
one-host hub's container (told by its cgroup, through the engine's API), and fails when it misses
its positive control."""

from __future__ import annotations

import json
import secrets
import shlex
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tools import procwatch
from tools.procwatch import Holder, Seen, Watcher, findings, needles


def test_a_short_lived_process_with_a_secret_in_its_argv_or_environment_is_named(tmp_path):
    argv_secret, env_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    watcher = Watcher(tmp_path / "seen.json")
    with watcher:
        subprocess.run(["bash", "-c", 'sleep "$1"', "leaky", "0.002", argv_secret], check=True)
        subprocess.run(["true"], env={"REGISTRY_PASSWORD": env_secret}, check=True)
        subprocess.run(["true", "nothing secret here"], check=True)
    with pytest.raises(AssertionError) as caught:
        watcher.assert_clean({"workhub:registryPassword": argv_secret, "workhub:secrets.hub.TOKEN": env_secret})
    message = str(caught.value)
    assert "workhub:registryPassword in its command line of process " in message
    assert "`bash -c sleep \"$1\" leaky 0.002 <secret>`" in message
    assert "workhub:secrets.hub.TOKEN in its environment (REGISTRY_PASSWORD) of process " in message
    assert argv_secret not in message and env_secret not in message, "the report names, never shows, a value"


def test_a_clean_run_passes_and_the_positive_controls_were_seen(tmp_path):
    watcher = Watcher(tmp_path / "seen.json")
    with watcher:
        subprocess.run(["true"], check=True)
    watcher.assert_clean({"a value no process had": secrets.token_urlsafe(24)})
    caught = {f.secret for f in findings(watcher.seen, watcher.controls)}
    assert caught == set(watcher.controls), "both controls, at the start and at the end"
    assert not (tmp_path / "seen.json").exists(), "what it saw (secrets too, when any leaked) is removed"


def test_a_watcher_that_misses_its_control_fails(tmp_path, monkeypatch):
    watcher = Watcher(tmp_path / "seen.json").start()
    monkeypatch.setattr(watcher, "control", lambda when: None)  # the closing control never runs
    with pytest.raises(RuntimeError) as caught:
        watcher.stop()
    assert "missed its positive control(s): control argv (end), control environ (end)" in str(caught.value)


def seen_with(cmdline: bytes = b"", environ: bytes = b"", hub: bool = False) -> Seen:
    holder = Holder(4242, "bash -s", "4241 sshd: deploy@notty", "wbsaleshub-e2e-blue" if hub else "", hub)
    return Seen({cmdline: [holder]} if cmdline else {}, {environ: [holder]} if environ else {}, 1)


def test_a_value_quoted_for_a_shell_or_cut_into_lines_is_found():
    value = "s3cr3t-0123456789abcdef it's $HOME"
    quoted = f"bash\0-c\0registry_password={shlex.quote(value)}\ndocker login\0".encode()
    assert "s3cr3t-0123456789abcdef" in needles(value)
    assert [f.where for f in findings(seen_with(quoted), {"password": value})] == ["its command line"]
    key = "-----BEGIN TEST KEY-----\nMIIB" + "a" * 60 + "\n" + "b1" * 32 + "\n-----END TEST KEY-----"
    one_line = ("x\0" + key.splitlines()[2] + "\0").encode()
    assert [f.where for f in findings(seen_with(one_line), {"key": key})] == ["its command line"]


def generated_key(path: Path) -> str:
    """A throwaway ed25519 key, made now (no key is ever committed)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.read_text()


def test_what_every_key_of_a_kind_shares_is_not_looked_for(tmp_path):
    """Two keys of one kind share their armour and opening bytes: those are not looked for, the rest is."""
    key, other = generated_key(tmp_path / "key"), generated_key(tmp_path / "other")
    seen = seen_with(f"ssh-keygen\0{other}\0".encode())
    assert findings(seen, {"key": key}) != []
    assert findings(seen, {"key": key}, common=[other]) == []


def test_a_hub_containers_environment_is_left_out_but_not_its_command_line():
    value = secrets.token_urlsafe(24)
    assert findings(seen_with(environ=f"SESSION_SECRET={value}\0".encode(), hub=True), {"s": value}) == []
    assert [f.where for f in findings(seen_with(environ=f"X={value}\0".encode()), {"s": value})] == \
        ["its environment (X)"]
    found = findings(seen_with(cmdline=f"node\0{value}\0".encode(), hub=True), {"s": value})
    assert [(f.where, f.holder.container) for f in found] == [("its command line", "wbsaleshub-e2e-blue")]


class Engine(BaseHTTPRequestHandler):
    """A stand-in Docker engine: knows one hub container and one proxy container."""

    CONTAINERS = {"a" * 64: ("/wbsaleshub-e2e-blue", {"workhub.role": "hub"}),
                  "b" * 64: ("/wbsaleshub-e2e-proxy", {"workhub.role": "proxy"})}

    def do_GET(self) -> None:
        cid = self.path.split("/")[2]
        if cid not in self.CONTAINERS:
            self.send_response(404)
            self.end_headers()
            return
        name, labels = self.CONTAINERS[cid]
        body = json.dumps({"Name": name, "Config": {"Labels": labels}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_) -> None:
        pass


class UnixServer(HTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)

    def get_request(self):
        request, _ = self.socket.accept()
        return request, ("engine", 0)


def test_a_process_is_told_a_hub_containers_by_the_container_id_in_its_cgroup(tmp_path):
    path = str(tmp_path / "docker.sock")
    server = UnixServer(path, Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        watch = procwatch._Watch([str(tmp_path / "no-engine.sock"), path])
        assert watch.container(b"4:memory:/docker/" + b"a" * 64 + b"\n0::/\n") == ("wbsaleshub-e2e-blue", True)
        assert watch.container(b"0::/system.slice/docker-" + b"b" * 64 + b".scope\n") == \
            ("wbsaleshub-e2e-proxy", False)
        assert watch.container(b"0::/docker/" + b"c" * 64 + b"\n")[1] is False
        assert watch.container(b"4:memory:/docker/buildkit/p2f8a1\n0::/\n") == ("", False)
    finally:
        server.shutdown()
        server.server_close()
