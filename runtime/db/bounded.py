"""The pool's guards against a database that went away or stopped answering.

:class:`BoundedPool` is psycopg's ``AsyncConnectionPool`` with two additions:

- **Dead connections are not lent.** A pooled connection whose server closed it (Postgres
  restarted, a proxy or the network cut it) has its socket readable: the end of the stream,
  or the server's last ``FATAL``. Checking that costs one ``select`` with a zero timeout (about
  2 µs, measured), not a round trip, so it is done on every checkout; a readable connection,
  or one idle for longer than :data:`CHECK_IDLE_SECONDS` (the network may have dropped it
  silently), is pinged before it is lent, and dropped if the ping fails.
- **Every use of a connection is bounded.** Once :meth:`BoundedPool.bound` is called, a
  connection held for longer than ``deadline_seconds`` (a query, a transaction, a ping that
  gets no answer: a stalled network or server) has its socket shut down. The statement
  fails at once as if the server had closed the connection, the pool throws the connection
  away and the caller gets :class:`~runtime.errors.DatabaseUnavailable`. Postgres' own
  ``statement_timeout`` cannot do this: a stalled network never delivers the statement.
  Migrations run before the bound is set (an index build on a big database takes long).
- **Reconnecting does not back off for long.** psycopg's pool retries a failed connection
  attempt with exponential backoff for up to five minutes: after an outage of twenty seconds
  its next attempt could be sixteen seconds away, and requests waited for it in vain once
  Postgres was back. Once bound, an attempt gives up after :data:`RECONNECT_SECONDS` (one
  retry) and the next request that waits for a connection starts a fresh one, so a request
  gets a connection within about a second of Postgres coming back. (Until then, at start-up,
  the pool keeps trying for the whole of ``open``'s wait: a database still starting.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from runtime.errors import DatabaseUnavailable

__all__ = ["CHECK_IDLE_SECONDS", "RECONNECT_SECONDS", "BoundedPool", "readable"]

log = logging.getLogger(__name__)

# A pooled connection idle for longer than this is pinged before it is lent.
CHECK_IDLE_SECONDS = 5.0
# Once serving, how long one attempt to replace a lost connection keeps retrying.
RECONNECT_SECONDS = 1.0


def readable(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection has something to read: the server closed it, or sent a
    message unasked (its last ``FATAL``, a notice). True for a closed connection too."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:
        return True
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)


def _shut_down(conn: AsyncConnection[Any]) -> None:
    """Shut the connection's socket down: whatever waits on it fails now (the end of the
    stream), as when the server closes it. The file descriptor stays libpq's."""
    conn._sessiongraph_timed_out = True  # type: ignore[attr-defined]
    with contextlib.suppress(OSError, psycopg.OperationalError):
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        with sock:
            sock.shutdown(socket.SHUT_RDWR)
    log.warning("a database connection got no answer in time; it was cut")


async def _stamp_returned(conn: AsyncConnection[Any]) -> None:
    conn._sessiongraph_returned_at = time.monotonic()  # type: ignore[attr-defined]


class BoundedPool(AsyncConnectionPool[AsyncConnection[Any]]):
    """A connection pool that lends no dead connection and bounds each use of one."""

    def __init__(self, conninfo: str, **kwargs: Any) -> None:
        self.deadline_seconds: float | None = None
        super().__init__(conninfo, check=self._check_lent, reset=_stamp_returned, **kwargs)

    def bound(self, seconds: float) -> None:
        """From now on, a connection held longer than ``seconds`` is cut, and reconnecting
        gives up after :data:`RECONNECT_SECONDS` (the next waiting request starts again)."""
        self.deadline_seconds = seconds
        self.reconnect_timeout = RECONNECT_SECONDS

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[Any]:
        async with super().connection(timeout) as conn:
            if self.deadline_seconds is None:
                yield conn
                return
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self.deadline_seconds, _shut_down, conn)
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if getattr(conn, "_sessiongraph_timed_out", False):
                    raise DatabaseUnavailable(
                        "the database did not answer in time; retry shortly"
                    ) from exc
                raise
            finally:
                timer.cancel()

    async def _check_lent(self, conn: AsyncConnection[Any]) -> None:
        """Ping a connection about to be lent if it looks closed or sat idle long."""
        returned = getattr(conn, "_sessiongraph_returned_at", None)
        idle = returned is None or time.monotonic() - returned > CHECK_IDLE_SECONDS
        if not (idle or readable(conn)):
            return
        timer = None
        if self.deadline_seconds is not None:
            timer = asyncio.get_running_loop().call_later(self.deadline_seconds, _shut_down, conn)
        try:
            await AsyncConnectionPool.check_connection(conn)
        finally:
            if timer is not None:
                timer.cancel()
