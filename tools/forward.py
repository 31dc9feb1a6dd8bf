"""A TCP forward: bytes from a listening address to one target, both ways, in a background thread.

The Swarm test bed's nodes live in network namespaces of their own; a service that listens on this
machine's loopback only (the local npm registry cache, or a fault proxy in front of it) is out of
their reach. A forward on the bed's bridge address brings it in: the build node's npm connects to
the bridge, the forward connects to loopback. Written here on asyncio's streams because a byte pipe
is all it takes and no forwarding tool (socat, a TCP relay) is installed on these machines.

    with Forward("10.213.37.1", 0, ("127.0.0.1", 4873)) as forward:
        forward.url        # http://10.213.37.1:<port>/
"""

from __future__ import annotations

import asyncio
import threading
from typing import Optional


class Forward:
    """Listens on `listen`:`port` (0: a free port) and pipes each connection to `target`. `port`
    stays 0 when it could not listen (the address is taken, or not this machine's): `error` says why."""

    def __init__(self, listen: str, port: int, target: tuple[str, int]):
        self.listen, self.target = listen, target
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
