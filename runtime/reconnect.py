"""A read whose connection failed under it runs once more: :func:`read_again`.

Postgres restarted, a failover, a proxy or the network cut the connection mid-query: the
read did nothing and the same read on a fresh connection (the pool throws the failed one
away) answers. Used by the query helpers (``runtime.db.query``, plain ``SELECT``s) and the
checkpointer's reads (``runtime.checkpoints.saver``). Never for writes: a write whose
connection failed may have committed, and is never sent twice. A leaf module (psycopg only),
so the checkpoint package can use it without importing ``runtime.db``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

__all__ = ["connection_lost", "read_again"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection itself failed (the server or the network closed
    it), so the statement on it did nothing that a read could not do again.

    Not a pool that had nothing to lend in time (waiting again would double the wait), not a
    statement's own error (a cancelled query, a constraint), not a connection cut because it
    got no answer in time (``DatabaseUnavailable``, raised by ``runtime.db.bounded``: the
    database is stalled, and a second wait would double the bound).
    """
    if isinstance(exc, PoolTimeout | PoolClosed):
        return False
    if isinstance(exc, psycopg.InterfaceError):  # used after it was closed
        return True
    if isinstance(exc, psycopg.OperationalError):
        return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
    return False


async def read_again(read: Callable[[], Awaitable[T]]) -> T:
    """Run ``read`` (an idempotent read that borrows its own pooled connection); if the
    connection failed under it (:func:`connection_lost`), run it once more."""
    try:
        return await read()
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if not connection_lost(exc):
            raise
    log.info("a pooled connection failed under a read; the read runs again on a fresh one")
    return await read()
