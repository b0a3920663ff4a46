"""The one way to run a statement: :func:`fetch_one`, :func:`fetch_all`, :func:`execute`.

Each takes either the pool (it borrows a connection for the one statement, autocommit) or a
connection the caller holds (inside its transaction or pipeline), so stores never write
``async with pool.connection() ... fetchone()`` by hand.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from runtime.reconnect import read_again

__all__ = [
    "Db",
    "Params",
    "Pool",
    "Row",
    "all_or_nothing",
    "connect",
    "execute",
    "fetch_all",
    "fetch_one",
]

log = logging.getLogger(__name__)

Row: TypeAlias = dict[str, Any]
Pool: TypeAlias = AsyncConnectionPool[AsyncConnection[Row]]
# Where a statement runs: the pool, or a connection the caller holds.
Db: TypeAlias = Pool | AsyncConnection[Row]
Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None


@asynccontextmanager
async def connect(db: Db) -> AsyncIterator[AsyncConnection[Row]]:
    """A connection: ``db`` itself, or one borrowed from the pool for the block."""
    if isinstance(db, AsyncConnection):
        yield db
        return
    async with db.connection() as conn:
        yield conn


async def fetch_one(db: Db, sql: str, params: Params = None) -> Row | None:
    """Run ``sql`` and return its first row (None when it returns none)."""
    rows = await _fetch(db, sql, params, one=True)
    return rows[0] if rows else None


async def fetch_all(db: Db, sql: str, params: Params = None) -> list[Row]:
    """Run ``sql`` and return every row."""
    return await _fetch(db, sql, params, one=False)


def _is_read(sql: str) -> bool:
    """A plain ``SELECT`` (no ``FOR UPDATE``): safe to run again."""
    head = sql.lstrip()[:6].upper()
    return head == "SELECT" and " FOR UPDATE" not in sql.upper()


async def _fetch(db: Db, sql: str, params: Params, *, one: bool) -> list[Row]:
    """Run ``sql``; a read on the pool runs again if its connection fails
    (:func:`~runtime.reconnect.read_again`)."""

    async def run() -> list[Row]:
        async with connect(db) as conn:
            cur = await conn.execute(sql, params)
            if one:
                row = await cur.fetchone()
                return [] if row is None else [row]
            return await cur.fetchall()

    if not isinstance(db, AsyncConnection) and _is_read(sql):
        return await read_again(run)
    return await run()


async def execute(db: Db, sql: str, params: Params = None) -> int:
    """Run ``sql`` for its effect; return how many rows it touched."""
    async with connect(db) as conn:
        return (await conn.execute(sql, params)).rowcount


@asynccontextmanager
async def all_or_nothing(conn: AsyncConnection[Row]) -> AsyncIterator[None]:
    """A pipeline on an autocommit connection whose statements commit together at its Sync,
    in one round trip, or not at all.

    Postgres runs the statements between two Syncs as one implicit transaction, and a server
    error aborts it. But psycopg sends the Sync when the block ends however it ends, which
    would commit what was sent before an interruption of the caller's own (a cancelled task,
    an error adapting a parameter: no SQLSTATE). Then the connection is closed instead: the
    server rolls back the transaction of a connection that is gone, and the pool never
    lends a closed connection again.
    """
    async with conn.pipeline():
        try:
            yield
        except BaseException as exc:
            if not (isinstance(exc, psycopg.Error) and exc.sqlstate):
                conn.pgconn.finish()
            raise
