"""tools/faultproxy.py against a tiny registry-like upstream of our own on 127.0.0.1 (no Docker)."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tools.faultproxy import FaultProxy, Faults, parse_upstream, running_proxy

REPO = Path(__file__).resolve().parents[3]
TARBALL = random.Random(1).randbytes(200_000)
SCOPED_TARBALL = random.Random(2).randbytes(30_000)
TARBALL_PATH = "/fakepkg/-/fakepkg-1.0.0.tgz"


class _Registry(http.server.BaseHTTPRequestHandler):
    """Answers like a registry: tarball URLs in metadata are built from the Host header."""

    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _packument(self, name: str, version: str, tarball_url: str) -> bytes:
        return json.dumps({"name": name, "dist-tags": {"latest": version},
                           "versions": {version: {"name": name, "version": version,
                                                  "dist": {"tarball": tarball_url}}}}).encode()

    def _record(self, body: bytes = b"") -> None:
        with self.server.lock:
            self.server.seen.append({"method": self.command, "path": self.path,
                                     "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})

    def do_GET(self) -> None:
        self._record()
        host = self.headers.get("Host")
        if self.path == "/fakepkg":
            self._send(200, self._packument("fakepkg", "1.0.0", f"http://{host}{TARBALL_PATH}"))
        elif self.path == "/@fake%2fscoped":
            self._send(200, self._packument("@fake/scoped", "2.0.0", f"http://{host}/@fake/scoped/-/scoped-2.0.0.tgz"))
        elif self.path == "/fixedurl":
            # like a registry configured with a fixed public URL: its own address, whatever the Host
            own = "http://127.0.0.1:%d" % self.server.server_address[1]
            self._send(200, self._packument("fixedurl", "1.0.0", f"{own}/fixedurl/-/fixedurl-1.0.0.tgz"))
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            body = self._packument("chunked", "1.0.0", f"http://{host}/chunked/-/chunked-1.0.0.tgz")
            for i in range(0, len(body), 7):
                piece = body[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == TARBALL_PATH:
            self._send(200, TARBALL, "application/octet-stream")
        elif self.path == "/@fake/scoped/-/scoped-2.0.0.tgz":
            self._send(200, SCOPED_TARBALL, "application/octet-stream")
        else:
            self._send(404, b'{"error":"not found"}')

    def do_HEAD(self) -> None:
        self._record()
        self.send_response(200 if self.path == TARBALL_PATH else 404)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(TARBALL)))
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._record(body)
        self._send(200, json.dumps({"received": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode())


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the proxy drops cut downloads
            super().handle_error(request, client_address)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Registry)
        self.lock = threading.Lock()
        self.seen: list[dict] = []


@pytest.fixture(scope="module")
def upstream():
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, "http://127.0.0.1:%d/" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _port(url: str) -> int:
    return urlsplit(url).port


def _raw(url: str, path: str, timeout: float = 5.0) -> tuple[bytes, bool]:
    """One request on a fresh connection; everything received until the proxy closes it,
    and whether the connection was reset."""
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{_port(url)}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        for _ in range(10_000):
            try:
                piece = s.recv(65536)
            except ConnectionResetError:
                return data, True
            if not piece:
                return data, False
            data += piece
        raise AssertionError("the proxy never closed the connection")


def _split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def _get(conn: http.client.HTTPConnection, path: str, **headers) -> tuple[int, bytes]:
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _outcome(url: str, path: str) -> str:
    data, was_reset = _raw(url, path)
    if not data:
        return "reset"
    status, headers, body = _split(data)
    if status == 503:
        return "503"
    return "cut" if len(body) < int(headers["content-length"]) else "ok"


# ---------------------------------------------------------------------------------------------


def test_passthrough_with_no_faults_keeps_alive_and_points_tarballs_at_the_proxy(upstream):
    server, up_url = upstream
    with running_proxy(up_url, Faults(), seed=1) as (url, stats):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        conn = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
        try:
            status, body = _get(conn, "/fakepkg", **{"Accept-Encoding": "gzip, deflate"})
            assert status == 200
            tarball_url = json.loads(body)["versions"]["1.0.0"]["dist"]["tarball"]
            assert tarball_url == url.rstrip("/") + TARBALL_PATH
            for _ in range(3):
                status, body = _get(conn, urlsplit(tarball_url).path)
                assert status == 200 and body == TARBALL
            status, body = _get(conn, "/chunked")
            assert status == 200
            assert json.loads(body)["versions"]["1.0.0"]["dist"]["tarball"].startswith(url)
            audit = random.Random(3).randbytes(5000)
            conn.request("POST", "/-/npm/v1/security/audits/quick", body=audit,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200
            assert json.loads(resp.read()) == {"received": 5000, "sha256": hashlib.sha256(audit).hexdigest()}
            status, body = _get(conn, "/@fake%2fscoped")
            scoped = json.loads(body)["versions"]["2.0.0"]["dist"]["tarball"]
            assert scoped.startswith(url)
            assert _get(conn, urlsplit(scoped).path) == (200, SCOPED_TARBALL)
            assert _get(conn, "/nothing-here")[0] == 404
            conn.request("HEAD", TARBALL_PATH)
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b""
            assert _get(conn, TARBALL_PATH) == (200, TARBALL)  # still the same connection
        finally:
            conn.close()
    snap = stats.snapshot()  # after the proxy stopped: every byte it wrote is counted
    assert snap["connections"] == 1  # every request above on one kept-alive connection
    assert snap["requests"] == 11
    assert snap["tarball_requests"] == 5
    assert snap["tarballs"] == {"fakepkg@1.0.0": 4, "@fake/scoped@2.0.0": 1}
    assert snap["faults_total"] == 0 and snap["upstream_errors"] == 0
    assert snap["bytes_sent"] > 4 * len(TARBALL) + len(SCOPED_TARBALL)
    with server.lock:
        seen = [r for r in server.seen if r["path"] == "/fakepkg"][-1]
    assert seen["headers"]["accept-encoding"] == "identity"
    assert seen["headers"]["host"] == f"127.0.0.1:{_port(url)}"
    assert seen["headers"]["x-forwarded-proto"] == "http"


def test_upstream_with_a_fixed_public_url_is_rewritten_to_the_proxy(upstream):
    _, up_url = upstream
    with running_proxy(up_url) as (url, stats):
        conn = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
        status, body = _get(conn, "/fixedurl")
        conn.close()
    assert status == 200
    assert json.loads(body)["versions"]["1.0.0"]["dist"]["tarball"] == f"{url}fixedurl/-/fixedurl-1.0.0.tgz"
    assert stats.metadata_rewrites == 1


def test_reset_closes_the_connection_before_any_byte(upstream):
    _, up_url = upstream
    with running_proxy(up_url, Faults(reset=1.0), seed=1) as (url, stats):
        data, _ = _raw(url, TARBALL_PATH)
        assert data == b""
        status, _, body = _split(_raw(url, "/fakepkg")[0])  # metadata is not faulted
        assert status == 200 and b"fakepkg" in body
    assert stats.faults == {"reset": 1, "stall": 0, "cut": 0, "status_5xx": 0}
    assert stats.fault_events == [{"kind": "reset", "method": "GET", "target": TARBALL_PATH}]


def test_cut_sends_the_real_content_length_and_part_of_the_body(upstream):
    _, up_url = upstream
    with running_proxy(up_url, Faults(cut=1.0), seed=1) as (url, stats):
        for _ in range(5):
            data, _ = _raw(url, TARBALL_PATH)
            status, headers, body = _split(data)
            assert status == 200
            assert int(headers["content-length"]) == len(TARBALL)
            assert 0.1 * len(TARBALL) - 1 <= len(body) <= 0.9 * len(TARBALL)
            assert body == TARBALL[:len(body)]
        # a cut upstream connection is not reused: the next request is whole again
        conn = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
        assert _get(conn, "/fakepkg")[0] == 200
        conn.close()
    assert stats.faults["cut"] == 5


def test_cut_first_cuts_only_the_first_download_of_the_named_tarball(upstream):
    """The deterministic fault the e2e fault test counts on: one cut, then whole downloads."""
    _, up_url = upstream
    with running_proxy(up_url, Faults(cut_first=("fakepkg@1.0.0",)), seed=1) as (url, stats):
        outcomes = [_outcome(url, TARBALL_PATH) for _ in range(4)]
        assert _outcome(url, "/@fake/scoped/-/scoped-2.0.0.tgz") == "ok"
    assert outcomes == ["cut", "ok", "ok", "ok"]
    assert stats.faults["cut"] == 1 and stats.fault_events == [{"kind": "cut", "method": "GET", "target": TARBALL_PATH}]


def test_stall_first_stalls_only_the_first_download_of_the_named_tarball(upstream):
    """The deterministic stall the install's timeout test counts on: one stall, then whole downloads."""
    _, up_url = upstream
    with running_proxy(up_url, Faults(stall_first=("fakepkg@1.0.0",), stall_seconds=0.2), seed=1) as (url, stats):
        outcomes = [_outcome(url, TARBALL_PATH) for _ in range(3)]
    assert outcomes[1:] == ["ok", "ok"] and outcomes[0] != "ok"
    assert stats.faults["stall"] == 1 and stats.fault_events == [{"kind": "stall", "method": "GET", "target": TARBALL_PATH}]


@pytest.mark.parametrize("field", ["cut_first", "stall_first"])
@pytest.mark.parametrize("bad", ["fakepkg@1.0.0", ("fakepkg",), ("@scope/only",), (1,)])
def test_cut_first_takes_package_at_version_names(bad, field):
    with pytest.raises(ValueError, match=field):
        Faults(**{field: bad})


def test_status_5xx_answers_503_and_keeps_the_connection(upstream):
    _, up_url = upstream
    with running_proxy(up_url, Faults(status_5xx=1.0), seed=1) as (url, stats):
        conn = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
        status, body = _get(conn, TARBALL_PATH)
        assert status == 503 and 0 < len(body) < 100
        assert _get(conn, "/fakepkg")[0] == 200
        conn.close()
    assert stats.faults["status_5xx"] == 1
    assert stats.connections == 1


def test_stall_sends_nothing_for_stall_seconds_then_closes(upstream):
    _, up_url = upstream
    with running_proxy(up_url, Faults(stall=1.0, stall_seconds=1.0), seed=1) as (url, stats):
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as s:
            start = time.monotonic()
            s.sendall(f"GET {TARBALL_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.settimeout(0.8)
            with pytest.raises(socket.timeout):
                s.recv(1)
            s.settimeout(5)
            assert s.recv(1) == b""
            elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 3.0
    assert stats.faults["stall"] == 1


def test_a_stalled_request_does_not_hold_up_stop(upstream):
    _, up_url = upstream
    start = time.monotonic()
    with running_proxy(up_url, Faults(stall=1.0, stall_seconds=600), seed=1) as (url, _):
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as s:
            s.sendall(f"GET {TARBALL_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            time.sleep(0.2)
    assert time.monotonic() - start < 10


def test_tarballs_only_leaves_metadata_alone_unless_all_requests(upstream):
    _, up_url = upstream
    with running_proxy(up_url, Faults(status_5xx=1.0)) as (url, stats):
        conn = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
        assert _get(conn, "/fakepkg")[0] == 200
        assert _get(conn, "/chunked")[0] == 200
        assert _get(conn, TARBALL_PATH)[0] == 503
        conn.close()
    assert stats.faults["status_5xx"] == 1
    with running_proxy(up_url, Faults(status_5xx=1.0), tarballs_only=False) as (url, stats):
        conn = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
        assert _get(conn, "/fakepkg")[0] == 503
        assert _get(conn, TARBALL_PATH)[0] == 503
        conn.close()
    assert stats.faults["status_5xx"] == 2


def test_the_same_seed_injects_the_same_faults(upstream):
    _, up_url = upstream
    faults = Faults(reset=0.25, cut=0.25, status_5xx=0.25)
    runs = []
    for seed in (7, 7, 8):
        with running_proxy(up_url, faults, seed=seed) as (url, stats):
            outcomes = [_outcome(url, TARBALL_PATH) for _ in range(24)]
        assert [e["kind"] for e in stats.fault_events] == [
            {"503": "status_5xx"}.get(o, o) for o in outcomes if o != "ok"]
        assert stats.seed == seed
        runs.append(outcomes)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert {"reset", "cut", "503", "ok"} == set(runs[0] + runs[2])


def test_fault_decisions_do_not_depend_on_request_order(upstream):
    _, up_url = upstream
    faults = Faults(status_5xx=0.5)
    paths = [TARBALL_PATH, "/@fake/scoped/-/scoped-2.0.0.tgz"]
    results = []
    for order in (paths, paths[::-1]):
        with running_proxy(up_url, faults, seed=11) as (url, _):
            results.append({p: [_outcome(url, p) for _ in range(8)] for p in order})
    assert results[0] == results[1]


@pytest.mark.parametrize("bad", [
    "http://10.1.2.3:4873/",
    "http://0.0.0.0:4873/",
    "http://[2001:db8::1]:4873/",
    "http://build.invalid:4873/",
    "https://127.0.0.1:4873/",
    "ftp://127.0.0.1/",
    "",
])
def test_a_non_loopback_upstream_is_refused(bad):
    with pytest.raises(ValueError, match="faultproxy: "):
        FaultProxy(bad, Faults())
    with pytest.raises(ValueError):
        with running_proxy(bad):
            pass


def test_loopback_upstreams_are_accepted():
    for good in ("http://127.0.0.1:4873/", "http://127.0.0.2:4873", "http://localhost:4873/", "http://[::1]:4873/"):
        assert parse_upstream(good).port == 4873


def test_faults_are_validated():
    with pytest.raises(ValueError, match="between 0 and 1"):
        Faults(reset=1.5)
    with pytest.raises(ValueError, match="more than 1"):
        Faults(reset=0.6, cut=0.6)
    with pytest.raises(ValueError, match="stall_seconds"):
        Faults(stall_seconds=-1)


def test_an_unreachable_upstream_answers_502():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with running_proxy(f"http://127.0.0.1:{dead}/") as (url, stats):
        conn = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
        status, body = _get(conn, "/fakepkg")
        conn.close()
    assert status == 502 and b"upstream" in body
    assert stats.upstream_errors == 1


def test_cli_prints_its_url_and_writes_stats_on_sigterm(upstream, tmp_path):
    _, up_url = upstream
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "faultproxy.py"), "--upstream", up_url, "--reset", "1",
         "--seed", "5", "--stats-file", str(stats_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert _raw(url, TARBALL_PATH)[0] == b""
        assert _split(_raw(url, "/fakepkg")[0])[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    stats = json.loads(stats_file.read_text())
    assert stats["seed"] == 5
    assert stats["requests"] == 2 and stats["tarball_requests"] == 1
    assert stats["faults"]["reset"] == 1
    assert stats["tarballs"] == {"fakepkg@1.0.0": 1}


def test_cli_refuses_a_non_loopback_upstream():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "faultproxy.py"), "--upstream", "http://10.9.8.7:4873/"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "not a loopback address" in proc.stderr
