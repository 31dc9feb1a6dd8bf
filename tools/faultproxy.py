"""A fault-injecting HTTP/1.1 reverse proxy for the local npm registry cache.

It sits between npm and the local verdaccio (``scripts/registry.sh``) and reproduces the network
faults the team measured under `npm ci` (FINDINGS.md, beside the PRD), so tests and benchmarks can
show builds surviving them. Per request, with probabilities drawn from a seeded ``random.Random``:

- ``reset``: the client connection is reset before any response byte (npm retries these);
- ``stall``: nothing is sent for ``stall_seconds``, then the connection is closed (npm waits its
  fetch-timeout, then retries);
- ``cut``: the upstream's status line and headers (with the real Content-Length) and only 10-90 %
  of the body are sent, then the connection is closed (npm does NOT retry these: FINDINGS #4);
- ``status_5xx``: a 503 with a small body.

and, with no draw at all, ``cut_first`` (``stall_first``): the first download of each named tarball
(``<package>@<version>``) is cut (stalled), and every later one passes (unless a draw faults it),
so a test can count on exactly one cut (stall) it knows of.

By default only tarball requests (``GET /<package>/-/<file>.tgz``) are faulted; metadata passes
through untouched unless ``tarballs_only=False``.

Tarball URLs inside package metadata must point at the proxy, or npm would fetch tarballs around
it. verdaccio 6.8 builds them from the request's ``Host`` header (``@verdaccio/url``
``getPublicUrl``: ``VERDACCIO_PUBLIC_URL`` if set, else ``X-Forwarded-Proto`` or the socket's
protocol, plus the raw ``Host`` header, plus ``url_prefix``; it never reads ``X-Forwarded-Host``).
So the proxy forwards the client's ``Host`` (the proxy's own address) unchanged and sets
``X-Forwarded-Proto: http``. As a fallback (an upstream with a fixed public URL), upstream base URLs
left in JSON metadata are rewritten to the proxy's URL (counted in ``metadata_rewrites``).

The upstream is asked for ``Accept-Encoding: identity``; chunked or close-delimited upstream
bodies are de-chunked and re-framed for the client, so keep-alive with the client always works.

The proxy listens on 127.0.0.1 only and refuses any upstream that is not a loopback http:// URL.

Library use::

    proxy = FaultProxy(upstream_url, Faults(cut=0.03), seed=1)
    url = await proxy.start()          # http://127.0.0.1:<port>/
    ...
    await proxy.stop(); proxy.stats.snapshot()

    with running_proxy(upstream_url, Faults(reset=0.05), seed=1) as (url, stats):
        ...                            # the proxy runs in a background thread

Command line (prints the proxy URL as its first stdout line, runs until SIGTERM/SIGINT, then
writes the stats JSON to --stats-file)::

    python tools/faultproxy.py --upstream URL [--listen-port N] [--reset P] [--stall P]
        [--stall-seconds S] [--cut P] [--status-5xx P] [--cut-first PKG@VERSION ...]
        [--stall-first PKG@VERSION ...] [--seed N] [--all-requests]
        [--stats-file PATH] [--verbose]

A given seed gives the same fault decisions for the same requests: each decision is drawn from a
``random.Random`` seeded with (seed, method, target, how many times this target was asked for
before), so it does not depend on the order in which concurrent requests arrive, and a retried
request gets a fresh draw. Use a new seed per benchmark run.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

LISTEN_HOST = "127.0.0.1"  # never configurable

FAULT_KINDS = ("reset", "stall", "cut", "status_5xx")

IO_CHUNK = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024          # one request or response head, and one chunk-size line
MAX_HEADER_LINES = 200
MAX_REQUESTS_PER_CONNECTION = 100_000
MAX_REQUEST_BODY_BYTES = 64 << 20
MAX_BODY_BYTES = 1 << 30              # any one response body
MAX_BUFFERED_BODY_BYTES = 256 << 20   # bodies the proxy holds in memory (rewrites, cut of chunked)
MAX_CHUNKS = 1 << 20
MAX_INTERIM_RESPONSES = 5
MAX_FAULT_EVENTS = 10_000
MAX_STALL_SECONDS = 3600.0

CLIENT_IDLE_TIMEOUT = 120.0           # between requests on a kept-alive client connection
CLIENT_IO_TIMEOUT = 60.0              # reading a request body, writing a response
UPSTREAM_CONNECT_TIMEOUT = 10.0
UPSTREAM_TIMEOUT = 120.0              # waiting for upstream response bytes (verdaccio's uplink waits 60 s)

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
})

_TARBALL_RE = re.compile(r"^/(?P<pkg>[^?#]+?)/-/(?P<file>[^/]+\.tgz)$")

Headers = list[tuple[str, str]]


# --------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class Faults:
    """Per-request fault probabilities (each 0..1, together at most 1)."""

    reset: float = 0.0
    stall: float = 0.0
    stall_seconds: float = 30.0
    cut: float = 0.0
    status_5xx: float = 0.0
    cut_first: tuple[str, ...] = ()
    """Tarballs (``<package>@<version>``) whose first download is cut, whatever the draws say."""
    stall_first: tuple[str, ...] = ()
    """Tarballs whose first download stalls (``stall_seconds``), whatever the draws say."""

    def __post_init__(self) -> None:
        for name in ("cut_first", "stall_first"):
            names = getattr(self, name)
            if isinstance(names, str) or not all(isinstance(k, str) and "@" in k[1:] for k in names):
                raise ValueError(f"faultproxy: {name}={names!r} is not a list of <package>@<version> names")
            object.__setattr__(self, name, tuple(names))
        total = 0.0
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
                raise ValueError(f"faultproxy: fault probability {kind}={p!r} is not between 0 and 1")
            total += p
        if total > 1.0 + 1e-9:
            raise ValueError(f"faultproxy: fault probabilities add up to {total:g}, more than 1")
        s = self.stall_seconds
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not 0.0 <= s <= MAX_STALL_SECONDS:
            raise ValueError(f"faultproxy: stall_seconds={s!r} is not between 0 and {MAX_STALL_SECONDS:g}")

    @property
    def any(self) -> bool:
        return bool(self.cut_first or self.stall_first) or any(getattr(self, kind) > 0.0 for kind in FAULT_KINDS)

    def pick(self, rng: random.Random) -> str | None:
        """One fault kind (or None) for one request, from one draw of ``rng``."""
        x = rng.random()
        acc = 0.0
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            acc += p
            if p > 0.0 and x < acc:
                return kind
        return None

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Upstream:
    host: str       # what to connect to
    port: int
    prefix: str     # path prefix, no trailing slash ("" for the root)
    base_urls: tuple[str, ...]  # how the upstream may spell its own base URL (with a trailing slash)


def parse_upstream(url: str) -> _Upstream:
    """Validate the upstream URL: plain http on a loopback address. Raises ValueError otherwise."""
    if not isinstance(url, str) or not url:
        raise ValueError("faultproxy: the upstream URL is empty")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"faultproxy: upstream {url!r} is not a valid URL: {e}") from None
    if parts.scheme != "http":
        raise ValueError(
            f"faultproxy: upstream {url!r} refused: only plain http:// upstreams on a loopback "
            "address (127.0.0.0/8, ::1 or localhost) are allowed")
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValueError(f"faultproxy: upstream {url!r} refused: no user info, query or fragment allowed")
    if host == "localhost":
        connect = "127.0.0.1"
    else:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"faultproxy: upstream {url!r} refused: {host!r} is not a loopback address "
                "(give 127.0.0.1, ::1 or localhost; host names are never resolved)") from None
        if not addr.is_loopback:
            raise ValueError(
                f"faultproxy: upstream {url!r} refused: {host} is not a loopback address; "
                "the proxy only fronts a registry on this machine")
        connect = str(addr)
    port = port or 80
    prefix = parts.path.rstrip("/")
    hosts = {parts.netloc}
    if host in ("localhost", "127.0.0.1"):
        hosts |= {f"localhost:{port}", f"127.0.0.1:{port}"}
        if port == 80:
            hosts |= {"localhost", "127.0.0.1"}
    base_urls = tuple(sorted(f"http://{h}{prefix}/" for h in hosts))
    return _Upstream(connect, port, prefix, base_urls)


# --------------------------------------------------------------------------------------------
# Statistics


class ProxyStats:
    """Counters, updated by the proxy's event loop and readable from any thread."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self.seed = seed
        self.connections = 0
        self.requests = 0
        self.tarball_requests = 0
        self.bytes_sent = 0                 # every byte written to clients (heads and bodies)
        self.faults = {kind: 0 for kind in FAULT_KINDS}
        self.tarballs: dict[str, int] = {}  # "<package>@<version>" -> tarball requests
        self.upstream_errors = 0
        self.metadata_rewrites = 0
        self.fault_events: list[dict[str, str]] = []  # the first MAX_FAULT_EVENTS faults, in order

    @property
    def faults_total(self) -> int:
        with self._lock:
            return sum(self.faults.values())

    def _connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _request(self, tarball_key: str | None) -> None:
        with self._lock:
            self.requests += 1
            if tarball_key is not None:
                self.tarball_requests += 1
                self.tarballs[tarball_key] = self.tarballs.get(tarball_key, 0) + 1

    def _bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def _fault(self, kind: str, method: str, target: str) -> None:
        with self._lock:
            self.faults[kind] += 1
            if len(self.fault_events) < MAX_FAULT_EVENTS:
                self.fault_events.append({"kind": kind, "method": method, "target": target})

    def _upstream_error(self) -> None:
        with self._lock:
            self.upstream_errors += 1

    def _rewrite(self) -> None:
        with self._lock:
            self.metadata_rewrites += 1

    def snapshot(self) -> dict:
        """A JSON-ready copy of every counter."""
        with self._lock:
            return {
                "seed": self.seed,
                "connections": self.connections,
                "requests": self.requests,
                "tarball_requests": self.tarball_requests,
                "bytes_sent": self.bytes_sent,
                "faults": dict(self.faults),
                "faults_total": sum(self.faults.values()),
                "upstream_errors": self.upstream_errors,
                "metadata_rewrites": self.metadata_rewrites,
                "tarballs": dict(sorted(self.tarballs.items())),
                "fault_events": [dict(e) for e in self.fault_events],
            }


# --------------------------------------------------------------------------------------------
# HTTP/1.1 message helpers


class _BadMessage(Exception):
    """A malformed message from the client (answered 400) or the upstream (answered 502)."""


class _UpstreamError(Exception):
    pass


class _Closed(Exception):
    """The peer closed the connection in the middle of a message."""


@dataclasses.dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: Headers
    body: bytes
    keep_alive: bool


def _header(headers: Headers, name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _tokens(headers: Headers, name: str) -> set[str]:
    name = name.lower()
    out: set[str] = set()
    for k, v in headers:
        if k.lower() == name:
            out |= {t.strip().lower() for t in v.split(",") if t.strip()}
    return out


def _content_length(headers: Headers) -> int | None:
    values = {v.strip() for k, v in headers if k.lower() == "content-length"}
    if not values:
        return None
    if len(values) != 1:
        raise _BadMessage("conflicting Content-Length headers")
    (value,) = values
    if not value.isdigit():
        raise _BadMessage(f"bad Content-Length {value!r}")
    return int(value)


def _parse_head(raw: bytes) -> tuple[str, Headers]:
    lines = raw.decode("latin-1").split("\r\n")
    if len(lines) > MAX_HEADER_LINES + 3:
        raise _BadMessage("too many header lines")
    headers: Headers = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            raise _BadMessage("folded header lines are not supported")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadMessage(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return lines[0], headers


def _keep_alive(version: str, headers: Headers) -> bool:
    tokens = _tokens(headers, "connection")
    if version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens


def _strip_hop_by_hop(headers: Headers) -> Headers:
    listed = _tokens(headers, "connection")
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() not in listed]


def _tarball_key(method: str, target: str) -> str | None:
    """'<package>@<version>' for a tarball download (GET /<package>/-/<file>.tgz), else None."""
    if method != "GET":
        return None
    m = _TARBALL_RE.match(unquote(target.split("?", 1)[0]))
    if not m:
        return None
    pkg, file = m.group("pkg"), m.group("file")
    base = pkg.rsplit("/", 1)[-1]
    if file.startswith(base + "-") and len(file) > len(base) + 5:
        return f"{pkg}@{file[len(base) + 1:-4]}"
    return f"{pkg}/-/{file}"


async def _read_head(reader: asyncio.StreamReader, timeout: float) -> bytes | None:
    """One message head (up to the blank line); None when the peer closed before sending any byte."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise _Closed("connection closed inside a message head") from None
    except asyncio.LimitOverrunError:
        raise _BadMessage(f"message head larger than {MAX_HEADER_BYTES} bytes") from None


async def _iter_length(reader: asyncio.StreamReader, n: int, timeout: float) -> AsyncIterator[bytes]:
    remaining = n
    for _ in range(n + 1):  # every read returns at least one byte, or raises
        if remaining <= 0:
            return
        data = await asyncio.wait_for(reader.read(min(IO_CHUNK, remaining)), timeout)
        if not data:
            raise _Closed(f"connection closed with {remaining} of {n} body bytes missing")
        remaining -= len(data)
        yield data


async def _iter_chunked(reader: asyncio.StreamReader, timeout: float, limit: int) -> AsyncIterator[bytes]:
    total = 0
    for _ in range(MAX_CHUNKS):
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except ValueError:
            raise _BadMessage("chunk-size line too long") from None
        if not line.endswith(b"\n"):
            raise _Closed("connection closed inside a chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadMessage(f"bad chunk-size line {line[:40]!r}") from None
        if size < 0:
            raise _BadMessage("negative chunk size")
        if size == 0:
            for _ in range(MAX_HEADER_LINES):  # trailers, up to the blank line
                t = await asyncio.wait_for(reader.readline(), timeout)
                if t in (b"\r\n", b"\n"):
                    return
                if not t:
                    raise _Closed("connection closed inside chunked trailers")
            raise _BadMessage("too many trailer lines")
        total += size
        if total > limit:
            raise _BadMessage(f"chunked body larger than {limit} bytes")
        async for data in _iter_length(reader, size, timeout):
            yield data
        try:
            crlf = await asyncio.wait_for(reader.readexactly(2), timeout)
        except asyncio.IncompleteReadError:
            raise _Closed("connection closed inside a chunked body") from None
        if crlf != b"\r\n":
            raise _BadMessage("chunk not followed by CRLF")
    raise _BadMessage(f"more than {MAX_CHUNKS} chunks")


async def _iter_until_close(reader: asyncio.StreamReader, timeout: float, limit: int) -> AsyncIterator[bytes]:
    total = 0
    for _ in range(limit + 1):
        data = await asyncio.wait_for(reader.read(IO_CHUNK), timeout)
        if not data:
            return
        total += len(data)
        if total > limit:
            raise _BadMessage(f"body larger than {limit} bytes")
        yield data


async def _collect(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for data in chunks:
        size += len(data)
        if size > limit:
            raise _BadMessage(f"body larger than {limit} bytes")
        parts.append(data)
    return b"".join(parts)


def _response_framing(method: str, status: int, headers: Headers) -> tuple[str, int]:
    """('none' | 'length' | 'chunked' | 'close', content length)."""
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return "none", 0
    te = [t for k, v in headers if k.lower() == "transfer-encoding" for t in v.lower().split(",")]
    if te:
        return ("chunked", 0) if te[-1].strip() == "chunked" else ("close", 0)
    n = _content_length(headers)
    if n is not None:
        return "length", n
    return "close", 0


class _UpstreamConnection:
    """One kept-alive connection to the upstream, per client connection."""

    def __init__(self, up: _Upstream) -> None:
        self.up = up
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.up.host, self.up.port, limit=MAX_HEADER_BYTES),
                UPSTREAM_CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            raise _UpstreamError(f"cannot connect to {self.up.host}:{self.up.port}: {e or type(e).__name__}") from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --------------------------------------------------------------------------------------------
# The proxy


class FaultProxy:
    """The proxy; ``await start()`` returns its URL, ``await stop()`` ends it."""

    def __init__(self, upstream: str, faults: Faults | None = None, seed: int | None = None,
                 tarballs_only: bool = True, listen_port: int = 0, verbose: bool = False) -> None:
        self._up = parse_upstream(upstream)
        self.upstream = upstream
        self.faults = faults if faults is not None else Faults()
        if not isinstance(self.faults, Faults):
            raise TypeError("faultproxy: faults must be a Faults")
        if not isinstance(listen_port, int) or not 0 <= listen_port <= 65535:
            raise ValueError(f"faultproxy: listen port {listen_port!r} is not a port number")
        self.seed = seed if seed is not None else random.SystemRandom().randrange(1 << 32)
        self.tarballs_only = tarballs_only
        self.verbose = verbose
        self.stats = ProxyStats(self.seed)
        self.url: str | None = None
        self._listen_port = listen_port
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._seen: dict[tuple[str, str], int] = {}
        self._first_done: set[tuple[str, str]] = set()  # (kind, tarball) of cut_first / stall_first
        self._base_url = ""

    # lifecycle

    async def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("faultproxy: already started")
        self._server = await asyncio.start_server(
            self._handle, LISTEN_HOST, self._listen_port, limit=MAX_HEADER_BYTES, reuse_address=True)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{LISTEN_HOST}:{port}/"
        self._base_url = self.url
        return self.url

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 10)

    # one client connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.stats._connection()
        upstream = _UpstreamConnection(self._up)
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if isinstance(peer, tuple) else LISTEN_HOST
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                try:
                    req = await self._read_request(reader, writer)
                except _BadMessage as e:
                    await self._send_simple(writer, 400, "Bad Request", f"faultproxy: {e}\n".encode(), False)
                    break
                if req is None:
                    break
                if not await self._serve(req, writer, upstream, client_ip):
                    break
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, _Closed, _BadMessage):
            pass  # the client went away, or sent something unusable: drop the connection
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio's stream callback logs a cancelled handler as an error)
        finally:
            upstream.close()
            if not writer.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            if task is not None:
                self._tasks.discard(task)

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
        try:
            raw = await _read_head(reader, CLIENT_IDLE_TIMEOUT)
        except asyncio.TimeoutError:
            return None  # an idle kept-alive connection
        if raw is None:
            return None
        start, headers = _parse_head(raw.lstrip(b"\r\n"))
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadMessage(f"bad request line {start[:80]!r}")
        method, target, version = parts
        if target.startswith(("http://", "https://")):  # absolute-form: keep only path and query
            sp = urlsplit(target)
            if _header(headers, "host") is None and sp.netloc:
                headers.append(("Host", sp.netloc))
            target = (sp.path or "/") + (f"?{sp.query}" if sp.query else "")
        if not target.startswith("/"):
            raise _BadMessage(f"unsupported request target {target[:80]!r}")
        if "100-continue" in _tokens(headers, "expect"):
            await self._send(writer, b"HTTP/1.1 100 Continue\r\n\r\n")
        te = _header(headers, "transfer-encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise _BadMessage(f"unsupported request Transfer-Encoding {te!r}")
            body = await _collect(_iter_chunked(reader, CLIENT_IO_TIMEOUT, MAX_REQUEST_BODY_BYTES),
                                  MAX_REQUEST_BODY_BYTES)
        else:
            n = _content_length(headers) or 0
            if n > MAX_REQUEST_BODY_BYTES:
                raise _BadMessage(f"request body larger than {MAX_REQUEST_BODY_BYTES} bytes")
            try:
                body = await asyncio.wait_for(reader.readexactly(n), CLIENT_IO_TIMEOUT) if n else b""
            except asyncio.IncompleteReadError:
                raise _Closed("client closed inside a request body") from None
        return _Request(method, target, version, headers, body, _keep_alive(version, headers))

    def _draw(self, req: _Request) -> tuple[str | None, random.Random | None]:
        if not self.faults.any:
            return None, None
        key = (req.method, req.target)
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        rng = random.Random(f"{self.seed}\0{req.method}\0{req.target}\0{n}")
        return self.faults.pick(rng), rng

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(f"faultproxy: {msg}", file=sys.stderr, flush=True)

    async def _serve(self, req: _Request, writer: asyncio.StreamWriter, up: _UpstreamConnection,
                     client_ip: str) -> bool:
        """Answer one request; True when the client connection stays open for the next."""
        tarball = _tarball_key(req.method, req.target)
        self.stats._request(tarball)
        fault, rng = (None, None)
        if tarball is not None or not self.tarballs_only:
            fault, rng = self._draw(req)
        for kind, names in (("cut", self.faults.cut_first), ("stall", self.faults.stall_first)):
            if tarball in names and (kind, tarball) not in self._first_done:
                self._first_done.add((kind, tarball))
                fault = kind
                break

        if fault == "reset":
            self.stats._fault("reset", req.method, req.target)
            self._log(f"reset {req.method} {req.target}")
            _reset(writer)
            return False
        if fault == "stall":
            self.stats._fault("stall", req.method, req.target)
            self._log(f"stall {self.faults.stall_seconds:g}s {req.method} {req.target}")
            await asyncio.sleep(self.faults.stall_seconds)
            return False
        if fault == "status_5xx":
            self.stats._fault("status_5xx", req.method, req.target)
            self._log(f"503 {req.method} {req.target}")
            await self._send_simple(writer, 503, "Service Unavailable", b"faultproxy: injected 503\n",
                                    req.keep_alive, [("Retry-After", "1")])
            return req.keep_alive

        try:
            version, status, reason, headers = await self._exchange(up, req, client_ip)
            framing, length = _response_framing(req.method, status, headers)
        except (_UpstreamError, _BadMessage, _Closed) as e:
            up.close()
            self.stats._upstream_error()
            self._log(f"upstream error for {req.method} {req.target}: {e}")
            await self._send_simple(writer, 502, "Bad Gateway", f"faultproxy: upstream: {e}\n".encode(),
                                    req.keep_alive)
            return req.keep_alive

        up_keep = _keep_alive(version, headers) and framing != "close"
        finished = False
        try:
            if fault == "cut" and framing != "none":
                assert rng is not None
                await self._send_cut(req, writer, up, status, reason, headers, framing, length, rng)
                return False
            keep = await self._relay(req, writer, up, status, reason, headers, framing, length, tarball)
            finished = True
            return keep
        finally:
            if not (finished and up_keep):
                up.close()

    async def _exchange(self, up: _UpstreamConnection, req: _Request, client_ip: str) -> tuple[str, int, str, Headers]:
        """Send the request upstream and read the response head (retrying once on a stale
        kept-alive connection that closed before answering)."""
        host = _header(req.headers, "host") or self._base_url[len("http://"):].rstrip("/")
        headers = [(k, v) for k, v in _strip_hop_by_hop(req.headers)
                   if k.lower() not in ("host", "content-length", "accept-encoding", "expect",
                                        "x-forwarded-proto", "x-forwarded-host", "x-forwarded-for")]
        xff = _header(req.headers, "x-forwarded-for")
        head_lines = [
            f"{req.method} {self._up.prefix}{req.target} HTTP/1.1",
            # verdaccio builds tarball URLs from this Host header: keep the proxy's address in it.
            f"Host: {host}",
            *(f"{k}: {v}" for k, v in headers),
            "Accept-Encoding: identity",
            "X-Forwarded-Proto: http",
            f"X-Forwarded-Host: {host}",
            f"X-Forwarded-For: {xff + ', ' if xff else ''}{client_ip}",
            "Connection: keep-alive",
        ]
        if req.body or req.method in ("POST", "PUT", "PATCH"):
            head_lines.append(f"Content-Length: {len(req.body)}")
        message = ("\r\n".join(head_lines) + "\r\n\r\n").encode("latin-1") + req.body

        for attempt in range(2):
            reused = up.writer is not None
            if not reused:
                await up.open()
            assert up.reader is not None and up.writer is not None
            try:
                up.writer.write(message)
                await asyncio.wait_for(up.writer.drain(), UPSTREAM_TIMEOUT)
                for _ in range(MAX_INTERIM_RESPONSES + 1):
                    raw = await _read_head(up.reader, UPSTREAM_TIMEOUT)
                    if raw is None:
                        raise _Closed("upstream closed the connection before answering")
                    start, rheaders = _parse_head(raw)
                    parts = start.split(" ", 2)
                    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                        raise _BadMessage(f"bad upstream status line {start[:80]!r}")
                    status = int(parts[1])
                    if 100 <= status < 200 and status != 101:
                        continue  # interim response: the final one follows
                    return parts[0], status, parts[2] if len(parts) > 2 else "", rheaders
                raise _BadMessage("too many interim responses")
            except asyncio.TimeoutError:  # before OSError: TimeoutError is one
                up.close()
                raise _UpstreamError(f"no answer within {UPSTREAM_TIMEOUT:g} s") from None
            except (OSError, _Closed) as e:
                up.close()
                if reused and attempt == 0:
                    continue
                raise _UpstreamError(str(e) or type(e).__name__) from None
        raise _UpstreamError("upstream closed the connection before answering")

    def _body_iter(self, up: _UpstreamConnection, framing: str, length: int, limit: int) -> AsyncIterator[bytes]:
        assert up.reader is not None
        if framing == "length":
            return _iter_length(up.reader, length, UPSTREAM_TIMEOUT)
        if framing == "chunked":
            return _iter_chunked(up.reader, UPSTREAM_TIMEOUT, limit)
        return _iter_until_close(up.reader, UPSTREAM_TIMEOUT, limit)

    def _rewrite_targets(self) -> list[tuple[bytes, bytes]]:
        new = self._base_url.encode()
        return [(old.encode(), new) for old in self._up.base_urls if old != self._base_url]

    async def _relay(self, req: _Request, writer: asyncio.StreamWriter, up: _UpstreamConnection, status: int,
                     reason: str, headers: Headers, framing: str, length: int, tarball: str | None) -> bool:
        out = [(k, v) for k, v in _strip_hop_by_hop(headers) if k.lower() != "content-length"]
        ctype = (_header(headers, "content-type") or "").lower()
        encoding = (_header(headers, "content-encoding") or "identity").strip().lower()
        rewrite = (tarball is None and framing != "none" and status == 200 and "json" in ctype
                   and encoding == "identity" and (framing != "length" or length <= MAX_BUFFERED_BODY_BYTES))
        targets = self._rewrite_targets() if rewrite else []

        if framing == "none":
            cl = _header(headers, "content-length")
            if cl is not None:
                out.append(("Content-Length", cl))
            await self._send_head(writer, status, reason, out, req.keep_alive)
            return req.keep_alive

        if targets:
            body = await _collect(self._body_iter(up, framing, length, MAX_BUFFERED_BODY_BYTES),
                                  MAX_BUFFERED_BODY_BYTES)
            new = body
            for old, repl in targets:
                new = new.replace(old, repl)
            if new != body:
                self.stats._rewrite()
            out.append(("Content-Length", str(len(new))))
            await self._send_head(writer, status, reason, out, req.keep_alive)
            await self._send(writer, new)
            return req.keep_alive

        if framing == "length":
            out.append(("Content-Length", str(length)))
            await self._send_head(writer, status, reason, out, req.keep_alive)
            async for data in self._body_iter(up, framing, length, MAX_BODY_BYTES):
                await self._send(writer, data)
            return req.keep_alive

        # chunked or close-delimited upstream body: re-chunk for HTTP/1.1 clients
        if req.version == "HTTP/1.1":
            out.append(("Transfer-Encoding", "chunked"))
            await self._send_head(writer, status, reason, out, req.keep_alive)
            async for data in self._body_iter(up, framing, length, MAX_BODY_BYTES):
                await self._send(writer, b"%x\r\n%s\r\n" % (len(data), data))
            await self._send(writer, b"0\r\n\r\n")
            return req.keep_alive
        await self._send_head(writer, status, reason, out, False)
        async for data in self._body_iter(up, framing, length, MAX_BODY_BYTES):
            await self._send(writer, data)
        return False

    async def _send_cut(self, req: _Request, writer: asyncio.StreamWriter, up: _UpstreamConnection, status: int,
                        reason: str, headers: Headers, framing: str, length: int, rng: random.Random) -> None:
        out = [(k, v) for k, v in _strip_hop_by_hop(headers) if k.lower() != "content-length"]
        body = b""
        if framing != "length":  # the real length is only known once the whole body is here
            body = await _collect(self._body_iter(up, framing, length, MAX_BUFFERED_BODY_BYTES),
                                  MAX_BUFFERED_BODY_BYTES)
            length = len(body)
        keep = max(0, min(length - 1, int(length * rng.uniform(0.1, 0.9))))
        out.append(("Content-Length", str(length)))
        if length > 0:
            self.stats._fault("cut", req.method, req.target)
            self._log(f"cut {req.method} {req.target} after {keep} of {length} bytes")
        await self._send_head(writer, status, reason, out, True)
        if framing == "length":
            async for data in self._body_iter(up, framing, keep, MAX_BODY_BYTES):
                await self._send(writer, data)
        else:
            await self._send(writer, body[:keep])
        # then the connection is closed (by the caller), the rest of the body never comes

    # writing to the client

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.stats._bytes(len(data))
        await asyncio.wait_for(writer.drain(), CLIENT_IO_TIMEOUT)

    async def _send_head(self, writer: asyncio.StreamWriter, status: int, reason: str, headers: Headers,
                         keep_alive: bool) -> None:
        lines = [f"HTTP/1.1 {status} {reason}".rstrip(), *(f"{k}: {v}" for k, v in headers),
                 f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        await self._send(writer, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def _send_simple(self, writer: asyncio.StreamWriter, status: int, reason: str, body: bytes,
                           keep_alive: bool, extra: Headers | None = None) -> None:
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                   *(extra or [])]
        await self._send_head(writer, status, reason, headers, keep_alive)
        await self._send(writer, body)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0), so the client sees ECONNRESET."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --------------------------------------------------------------------------------------------
# Running the proxy from synchronous code


class RunningProxy(NamedTuple):
    """What ``running_proxy`` yields: unpack it as ``(url, stats)`` or use the fields."""

    url: str
    stats: ProxyStats


@contextlib.contextmanager
def running_proxy(upstream: str, faults: Faults | None = None, seed: int | None = None,
                  tarballs_only: bool = True, listen_port: int = 0, verbose: bool = False,
                  start_timeout: float = 10.0) -> Iterator[RunningProxy]:
    """Run a FaultProxy on its own event loop in a background thread for the ``with`` block."""
    proxy = FaultProxy(upstream, faults, seed=seed, tarballs_only=tarballs_only,
                       listen_port=listen_port, verbose=verbose)  # bad arguments raise here
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="faultproxy", daemon=True)
    thread.start()
    try:
        url = asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(start_timeout)
        yield RunningProxy(url, proxy.stats)
    finally:
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        if not thread.is_alive():
            loop.close()


# --------------------------------------------------------------------------------------------
# Command line


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"not a probability between 0 and 1: {text!r}")
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faultproxy",
        description="Fault-injecting HTTP reverse proxy on 127.0.0.1 in front of a loopback npm registry. "
                    "Prints its URL on the first line of stdout, runs until SIGTERM/SIGINT.")
    p.add_argument("--upstream", required=True, help="the registry's URL (http:// on a loopback address)")
    p.add_argument("--listen-port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--reset", type=_probability, default=0.0, help="probability of a connection reset")
    p.add_argument("--stall", type=_probability, default=0.0, help="probability of a stall")
    p.add_argument("--stall-seconds", type=float, default=30.0, help="how long a stall lasts (default 30)")
    p.add_argument("--cut", type=_probability, default=0.0, help="probability of a body cut short")
    p.add_argument("--status-5xx", type=_probability, default=0.0, help="probability of a 503")
    p.add_argument("--cut-first", action="append", default=[], metavar="PKG@VERSION",
                   help="cut the first download of this tarball (repeatable)")
    p.add_argument("--stall-first", action="append", default=[], metavar="PKG@VERSION",
                   help="stall the first download of this tarball (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="seed for the fault draws (default: random, in the stats)")
    p.add_argument("--all-requests", action="store_true", help="fault metadata requests too, not only tarballs")
    p.add_argument("--stats-file", default=None, help="write the stats JSON here on exit")
    p.add_argument("--verbose", "-v", action="store_true", help="log every injected fault to stderr")
    return p


def _write_stats(path: str, stats: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


async def _run_cli(proxy: FaultProxy, stats_file: str | None) -> int:
    url = await proxy.start()
    print(url, flush=True)
    print(f"faultproxy: {url} -> {proxy.upstream} faults={proxy.faults.as_dict()} seed={proxy.seed} "
          f"tarballs_only={proxy.tarballs_only}", file=sys.stderr, flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await proxy.stop()
        snap = proxy.stats.snapshot()
        if stats_file:
            _write_stats(stats_file, snap)
        print(f"faultproxy: stopped: {snap['requests']} requests, {snap['tarball_requests']} tarball requests, "
              f"{snap['bytes_sent']} bytes sent, faults {snap['faults']}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        faults = Faults(reset=args.reset, stall=args.stall, stall_seconds=args.stall_seconds,
                        cut=args.cut, status_5xx=args.status_5xx, cut_first=tuple(args.cut_first),
                        stall_first=tuple(args.stall_first))
        proxy = FaultProxy(args.upstream, faults, seed=args.seed, tarballs_only=not args.all_requests,
                           listen_port=args.listen_port, verbose=args.verbose)
    except ValueError as e:
        print(e, file=sys.stderr)  # every message starts with "faultproxy: "
        return 2
    try:
        return asyncio.run(_run_cli(proxy, args.stats_file))
    except OSError as e:
        print(f"faultproxy: error: cannot listen on {LISTEN_HOST}:{args.listen_port}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
