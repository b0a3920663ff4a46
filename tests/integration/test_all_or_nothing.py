"""all_or_nothing: statements pipelined on an autocommit connection commit together at the
Sync, or not at all, also when the block is interrupted by the caller (a cancelled task, an
error of its own) after some statements were sent, which psycopg's Sync would otherwise
commit. Against the real Postgres of the suite."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from runtime import Runtime
from runtime.db import all_or_nothing, refuse


async def connect(url: str) -> psycopg.AsyncConnection:  # type: ignore[type-arg]
    return await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)


async def rows(url: str, table: str) -> list[int]:
    async with await connect(url) as conn:
        cur = await conn.execute(f"SELECT x FROM {table} ORDER BY x")
        return [r["x"] for r in await cur.fetchall()]


@pytest.mark.parametrize("interruption", [asyncio.CancelledError, RuntimeError])
async def test_an_interrupted_block_commits_nothing(
    database_url: str, interruption: type[BaseException]
) -> None:
    table = f"t_{uuid.uuid4().hex}"
    async with await connect(database_url) as conn:
        await conn.execute(f"CREATE TABLE {table} (x int)")
        with pytest.raises(interruption):
            async with all_or_nothing(conn):
                await conn.execute(f"INSERT INTO {table} VALUES (1)")
                async with conn.cursor() as cur:
                    await cur.executemany(f"INSERT INTO {table} VALUES (%s)", [(2,), (3,)])
                raise interruption()
        assert conn.closed  # its transaction died with it
    assert await rows(database_url, table) == []


async def test_a_refusal_rolls_back_what_came_before_it(
    runtime: Runtime, database_url: str
) -> None:
    """(The runtime fixture has migrated the database: sessiongraph_refuse exists.)"""
    table = f"r_{uuid.uuid4().hex}"
    async with await connect(database_url) as conn:
        await conn.execute(f"CREATE TABLE {table} (x int)")
        with pytest.raises(psycopg.Error) as raised:
            async with all_or_nothing(conn):
                await conn.execute(f"INSERT INTO {table} VALUES (1)")
                await conn.execute(f"SELECT {refuse('lease_lost')}")
                await conn.execute(f"INSERT INTO {table} VALUES (2)")
        assert raised.value.sqlstate == "SG001" and not conn.closed
        async with all_or_nothing(conn):  # the connection is still good
            await conn.execute(f"INSERT INTO {table} VALUES (3)")
            await conn.execute(f"INSERT INTO {table} VALUES (4)")
    assert await rows(database_url, table) == [3, 4]
