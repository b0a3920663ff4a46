"""A small asyncio TCP proxy that tests turn into a bad network.

Put it between a server and Postgres (or between a client and a server) and switch it:

- :meth:`TcpProxy.restore` passes traffic both ways (the start state); bytes held by a
  stall are delivered.
- :meth:`TcpProxy.cut` resets every open connection and resets each new one as soon as it
  is accepted, until restored: a database that went away.
- :meth:`TcpProxy.stall` accepts connections and reads what is sent but forwards nothing
  either way: a database (or network) that stopped answering without closing anything. A
  connection whose sender closes it while held is reset, its held bytes dropped.
- :meth:`TcpProxy.hold_replies` forwards what the client sends and holds what the server
  answers: a request that reached the server whose answer has not reached the client yet.

It runs in the caller's event loop: ``async with running_proxy(host, port) as proxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["TcpProxy", "database_proxy", "running_proxy"]

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]

_CHUNK = 65536


class TcpProxy:
    """A loopback TCP proxy to what ``upstream`` connects to, with a switch (the module)."""

    def __init__(self, upstream: Callable[[], Awaitable[Streams]]) -> None:
        self._upstream = upstream
        self.port = 0
        self._cutting = False
        # Set: bytes flow in that direction; clear: they are held.
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._up.set()
        self._down.set()
        self._transports: set[asyncio.Transport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.accepted = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._reset_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def restore(self) -> None:
        """Pass traffic both ways again (held bytes go on)."""
        self._cutting = False
        self._up.set()
        self._down.set()

    def cut(self) -> None:
        """Reset every connection now and every new one until :meth:`restore`."""
        self._cutting = True
        self._reset_all()

    def stall(self) -> None:
        """Accept and read, forward nothing, either way, until :meth:`restore`."""
        self._up.clear()
        self._down.clear()

    def hold_replies(self) -> None:
        """Forward requests, hold what comes back, until :meth:`restore` or :meth:`cut`."""
        self._up.set()
        self._down.clear()

    def _reset_all(self) -> None:
        for transport in list(self._transports):
            transport.abort()  # an RST, not a polite FIN
        self._transports.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        transport = writer.transport
        if self._cutting:
            transport.abort()
            return
        self._transports.add(transport)  # type: ignore[arg-type]
        try:
            up_reader, up_writer = await self._upstream()
        except OSError:
            transport.abort()
            return
        self._transports.add(up_writer.transport)  # type: ignore[arg-type]
        if self._cutting:  # cut while connecting
            self._reset_all()
            return
        for pipe in (
            self._pipe(reader, up_writer, self._up),
            self._pipe(up_reader, writer, self._down),
        ):
            task = asyncio.create_task(pipe)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, flowing: asyncio.Event
    ) -> None:
        """Copy ``source`` to ``sink`` in order; while ``flowing`` is clear, read on but hold."""
        held = bytearray()
        more = asyncio.Event()
        ended = False

        async def read() -> None:
            nonlocal ended
            try:
                while data := await source.read(_CHUNK):
                    held.extend(data)
                    more.set()
            except OSError:
                pass
            finally:
                ended = True
                more.set()

        reading = asyncio.create_task(read())
        try:
            while True:
                await more.wait()
                if ended and not flowing.is_set():
                    # The sender gave up while held: what it sent is lost with it, as on a
                    # network that dropped the connection.
                    sink.transport.abort()
                    return
                await flowing.wait()
                more.clear()
                if held:
                    sink.write(bytes(held))
                    held.clear()
                    await sink.drain()
                if ended and not held:
                    break
        except OSError:
            pass
        finally:
            reading.cancel()
            with contextlib.suppress(Exception):
                sink.close()


@asynccontextmanager
async def _started(proxy: TcpProxy) -> AsyncIterator[TcpProxy]:
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@asynccontextmanager
async def running_proxy(target_host: str, target_port: int) -> AsyncIterator[TcpProxy]:
    """A started proxy to ``target_host:target_port``, closed on exit."""

    def upstream() -> Awaitable[Streams]:
        return asyncio.open_connection(target_host, target_port)

    async with _started(TcpProxy(upstream)) as proxy:
        yield proxy


@asynccontextmanager
async def database_proxy(url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A started proxy in front of the Postgres ``url`` names (over TCP or a Unix socket,
    as the embedded one listens) and the URL that goes through it."""
    params = conninfo_to_dict(url)
    host = str(params.get("host") or "localhost")
    port = int(params.get("port") or 5432)

    def upstream() -> Awaitable[Streams]:
        if host.startswith("/"):
            return asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return asyncio.open_connection(host, port)

    async with _started(TcpProxy(upstream)) as proxy:
        yield proxy, make_conninfo(url, host=proxy.host, port=str(proxy.port))
