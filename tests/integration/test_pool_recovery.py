"""The pool's defences against connections the server or the network drops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig

from runtime import Runtime, Settings
from runtime.db import Pool, connect, execute, fetch_one
from runtime.db.pool import TCP_KEEPALIVES, open_pool
from tests.support.checks import eventually
from tests.support.tcp_proxy import TcpProxy, database_proxy


class TestKeepalives:
    async def test_pooled_connections_use_tcp_keepalives(self, runtime: Runtime) -> None:
        """Every pooled connection asks libpq for TCP keepalives."""
        async with connect(runtime.pool) as conn:
            params = conn.info.get_parameters()
        for name, value in TCP_KEEPALIVES.items():
            assert params.get(name) == str(value), (name, params)


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[Pool]:
    """A pool of exactly one connection, bounded as a serving runtime's is."""
    one = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})
    async with open_pool(settings.database_url or "", one) as pool:
        pool.bound(10)
        yield pool


async def terminate(url: str, pid: int) -> None:
    """End the server process ``pid`` and wait until it has (its connection is closed)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        async def gone() -> bool:
            cur = await admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
            return await cur.fetchone() is None

        await eventually(gone, f"server process {pid} to end")


async def terminate_mid_sleep(url: str, pid: int) -> None:
    """Terminate the server process ``pid`` once it runs a statement calling ``pg_sleep``:
    the statement is cut off mid-way, neither before it was sent nor after it ended."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:

        async def sleeping() -> bool:
            cur = await admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active' "
                "AND query LIKE '%%pg_sleep%%'",
                (pid,),
            )
            return await cur.fetchone() is not None

        await eventually(sleeping, f"server process {pid} to run its statement", interval=0.01)
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def backend_pid(pool: Pool) -> int:
    row = await fetch_one(pool, "SELECT pg_backend_pid() AS pid")
    assert row is not None
    return int(row["pid"])


class TestDeadPooledConnection:
    async def test_a_connection_the_server_closed_is_never_lent(
        self, one_connection: Pool, settings: Settings
    ) -> None:
        """A statement (even a write) after the server closed the idle connection runs on a
        fresh one: the closed socket is seen at checkout, without a round trip."""
        pid = await backend_pid(one_connection)
        await terminate(settings.database_url or "", pid)
        assert await execute(one_connection, "SELECT 1") == 1
        assert await backend_pid(one_connection) != pid

    async def test_a_read_whose_connection_dies_mid_query_runs_again(
        self, one_connection: Pool, settings: Settings
    ) -> None:
        """A read cut off mid-query answers from a fresh connection."""
        pid = await backend_pid(one_connection)
        read = asyncio.create_task(
            fetch_one(one_connection, "SELECT pg_backend_pid() AS pid FROM pg_sleep(1)")
        )
        await terminate_mid_sleep(settings.database_url or "", pid)
        row = await read
        assert row is not None and row["pid"] != pid

    async def test_a_write_whose_connection_dies_is_never_sent_again(
        self, one_connection: Pool, settings: Settings
    ) -> None:
        """A write cut off mid-statement fails; it is not run a second time."""
        await execute(one_connection, "CREATE TABLE IF NOT EXISTS cut_writes (n int)")
        pid = await backend_pid(one_connection)
        write = asyncio.create_task(
            execute(one_connection, "INSERT INTO cut_writes SELECT 1 FROM pg_sleep(1)")
        )
        await terminate_mid_sleep(settings.database_url or "", pid)
        with pytest.raises(psycopg.OperationalError):
            await write
        row = await fetch_one(one_connection, "SELECT count(*) AS n FROM cut_writes")
        assert row == {"n": 0}


@pytest.fixture
async def proxied_runtime(settings: Settings) -> AsyncIterator[tuple[Runtime, TcpProxy]]:
    """A runtime whose database connections go through a TCP proxy, with one turn done."""
    async with database_proxy(settings.database_url or "") as (proxy, url):
        proxied = settings.model_copy(
            update={"database_url": url, "pool_min_size": 1, "pool_max_size": 2}
        )
        async with Runtime.open(proxied) as rt:
            await rt.session("saver-1", agent_id="default")
            await rt.chat("saver-1", "hello")
            yield rt, proxy


async def cut_mid_read(proxy: TcpProxy, read: asyncio.Task[object]) -> None:
    """Hold the read's answer, then reset the connection under it; new ones pass again."""
    await asyncio.sleep(0.3)
    proxy.cut()
    proxy.restore()
    await asyncio.wait([read], timeout=30)


class TestCheckpointerReads:
    async def test_aget_tuple_and_alist_run_again_when_their_connection_dies(
        self, proxied_runtime: tuple[Runtime, TcpProxy]
    ) -> None:
        """The checkpointer's reads, cut off mid-query, answer from a fresh connection."""
        rt, proxy = proxied_runtime
        saver = rt.checkpointer
        found = [t async for t in saver.alist(None, limit=1)]
        assert found
        config: RunnableConfig = {
            "configurable": {"thread_id": found[0].config["configurable"]["thread_id"]}
        }
        expected = found[0].checkpoint["id"]

        proxy.hold_replies()
        read = asyncio.create_task(saver.aget_tuple(config))
        await cut_mid_read(proxy, read)
        again = read.result()
        assert again is not None and again.checkpoint["id"] == expected

        async def listing() -> list[str]:
            return [t.checkpoint["id"] async for t in saver.alist(config, limit=3)]

        proxy.hold_replies()
        listed = asyncio.create_task(listing())
        await cut_mid_read(proxy, listed)
        assert listed.result()[0] == expected
