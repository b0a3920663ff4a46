"""A holder stopped inside a fenced checkpoint write does not keep its session.

With per-step checkpoints each write's transaction first runs ``FENCE``, which holds the
session row (``FOR SHARE``) until the write commits. A holder stopped (SIGSTOP) inside that
transaction would keep the row locked, and the replica taking the session over would wait
for it (its ``ACQUIRE`` locks the row) for as long as the holder stays stopped. The fence
bounds the transaction on the server (``idle_in_transaction_session_timeout``: the heartbeat
bound), so the server ends it and the takeover goes on; the holder, resumed, is refused.

Stopping A exactly there is made deterministic with a row lock of the test's own: while A
is in its (slow) model call, the test locks the session row, so A's next fenced write waits
inside ``FENCE``, in its transaction; seen waiting there (``pg_stat_activity``), A is
stopped and the test's lock let go, so A's fence takes the row and its transaction then sits
with its client stopped. Two real ``sessiongraph serve`` replicas, run directly and through
a transaction-mode pgbouncer, with the hour-long lease of ``test_fencing.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from runtime.sessions.sql import FENCE
from tests.integration.test_fencing import (
    FAST,
    post_turn,
    refused_then_healthy,
    session_row,
    slow_session,
    take_over,
    two_replicas,
)
from tests.support.checks import eventually
from tests.support.processes import ServeProcess

pytestmark = pytest.mark.slow

BEHIND_PGBOUNCER = True
SESSION = "fence-stopped-write"


@pytest.fixture
def replicas(database_url: str, db_route: str, tmp_path: Path) -> Iterator[list[ServeProcess]]:
    """Two ready servers with per-step checkpoints (so writes are fenced), on the route's
    database (through pgbouncer: in its transaction mode)."""
    pooler = "transaction" if db_route == "pgbouncer" else "none"
    with two_replicas(database_url, tmp_path, "async", pooler) as servers:
        yield servers


def is_fence(query: str) -> bool:
    """Whether a statement as ``pg_stat_activity`` shows it is the runtime's ``FENCE``."""
    return re.sub(r"\$\d+", "?", query) == re.sub(r"%(\(\w+\))?s", "?", FENCE)


async def connect(database_url: str) -> psycopg.AsyncConnection[Any]:
    # Nothing prepared: the same on a direct connection and through pgbouncer.
    return await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, prepare_threshold=None
    )


async def backend(database_url: str, pid: int) -> tuple[str, str] | None:
    """A server process's state and latest statement; None once it has ended."""
    async with await connect(database_url) as conn:
        cur = await conn.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cur.fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


async def fence_waiting_on(database_url: str, locker: int) -> int:
    """The server process of A's fenced write, once it waits inside ``FENCE`` for the row
    ``locker`` holds."""
    found: list[int] = []

    async def waiting() -> bool:
        async with await connect(database_url) as conn:
            cur = await conn.execute(
                "SELECT pid, query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (locker,),
            )
            rows = await cur.fetchall()
        assert all(is_fence(query) for _, query in rows), rows
        found.extend(pid for pid, _ in rows)
        return bool(found)

    await eventually(waiting, "A's next fenced write to wait for the row")
    return found[0]


async def watch(database_url: str, pid: int, seen: list[str]) -> None:
    """Note each state of A's stopped write's server process until it ends."""
    while (now := await backend(database_url, pid)) is not None:
        if not seen or seen[-1] != now[0]:
            seen.append(now[0])
        await asyncio.sleep(0.02)


async def stopped_inside_a_write(
    servers: list[ServeProcess], database_url: str
) -> tuple[httpx.Response, int, list[str]]:
    """A's slow turn, stopped inside a fenced write; B's two turns; A resumed. What A
    answered, its write's server process, and the states that process went through."""
    a, b = servers
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=60) as ca,
        httpx.AsyncClient(base_url=b.url, timeout=60) as cb,
    ):
        agent_id = await slow_session(ca, SESSION, "slow-stopped")
        turn_a = asyncio.create_task(post_turn(ca, SESSION))

        async def in_model_call() -> bool:
            # The input's checkpoints are written: A waits on its model, not in a write.
            row = await session_row(database_url, SESSION)
            return row["lease_token"] is not None and row["written"] >= 2

        await eventually(in_model_call, "A's turn to reach its model call")
        async with await connect(database_url) as locker, locker.transaction():
            cur = await locker.execute(
                "SELECT pg_backend_pid() FROM sessions WHERE session_id = %s FOR NO KEY UPDATE",
                (SESSION,),
            )
            row = await cur.fetchone()
            assert row is not None
            write = await fence_waiting_on(database_url, row[0])
            os.kill(a.proc.pid, signal.SIGSTOP)
        # The lock let go, A's fence takes the row and its transaction waits on A, stopped.
        seen: list[str] = []
        watcher = asyncio.create_task(watch(database_url, write, seen))
        patched = await cb.patch(f"/v1/agents/{agent_id}", json={"model": FAST})
        assert patched.status_code == 200, patched.text
        first = await take_over(cb, SESSION, "my name is Bob")
        assert first["reply"] == "Nice to meet you, Bob."
        second = await take_over(cb, SESSION, "what is my name?")
        assert second["reply"] == "Your name is Bob."
        # B got the row, so A's write, stopped inside its transaction, was ended.
        await asyncio.wait_for(watcher, timeout=60)
        os.kill(a.proc.pid, signal.SIGCONT)
        response = await asyncio.wait_for(turn_a, timeout=60)
    return response, write, seen


class TestStoppedInsideAFencedWrite:
    @pytest.mark.timeout(240)
    def test_the_server_ends_the_write_and_the_session_moves_on(
        self, replicas: list[ServeProcess], database_url: str
    ) -> None:
        """A stopped inside a fenced write does not hold the session: B takes it over and
        completes turns; resumed, A's turn is refused (409 lease_lost, retryable), it wrote
        nothing, only B's turns remain, and A serves the session's next turn."""
        servers = replicas
        response, write, seen = asyncio.run(stopped_inside_a_write(servers, database_url))
        print(f"A's stopped write (server process {write}) went through {seen} and ended")
        assert asyncio.run(backend(database_url, write)) is None
        refused_then_healthy(servers, database_url, SESSION, response)
