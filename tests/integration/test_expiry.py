"""Expiry: expired sessions lose every checkpoint row; live sessions keep theirs."""

from __future__ import annotations

import asyncio
from typing import Literal

import psycopg
import pytest
from psycopg import sql

from runtime import NotFound, Runtime, SessionExpired, Settings
from tests.support.checks import eventually

# Run a second time through pgbouncer in transaction mode (tests/conftest.py).
BEHIND_PGBOUNCER = True

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def rows_for(database_url: str, thread_id: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE thread_id = %s", (thread_id,)
            ).fetchone()[0]  # type: ignore[index]
            for table in TABLES
        }


async def backdate(
    rt: Runtime, session_id: str, column: Literal["expires_at", "last_activity_at"], by: str
) -> None:
    """Set the session's ``column`` to ``by`` (a Postgres interval) before now."""
    query = sql.SQL("UPDATE sessions SET {} = now() - %s::interval WHERE session_id = %s")
    async with rt.pool.connection() as conn:
        await conn.execute(query.format(sql.Identifier(column)), (by, session_id))


async def expire_now(rt: Runtime, session_id: str) -> None:
    await backdate(rt, session_id, "expires_at", "1 second")


class TestSweep:
    async def test_expired_sessions_lose_every_checkpoint_row(
        self, runtime: Runtime, database_url: str
    ) -> None:
        """The sweep deletes expired sessions with all rows of their threads, and only those."""
        doomed = [await runtime.session(f"doomed-{i}") for i in range(3)]
        live = await runtime.session("live-1")
        for s in [*doomed, live]:
            await runtime.chat(s.session_id, "what is 2 + 2?")  # tool turn: writes too
        for s in [*doomed, live]:
            counts = rows_for(database_url, s.thread_id)
            assert all(counts[t] > 0 for t in ("checkpoints", "checkpoint_blobs")), counts
        for s in doomed:
            await expire_now(runtime, s.session_id)

        result = await runtime.sweep()

        assert sorted(sid for _, sid in result.sessions) == sorted(s.session_id for s in doomed)
        for s in doomed:
            assert rows_for(database_url, s.thread_id) == dict.fromkeys(TABLES, 0)
            with pytest.raises(NotFound):
                await runtime.sessions.get("local", s.session_id)
        assert rows_for(database_url, live.thread_id)["checkpoints"] > 0
        assert (await runtime.chat("live-1", "hello")).reply == "You said: hello"

    async def test_sweep_in_batches(self, settings: Settings, database_url: str) -> None:
        """Sweeping more sessions than one batch removes them all."""
        async with Runtime.open(settings.model_copy(update={"sweep_batch_size": 3})) as rt:
            sessions = [await rt.session(f"batch-{i}", ttl_seconds=1) for i in range(8)]
            await asyncio.sleep(1.2)
            result = await rt.sweep()
            assert result.count == 8
            assert sorted(sid for _, sid in result.sessions) == sorted(
                s.session_id for s in sessions
            )
            async with rt.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) AS n FROM sessions WHERE session_id LIKE 'batch-%'"
                )
                assert (await cur.fetchone())["n"] == 0  # type: ignore[index]

    async def test_concurrent_sweepers_do_not_collide(
        self, settings: Settings, database_url: str
    ) -> None:
        """Two replicas sweeping at once remove each session exactly once, without errors."""
        async with Runtime.open(settings) as a, Runtime.open(settings) as b:
            for i in range(40):
                s = await a.session(f"race-{i}")
                await a.chat(s.session_id, "hi")
                await expire_now(a, s.session_id)
            ra, rb = await asyncio.gather(a.sweep(), b.sweep())
        removed = [sid for _, sid in ra.sessions + rb.sessions if sid.startswith("race-")]
        assert sorted(removed) == sorted(f"race-{i}" for i in range(40))

    async def test_session_in_a_turn_is_not_swept(self, runtime: Runtime) -> None:
        """A session whose lease is held is skipped by the sweep."""
        await runtime.session("leased-1")
        lease = await runtime.sessions.acquire("local", "leased-1")
        await expire_now(runtime, "leased-1")
        result = await runtime.sweep()
        assert "leased-1" not in [sid for _, sid in result.sessions]
        await runtime.sessions.release(lease)

    async def test_idle_sweep(self, runtime: Runtime) -> None:
        """The manual sweep by idle age removes sessions idle longer than the bound."""
        await runtime.session("idle-1")
        await backdate(runtime, "idle-1", "last_activity_at", "1 hour")
        # A bound a loaded machine cannot stall past between creating fresh-1 and the sweep.
        await runtime.session("fresh-1")
        result = await runtime.sweep(idle_seconds=60)
        swept = [sid for _, sid in result.sessions]
        assert "idle-1" in swept and "fresh-1" not in swept


class TestExpiredSessions:
    async def test_expired_session_refuses_turns_until_recreated(self, runtime: Runtime) -> None:
        """An expired but unswept session refuses turns; get-or-create starts it fresh."""
        old = await runtime.session("exp-1")
        await runtime.chat("exp-1", "my name is Alice")
        await expire_now(runtime, "exp-1")
        with pytest.raises(SessionExpired):
            await runtime.chat("exp-1", "what is my name?")
        new = await runtime.session("exp-1")
        assert new.thread_id != old.thread_id
        reply = await runtime.chat("exp-1", "what is my name?")
        assert reply.reply == "I don't know your name yet."

    async def test_background_sweeper(self, settings: Settings, database_url: str) -> None:
        """The in-server sweeper removes expired sessions on its interval."""
        fast = settings.model_copy(update={"sweep_interval_seconds": 0.2})
        async with Runtime.open(fast) as rt:
            # Expired once its turn is in, not by a short TTL the turn itself might outlast.
            s = await rt.session("bg-1")
            await rt.chat("bg-1", "hello")
            await expire_now(rt, "bg-1")

            async def swept() -> bool:
                return rows_for(database_url, s.thread_id)["checkpoints"] == 0

            await eventually(swept, "the sweeper to remove bg-1", interval=0.1)
            assert rows_for(database_url, s.thread_id) == dict.fromkeys(TABLES, 0)
            with pytest.raises(NotFound):
                await rt.sessions.get("local", "bg-1")

    async def test_delete_session_removes_checkpoints(
        self, runtime: Runtime, database_url: str
    ) -> None:
        """Deleting a session deletes its thread's checkpoints too."""
        s = await runtime.session("del-1")
        await runtime.chat("del-1", "hello")
        await runtime.sessions.delete("local", "del-1")
        assert rows_for(database_url, s.thread_id) == dict.fromkeys(TABLES, 0)
        with pytest.raises(NotFound):
            await runtime.sessions.delete("local", "del-1")
