"""The pool's defences against connections the network drops."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from runtime import Runtime, Settings
from runtime.db import connect, execute, fetch_one
from runtime.db.pool import TCP_KEEPALIVES, open_pool


class TestKeepalives:
    async def test_pooled_connections_use_tcp_keepalives(self, runtime: Runtime) -> None:
        """Every pooled connection asks libpq for TCP keepalives."""
        async with connect(runtime.pool) as conn:
            params = conn.info.get_parameters()
        for name, value in TCP_KEEPALIVES.items():
            assert params.get(name) == str(value), (name, params)


class TestDeadPooledConnection:
    async def test_a_read_on_a_dead_pooled_connection_runs_again(self, settings: Settings) -> None:
        """A read lent a connection whose server process is gone answers from a fresh one."""
        one = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})
        url = settings.database_url or ""
        async with open_pool(url, one) as pool:
            row = await fetch_one(pool, "SELECT pg_backend_pid() AS pid")
            assert row is not None
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (row["pid"],))
            await asyncio.sleep(0.2)
            again = await fetch_one(pool, "SELECT pg_backend_pid() AS pid")
            assert again is not None and again["pid"] != row["pid"]
            with pytest.raises(psycopg.OperationalError):  # a write is never run twice
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                    await admin.execute("SELECT pg_terminate_backend(%s)", (again["pid"],))
                await asyncio.sleep(0.2)
                await execute(pool, "SELECT 1")
