"""The one way to run a statement: :func:`fetch_one`, :func:`fetch_all`, :func:`execute`.

Each takes either the pool (it borrows a connection for the one statement, autocommit) or a
connection the caller holds (inside its transaction or pipeline), so stores never write
``async with pool.connection() ... fetchone()`` by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

__all__ = ["Db", "Params", "Pool", "Row", "connect", "execute", "fetch_all", "fetch_one"]

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
    async with connect(db) as conn:
        return await (await conn.execute(sql, params)).fetchone()


async def fetch_all(db: Db, sql: str, params: Params = None) -> list[Row]:
    """Run ``sql`` and return every row."""
    async with connect(db) as conn:
        return await (await conn.execute(sql, params)).fetchall()


async def execute(db: Db, sql: str, params: Params = None) -> int:
    """Run ``sql`` for its effect; return how many rows it touched."""
    async with connect(db) as conn:
        return (await conn.execute(sql, params)).rowcount
