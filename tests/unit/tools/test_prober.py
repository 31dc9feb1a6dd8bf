"""tools/prober.py against a local HTTP server of our own on 127.0.0.1 (no Docker), switched between
the ways a hub can answer during a deploy: v1, 500, refused (nothing listens), reset, stall, v2."""

from __future__ import annotations

import http.client
import http.server
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tools.prober import ProbeReport, Prober, Sample, classify, percentile

REPO = Path(__file__).resolve().parents[3]
RATE = 50.0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()       # its reference would keep the socket open past close()
        self.connection.close()  # RST, not FIN
        self.close_connection = True

    def do_GET(self) -> None:
        backend = self.server.backend
        path, _, query = self.path.partition("?")
        mode = "slow" if path == "/slow" else backend.mode
        with backend.lock:
            backend.handled[mode] += 1
        if mode == "slow":
            time.sleep(int(parse_qs(query)["ms"][0]) / 1000)
            self._send(200, b"slow")
        elif mode == "reset":
            self._reset()
        elif mode == "stall":
            backend.unstall.wait(10)
            self.close_connection = True
        else:
            self._send(*{"v1": (200, b"v1"), "v2": (200, b"v2"), "500": (500, b"boom")}[mode])


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, backend: "_Backend") -> None:
        self.backend = backend
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self):
        conn = super().get_request()
        with self.backend.lock:
            self.backend.accepted += 1
        return conn

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients that time out, connections we reset
            super().handle_error(request, client_address)


class _Backend:
    """A hub stand-in on one port whose behaviour a test switches with ``set(mode)``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "v1"
        self.accepted = 0   # TCP connections accepted
        self.handled: Counter[str] = Counter()  # requests received, by the mode that answered them
        self.unstall = threading.Event()
        self.port = 0
        self._server: _Server | None = None
        self._listen()

    @property
    def requests(self) -> int:
        return sum(self.handled.values())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        if mode == "refused":  # connections already open keep the mode they had
            self._refuse()
            return
        if self._server is None:
            self._listen()
        self.mode = mode

    def close(self) -> None:
        self.unstall.set()
        self._refuse()

    def _listen(self) -> None:
        self._server = _Server(self.port, self)  # the same port again after _refuse
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    def _refuse(self) -> None:
        """Close the listening socket; connections already in its backlog are served first (else the
        kernel would reset them, and the test would see resets where it expects refusals)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.timeout = 0
        while select.select([server.socket], [], [], 0)[0]:
            server.handle_request()
        server.server_close()


@pytest.fixture
def backend():
    b = _Backend()
    try:
        yield b
    finally:
        b.close()


Span = tuple[str, float, float]  # a phase's mode, when the switch to it began, when the next began


def _run(backend: _Backend, phases: list[tuple[str, float]], **options) -> tuple[ProbeReport, list[Span]]:
    """Probe the backend through ``phases`` of (mode, seconds); also returns each phase's span on
    the prober's clock."""
    backend.set(phases[0][0])
    spans = []
    with Prober(backend.url, **{"rate": RATE, **options}) as prober:
        for mode, seconds in phases:
            begin = prober.elapsed()
            backend.set(mode)
            time.sleep(seconds)
            spans.append((mode, begin, prober.elapsed()))
    return prober.report(), spans


def _counts(report: ProbeReport) -> dict[str, int]:
    return {kind: w.count for kind, w in report.failures.items()}


def _sample(started: float, status: int | None = 200, error: str | None = None, body: str = "v1",
            latency: float = 0.01) -> Sample:
    return Sample("/health", started, started, started + latency, status, error, body)


# ---------------------------------------------------------------------------------------------
# pure parts


def test_percentile_on_known_lists():
    values = list(range(1, 11))
    random.Random(1).shuffle(values)
    assert [percentile(values, q) for q in (0, 10, 50, 90, 99, 100)] == [1, 1, 5, 9, 10, 10]
    assert [percentile([15, 20, 35, 40, 50], q) for q in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert percentile([7.5], 99) == 7.5
    assert percentile(range(1, 1001), 99.9) == 999
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_percentile_is_the_nearest_rank_on_random_lists():
    rng = random.Random(7)
    for _ in range(300):
        values = [rng.choice([rng.randint(0, 5), rng.uniform(0, 100)]) for _ in range(rng.randint(1, 40))]
        q = rng.choice([0, 50, 90, 99, 100, rng.uniform(0, 100)])
        p = percentile(values, q)
        assert p in values
        assert sum(v <= p for v in values) >= q / 100 * len(values) - 1e-9  # at least q % at or under it
        assert sum(v < p for v in values) < max(1, q / 100 * len(values))   # and it is the smallest such


@pytest.mark.parametrize("error, kind", [
    (ConnectionRefusedError(), "refused"),
    (ConnectionResetError(), "reset"),
    (BrokenPipeError(), "reset"),
    (TimeoutError(), "timeout"),
    (socket.timeout(), "timeout"),
    (http.client.RemoteDisconnected("closed"), "eof"),
    (http.client.IncompleteRead(b"v", 10), "eof"),
    (http.client.BadStatusLine("x"), "other: BadStatusLine"),
    (OSError(113, "no route"), "other: OSError"),
])
def test_classify(error, kind):
    assert classify(error) == kind


def test_report_groups_failures_and_bodies_and_summarises():
    samples = [_sample(0.0), _sample(0.1, latency=0.03), _sample(0.2, None, "refused", ""),
               _sample(0.3, None, "refused", ""), _sample(0.4, 503, body="starting"),
               _sample(0.5, body="v2", latency=0.02)]
    side = _sample(0.05, body="slow", latency=3.0)
    report = ProbeReport.from_samples(reversed(samples), url="http://h/health", target_rate=10, duration=0.6,
                                      connections=6, side=[side])
    assert (report.total, report.ok, report.failed) == (6, 3, 3)
    assert [s.started for s in report.samples] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert {k: (w.count, w.first, w.last) for k, w in report.failures.items()} == {
        "refused": (2, 0.2, 0.3), "status 503": (1, 0.4, 0.4)}
    assert list(report.bodies) == ["v1", "v2"]
    assert report.bodies["v1"].count == 2
    assert report.p50_ms == pytest.approx(20) and report.max_ms == pytest.approx(30)
    assert report.rate == pytest.approx(10)
    text = report.summary()
    assert "6 requests in 0.6 s (10.0/s, wanted 10/s), 3 ok, 3 failed" in text
    assert "failed refused: x2 at 0.20-0.30 s" in text
    assert "body 'v2': x1 at 0.50-0.50 s" in text
    assert "side GET /health: status 200 in 3000 ms" in text
    tolerant = ProbeReport.from_samples(samples, url="u", target_rate=10, duration=0.6,
                                        ok_statuses={200, 503})
    assert list(tolerant.failures) == ["refused"] and list(tolerant.bodies) == ["v1", "starting", "v2"]


def test_bad_arguments_are_refused():
    for url in ("ftp://h/", "127.0.0.1:80", "http://h/?q=1"):
        with pytest.raises(ValueError, match="prober: "):
            Prober(url)
    with pytest.raises(ValueError, match="rate"):
        Prober("http://h", rate=0)
    with pytest.raises(ValueError, match="path"):
        Prober("http://h", path="health")


# ---------------------------------------------------------------------------------------------
# against a real server


def test_an_all_200_run_has_no_failures_and_keeps_the_rate(backend):
    report, _ = _run(backend, [("v1", 0.6)])
    assert report.failed == 0 and report.failures == {}, report.summary()
    assert report.ok == report.total >= 0.7 * RATE * report.duration
    assert report.rate >= 0.7 * RATE
    assert [s.scheduled for s in report.samples] == [i / RATE for i in range(report.total)]
    assert report.connections == report.total == backend.accepted == backend.requests  # a fresh one each
    assert not any(s.reused for s in report.samples)
    assert {b: w.count for b, w in report.bodies.items()} == {"v1": report.total}
    assert report.p50_ms <= report.p90_ms <= report.p99_ms <= report.max_ms
    assert report.url == backend.url + "/health"
    assert "0 failed" in report.summary()


def test_each_failure_kind_is_classified_and_counted_and_bodies_show_the_switch(backend):
    report, _ = _run(backend, [("v1", 0.3), ("500", 0.3), ("reset", 0.3), ("stall", 0.3), ("v2", 0.3)],
                     timeout=0.5)
    h = backend.handled  # what the server did, request by request: the prober must have seen the same
    assert _counts(report) == {"status 500": h["500"], "reset": h["reset"], "timeout": h["stall"]}, report.summary()
    assert list(report.failures) == ["status 500", "reset", "timeout"]
    assert min(h.values()) >= 1 and report.total == backend.requests
    assert report.failed == sum(_counts(report).values()) and report.ok + report.failed == report.total
    assert {body: w.count for body, w in report.bodies.items()} == {"v1": h["v1"], "v2": h["v2"]}
    assert list(report.bodies) == ["v1", "v2"]
    assert report.bodies["v1"].last < report.bodies["v2"].first


def test_a_window_of_refused_connections_is_reported_with_its_times(backend):
    report, spans = _run(backend, [("v1", 0.3), ("refused", 0.4), ("v1", 0.3)])
    _, closing, reopened = spans[1]
    assert list(report.failures) == ["refused"], report.summary()
    refused = report.failures["refused"]
    assert refused.count == report.total - backend.requests >= 5  # every request the server never got
    assert refused.count == report.failed and report.ok == backend.handled["v1"]
    samples = [s for s in report.samples if s.error == "refused"]
    assert refused.first == min(s.started for s in samples) and refused.last == max(s.started for s in samples)
    assert closing <= min(s.ended for s in samples)  # refused only once the socket was closing...
    assert refused.last <= reopened                  # ...and sent before it listened again
    assert report.bodies["v1"].first < refused.first < refused.last < report.bodies["v1"].last


def test_keep_alive_reuses_connections_and_a_reset_on_a_reused_one_fails(backend):
    report, _ = _run(backend, [("v1", 0.4), ("reset", 0.2), ("v2", 0.3)], keep_alive=True)
    assert _counts(report) == {"reset": backend.handled["reset"]}, report.summary()
    assert report.connections == backend.accepted == sum(not s.reused for s in report.samples)
    assert sum(s.reused for s in report.samples) >= report.total / 2, report.summary()
    assert any(s.reused and s.error == "reset" for s in report.samples)
    assert backend.requests == report.total  # nothing was retried
    assert list(report.bodies) == ["v1", "v2"]


def test_a_slow_side_request_completes_while_the_prober_keeps_its_rate(backend):
    with Prober(backend.url, rate=RATE) as prober:
        side = prober.side_request("/slow?ms=1000").result(timeout=10)
    report = prober.report()
    assert (side.status, side.error, side.body) == (200, None, "slow")
    assert side.latency_ms >= 1000
    during = [s for s in report.samples if side.started <= s.started <= side.ended]
    assert len(during) >= 0.7 * RATE * (side.ended - side.started), report.summary()
    assert report.failed == 0 and all(s.path == "/health" for s in report.samples)
    assert report.side == (side,)


def test_cli_prints_the_summary_and_fails_on_failed_requests(backend):
    def cli(url: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "tools" / "prober.py"), url, "--rate", "20",
                               "--duration", "0.3", "--timeout", "1"], capture_output=True, text=True, timeout=30)

    ok = cli(backend.url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"probe {backend.url}/health: ") and ", 0 failed" in ok.stdout
    backend.set("refused")
    failed = cli(backend.url)
    assert failed.returncode == 1
    assert "failed refused: x" in failed.stdout
