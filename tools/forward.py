"""A TCP forward: bytes from a listening address to one target, both ways, in a background thread.

A service that listens on this machine's loopback only (the local npm registry cache, or a fault
proxy in front of it) is out of reach of a build on Docker's bridge network, and of the Swarm test
bed's nodes in their network namespaces. A forward on the bridge's address brings it in: the
build's npm connects to the bridge, the forward connects to loopback. `allow` keeps it to the
builds: a connection from outside those networks (a hub's container on its stack's network reaches
the same address) is closed before anything is read or forwarded. Written here on asyncio's streams
because a byte pipe is all it takes and no forwarding tool (socat, a TCP relay) is installed on
these machines.

    with Forward("10.213.37.1", 0, ("127.0.0.1", 4873)) as forward:
        forward.url        # http://10.213.37.1:<port>/

Run as a program, it forwards until it is stopped (SIGTERM, SIGINT):

    python3 tools/forward.py --listen 172.17.0.1 --port 4873 --target 127.0.0.1:4873 --allow 172.17.0.0/16
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
import threading
from typing import Optional, Sequence


class Forward:
    """Listens on `listen`:`port` (0: a free port) and pipes each connection to `target`; with
    `allow`, only connections from those networks. `port` stays 0 when it could not listen (the
    address is taken, or not this machine's): `error` says why."""

    def __init__(self, listen: str, port: int, target: tuple[str, int], allow: Sequence[str] = ()):
        self.listen, self.target = listen, target
        self.allow = [ipaddress.ip_network(network) for network in allow]
        self.refused = 0
        self.port = 0
        self.error: Optional[OSError] = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="forward", daemon=True)
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(self._handle, listen, port, reuse_address=True), self.loop).result(10)
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as error:
            self._server, self.error = None, error

    def allowed(self, peer: str) -> bool:
        """Whether a connection from `peer` is forwarded."""
        return not self.allow or any(ipaddress.ip_address(peer) in network for network in self.allow)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.allowed(writer.get_extra_info("peername")[0]):
            self.refused += 1
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.close()
                return
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            self._writers.discard(up_writer)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://{self.listen}:{self.port}/"

    def close(self) -> None:
        """Stops listening, drops the connections still open, and ends the thread."""
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            # Aborted, not cancelled: each pipe sees its connection end and returns.
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()

    def __enter__(self) -> "Forward":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Forward TCP connections from one address to a target.")
    parser.add_argument("--listen", required=True, help="the address to listen on")
    parser.add_argument("--port", type=int, required=True, help="the port to listen on")
    parser.add_argument("--target", required=True, help="HOST:PORT to forward each connection to")
    parser.add_argument("--allow", action="append", default=[], help="a network connections may come from (repeat)")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    forward = Forward(args.listen, args.port, (host, int(port)), args.allow)
    if not forward.port:
        print(f"forward: cannot listen on {args.listen}:{args.port}: {forward.error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"forward: {args.listen}:{forward.port} -> {args.target}, from {', '.join(args.allow) or 'anywhere'}",
          file=sys.stderr, flush=True)
    stop.wait()
    forward.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
