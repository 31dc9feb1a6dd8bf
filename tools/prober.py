"""A load prober: requests one URL at a steady rate during a deploy and reports what clients saw.

workhub promises zero failed requests during every kind of deploy. Whether a container swap keeps
that promise is only visible from the outside: a connection refused while nothing listens on the
host port, a connection reset by a container that stopped mid-request, a request that hangs, a 502
from a half-started hub. The prober is that outside view, for the end-to-end tests and the
benchmark. It sends ``GET <url><path>`` on a fixed schedule (request i is due at start + i/rate)
and records, per request, when it was due, when it started and ended, and its HTTP status or the
way it failed:

- ``refused``: nothing listened on the port (ECONNREFUSED);
- ``reset``: the connection was reset (ECONNRESET, EPIPE, ECONNABORTED);
- ``timeout``: no connection or no answer within ``timeout`` seconds (per socket operation);
- ``eof``: the server closed the connection before a whole response (no status line, or a body
  cut short);
- ``other: <ExceptionName>``: anything else;
- an answer whose status is not in ``ok_statuses`` counts as failed too, as ``status <code>``.

A slow request never delays the next ones: each request runs on a thread of its own pool, which
grows as needed up to ``max(8, 2 * rate * timeout)`` threads (capped at ``MAX_WORKERS``). The
prober's own lateness (a request that started after it was due) is reported as ``max_lag_ms``:
a run with a large lag measured the prober, not the deploy.

Two kinds of client:

- ``keep_alive=False`` (the default): every request opens a fresh TCP connection and sends
  ``Connection: close``. This is what shows refused and reset connections during a swap.
- ``keep_alive=True``: requests reuse HTTP/1.1 connections the way browsers do (the most recently
  idle one first, a new one when all are busy) and reopen after an error. A request that fails on a
  reused connection counts as failed: it is never retried, since a stale connection the deploy
  broke is exactly what this measures. ``Sample.reused`` says which requests went on a reused one.

The first ``BODY_BYTES`` bytes of each body are kept, so a test can see which version answered;
the report lists the distinct bodies of the ok answers in the order they first appeared (v1, then
v2), each with when it was seen.

Library use::

    with Prober("http://127.0.0.1:24090", rate=50) as prober:
        slow = prober.side_request("/slow?ms=3000")   # one extra request, kept apart
        ...                                           # deploy
    report = prober.report()
    assert report.failed == 0, report.summary()
    assert slow.result().status == 200

Command line (prints the summary; exits 0 when no request failed, 1 otherwise, 2 on bad
arguments)::

    python tools/prober.py URL [--rate 50] [--duration 30] [--keep-alive] [--path /health]
        [--timeout 10]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import http.client
import math
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable
from urllib.parse import urlsplit

BODY_BYTES = 200                      # how much of each body a sample keeps
IO_CHUNK = 64 * 1024
MAX_WORKERS = 1024                    # threads for requests in flight at once
MAX_RATE = 10_000.0
SUMMARY_BODIES = 8                    # distinct bodies listed in a summary at the most
USER_AGENT = "workhub-prober"


# --------------------------------------------------------------------------------------------
# What one request saw


@dataclasses.dataclass(frozen=True)
class Sample:
    """One request. Times are seconds since the prober started."""

    path: str
    scheduled: float        # when it was due (for a side request: when it was asked for)
    started: float
    ended: float
    status: int | None      # the HTTP status, if a status line arrived
    error: str | None       # how it failed (see the module docstring), None if a whole answer came
    body: str               # the first BODY_BYTES bytes of the body, decoded as UTF-8 (lossy)
    reused: bool = False    # sent on a kept-alive connection an earlier request had used

    @property
    def outcome(self) -> str:
        """``status <code>`` for a whole answer, else the error kind."""
        return self.error or f"status {self.status}"

    @property
    def latency_ms(self) -> float:
        return (self.ended - self.started) * 1000.0

    @property
    def lag_ms(self) -> float:
        """How late the prober sent it."""
        return max(0.0, self.started - self.scheduled) * 1000.0


def classify(error: BaseException) -> str:
    """The failure kind of an exception raised by a request."""
    if isinstance(error, (http.client.RemoteDisconnected, http.client.IncompleteRead)):
        return "eof"  # before ConnectionResetError: RemoteDisconnected is one
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(error, TimeoutError):  # socket.timeout is TimeoutError
        return "timeout"
    return f"other: {type(error).__name__}"


# --------------------------------------------------------------------------------------------
# The report


@dataclasses.dataclass(frozen=True)
class Window:
    """How many requests had one outcome (or one body), and when the first and last were sent."""

    count: int
    first: float            # seconds since the prober started
    last: float

    def __str__(self) -> str:
        return f"x{self.count} at {self.first:.2f}-{self.last:.2f} s"


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value v such that at least q % of the values are <= v
    (q from 0 to 100). Always one of the values; raises ValueError on no values."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("prober: percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"prober: percentile {q!r} is not between 0 and 100")
    rank = math.ceil(q * len(ordered) / 100.0 - 1e-9)  # the epsilon absorbs float error in q * n
    return ordered[max(1, rank) - 1]


def _windows(samples: Iterable[Sample], key: Callable[[Sample], str]) -> dict[str, Window]:
    """Samples grouped by ``key``, in the order each key first appears."""
    starts: dict[str, list[float]] = {}
    for s in samples:
        starts.setdefault(key(s), []).append(s.started)
    return {k: Window(len(ts), min(ts), max(ts)) for k, ts in starts.items()}


@dataclasses.dataclass(frozen=True)
class ProbeReport:
    """What the clients saw. Latencies are those of the ok requests (None if there were none)."""

    url: str
    target_rate: float
    duration: float                 # seconds requests were being sent
    total: int                      # requests sent (side requests not included)
    ok: int
    failed: int
    failures: dict[str, Window]     # by kind, in the order the kinds first appeared
    bodies: dict[str, Window]       # distinct bodies of ok answers, in the order first seen
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    rate: float                     # achieved: total / duration
    max_lag_ms: float               # the prober's own worst lateness
    connections: int                # TCP connections the probe opened (or tried to)
    samples: tuple[Sample, ...]     # every request, in schedule order
    side: tuple[Sample, ...]        # the side requests that finished, in the order asked for

    @classmethod
    def from_samples(cls, samples: Iterable[Sample], *, url: str, target_rate: float, duration: float,
           ok_statuses: Collection[int] = (200,), connections: int = 0,
           side: Iterable[Sample] = ()) -> ProbeReport:
        """The report on these samples."""
        ordered = tuple(sorted(samples, key=lambda s: s.scheduled))

        def is_ok(s: Sample) -> bool:
            return s.error is None and s.status in ok_statuses

        good = [s for s in ordered if is_ok(s)]
        latencies = [s.latency_ms for s in good]

        def pct(q: float) -> float | None:
            return percentile(latencies, q) if latencies else None

        return cls(
            url=url, target_rate=target_rate, duration=duration, total=len(ordered), ok=len(good),
            failed=len(ordered) - len(good),
            failures=_windows((s for s in ordered if not is_ok(s)), lambda s: s.outcome),
            bodies=_windows(good, lambda s: s.body),
            p50_ms=pct(50), p90_ms=pct(90), p99_ms=pct(99), max_ms=pct(100),
            rate=len(ordered) / duration if duration > 0 else 0.0,
            max_lag_ms=max((s.lag_ms for s in ordered), default=0.0),
            connections=connections, samples=ordered, side=tuple(side))

    def summary(self) -> str:
        """A few lines for a person: totals, failures by kind, latencies, bodies, side requests."""
        lines = [f"probe {self.url}: {self.total} requests in {self.duration:.1f} s "
                 f"({self.rate:.1f}/s, wanted {self.target_rate:g}/s), {self.ok} ok, {self.failed} failed"]
        lines += [f"  failed {kind}: {w}" for kind, w in self.failures.items()]
        if self.p50_ms is not None:
            lines.append(f"  latency ms: p50 {self.p50_ms:.1f}, p90 {self.p90_ms:.1f}, p99 {self.p99_ms:.1f}, "
                         f"max {self.max_ms:.1f}")
        lines.append(f"  prober: {self.connections} connections, worst send lag {self.max_lag_ms:.1f} ms")
        bodies = list(self.bodies.items())
        lines += [f"  body {body[:60]!r}: {w}" for body, w in bodies[:SUMMARY_BODIES]]
        if len(bodies) > SUMMARY_BODIES:
            lines.append(f"  ... and {len(bodies) - SUMMARY_BODIES} more distinct bodies")
        lines += [f"  side GET {s.path}: {s.outcome} in {s.latency_ms:.0f} ms" for s in self.side]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Probing


class _Connections:
    """Where a request gets its HTTP connection: a new one each time, or with ``keep_alive`` the
    most recently idle one (a new one when none is idle)."""

    def __init__(self, factory: Callable[[], http.client.HTTPConnection], keep_alive: bool) -> None:
        self._factory = factory
        self._keep_alive = keep_alive
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.opened = 0

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether an earlier request used it."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
            self.opened += 1
        return self._factory(), False

    def give_back(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        if reusable and self._keep_alive:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _read_head(resp: http.client.HTTPResponse) -> bytes:
    """The first BODY_BYTES bytes of the body; the rest is read and dropped (so the connection can
    be reused)."""
    head = resp.read(BODY_BYTES)
    while resp.read(IO_CHUNK):
        pass
    return head


def _check_path(path: str) -> None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"prober: path {path!r} does not start with /")


class Prober:
    """Sends ``GET url+path`` at ``rate`` per second from ``start()`` to ``stop()``."""

    def __init__(self, url: str, rate: float = 25.0, timeout: float = 10.0, keep_alive: bool = False,
                 path: str = "/health", ok_statuses: Collection[int] = (200,)) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"prober: {url!r} is not an http:// or https:// URL without query or fragment")
        if not (isinstance(rate, (int, float)) and 0.0 < rate <= MAX_RATE):
            raise ValueError(f"prober: rate {rate!r} is not between 0 and {MAX_RATE:g} per second")
        if not (isinstance(timeout, (int, float)) and 0.0 < timeout < math.inf):
            raise ValueError(f"prober: timeout {timeout!r} is not a positive number of seconds")
        _check_path(path)
        self.rate = float(rate)
        self.timeout = float(timeout)
        self.keep_alive = keep_alive
        self.path = path
        self.ok_statuses = frozenset(ok_statuses)
        self._prefix = parts.path.rstrip("/")
        self.url = f"{parts.scheme}://{parts.netloc}{self._prefix}{path}"
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection

        def connect() -> http.client.HTTPConnection:
            return cls(parts.hostname, parts.port, timeout=self.timeout)

        self._conns = _Connections(connect, keep_alive)
        self._side_conns = _Connections(connect, keep_alive=False)  # side requests: never pooled
        self._headers = {"User-Agent": USER_AGENT, "Connection": "keep-alive" if keep_alive else "close"}
        workers = min(MAX_WORKERS, max(8, math.ceil(2 * self.rate * self.timeout)))
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="prober")
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self._side: list[concurrent.futures.Future[Sample]] = []
        self._stopping = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="prober-schedule", daemon=True)
        self._t0: float | None = None
        self._stopped_at: float | None = None

    # the clock

    def elapsed(self) -> float:
        """Seconds since ``start()``: the clock every Sample and Window uses."""
        if self._t0 is None:
            raise RuntimeError("prober: not started")
        return time.monotonic() - self._t0

    # running

    def start(self) -> Prober:
        """Start sending requests (request 0 at once). A prober starts only once."""
        if self._t0 is not None:
            raise RuntimeError("prober: already started")
        self._t0 = time.monotonic()
        self._dispatcher.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait for the requests in flight (side requests too) to end."""
        if self._t0 is None or self._stopped_at is not None:
            return
        self._stopped_at = self.elapsed()
        self._stopping.set()
        self._dispatcher.join()
        self._pool.shutdown(wait=True)
        self._conns.close()

    def __enter__(self) -> Prober:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def side_request(self, path: str) -> concurrent.futures.Future[Sample]:
        """Send one extra ``GET`` of ``path`` now, on a fresh connection, alongside the schedule. Its
        Sample is the future's result; it is kept apart (``ProbeReport.side``), not counted."""
        _check_path(path)
        future = self._pool.submit(self._fetch, self._side_conns, path, self.elapsed())
        with self._lock:
            self._side.append(future)
        return future

    def report(self) -> ProbeReport:
        """The report on the requests that ended so far (all of them once stopped)."""
        duration = self._stopped_at if self._stopped_at is not None else self.elapsed()
        with self._lock:
            samples = list(self._samples)
            side = [f.result() for f in self._side if f.done()]
        return ProbeReport.from_samples(samples, url=self.url, target_rate=self.rate, duration=duration,
                                        ok_statuses=self.ok_statuses, connections=self._conns.opened, side=side)

    # inside

    def _dispatch(self) -> None:
        i = 0
        while not self._stopping.wait(max(0.0, i / self.rate - self.elapsed())):
            self._pool.submit(self._probe, i / self.rate)
            i += 1

    def _probe(self, scheduled: float) -> None:
        sample = self._fetch(self._conns, self.path, scheduled)
        with self._lock:
            self._samples.append(sample)

    def _fetch(self, conns: _Connections, path: str, scheduled: float) -> Sample:
        started = self.elapsed()
        conn, reused = conns.take()
        status: int | None = None
        error: str | None = None
        head = b""
        reusable = False
        try:
            conn.request("GET", self._prefix + path, headers=self._headers)
            resp = conn.getresponse()
            status = resp.status
            head = _read_head(resp)
            reusable = not resp.will_close
        except Exception as e:  # every failure is a result, never an exception
            error = classify(e)
        finally:
            conns.give_back(conn, reusable)
        return Sample(path, scheduled, started, self.elapsed(), status, error,
                      head.decode("utf-8", "replace"), reused)


# --------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prober", description="Request URL+PATH at a steady rate for a while and print what clients saw.")
    p.add_argument("url", help="the base URL, e.g. http://127.0.0.1:24090")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to probe (default 30; Ctrl-C ends early)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per connect or read (default 10)")
    p.add_argument("--keep-alive", action="store_true", help="reuse HTTP/1.1 connections, as browsers do")
    p.add_argument("--path", default="/health", help="the path to request (default /health)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        prober = Prober(args.url, rate=args.rate, timeout=args.timeout, keep_alive=args.keep_alive,
                        path=args.path)
    except ValueError as e:
        print(e, file=sys.stderr)  # every message starts with "prober: "
        return 2
    with prober:
        try:
            time.sleep(max(0.0, args.duration))
        except KeyboardInterrupt:
            pass
    report = prober.report()
    print(report.summary(), flush=True)
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
