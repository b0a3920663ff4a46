"""Behind pgbouncer: transaction mode keeps no session state, session mode works as is.

The modules that set ``BEHIND_PGBOUNCER`` run their whole suite through transaction-mode
pgbouncer; this one pins what only a pooler shows: migrations racing through it on an empty
database, and session-mode pgbouncer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runtime import Runtime, Settings
from runtime.db import (
    SCHEMA_VERSION,
    execute,
    fetch_one,
    migrate,
    open_pool,
    schema_is_current,
)
from tests.support.pgbouncer import Pgbouncer, running_pgbouncer

# Another process's lock on the database's migrations, for `seconds`.
HOLD = (
    "INSERT INTO sessiongraph_migration_lock (holder, expires_at) "
    "VALUES (%s, now() + make_interval(secs => %s))"
)


def pooled_settings(url: str, pooler: str, tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        database_url=url,
        database_pooler=pooler,
        data_dir=tmp_path,
        sweep_interval_seconds=0,
        lease_timeout_seconds=5,
        pool_min_size=1,
        pool_max_size=4,
        **extra,
    )


@pytest.fixture(scope="module")
def session_pgbouncer(postgres_url: str) -> Iterator[Pgbouncer]:
    with running_pgbouncer(postgres_url, "session") as bouncer:
        yield bouncer


class TestTransactionMode:
    async def test_concurrent_migrations_through_the_pooler(
        self, pgbouncer: Pgbouncer, fresh_database: str, tmp_path: Path
    ) -> None:
        """Four processes migrating an empty database through pgbouncer at once all succeed."""
        settings = pooled_settings(pgbouncer.route(fresh_database), "transaction", tmp_path)

        async def one() -> int:
            async with open_pool(settings.database_url or "", settings) as pool:
                return await migrate(pool)

        assert await asyncio.gather(*(one() for _ in range(4))) == [SCHEMA_VERSION] * 4
        async with open_pool(settings.database_url or "", settings) as pool:
            assert await schema_is_current(pool)
        with psycopg.connect(fresh_database) as conn:
            held = conn.execute("SELECT count(*) FROM sessiongraph_migration_lock").fetchone()
        assert held == (0,), "the migration lock is freed"

    async def test_turns_and_restart(
        self, pgbouncer: Pgbouncer, fresh_database: str, tmp_path: Path
    ) -> None:
        """Turns, history and a restart through transaction-mode pgbouncer."""
        settings = pooled_settings(pgbouncer.route(fresh_database), "transaction", tmp_path)
        async with Runtime.open(settings) as rt:
            await rt.session("tx-1")
            for _ in range(6):  # more than psycopg's default prepare threshold (5)
                await rt.chat("tx-1", "my name is Alice")
        async with Runtime.open(settings) as rt:
            reply = await rt.chat("tx-1", "what is my name?")
            assert reply.reply == "Your name is Alice."
            assert len(await rt.history("tx-1")) == 14


class TestMigrationLock:
    async def test_a_live_holder_makes_others_wait(
        self, fresh_database: str, tmp_path: Path
    ) -> None:
        """While another process holds the lock, migrate waits; once it lapses, migrate runs."""
        settings = pooled_settings(fresh_database, "none", tmp_path)
        async with open_pool(fresh_database, settings) as pool:
            await migrate(pool)
            await execute(pool, HOLD, ("someone-else", 60))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(migrate(pool), timeout=1.0)
            # The holder died: its lease lapses and the next migrator takes over.
            await execute(pool, "UPDATE sessiongraph_migration_lock SET expires_at = now()")
            assert await asyncio.wait_for(migrate(pool), timeout=30) == SCHEMA_VERSION
            assert await fetch_one(pool, "SELECT 1 FROM sessiongraph_migration_lock") is None


class TestSessionMode:
    async def test_turns_through_session_mode(
        self, session_pgbouncer: Pgbouncer, fresh_database: str, tmp_path: Path
    ) -> None:
        """Session-mode pgbouncer serves turns with prepared statements on."""
        settings = pooled_settings(session_pgbouncer.route(fresh_database), "session", tmp_path)
        async with Runtime.open(settings) as rt:
            await rt.session("sess-1")
            for _ in range(6):
                await rt.chat("sess-1", "my name is Bob")
            reply = await rt.chat("sess-1", "what is my name?")
            assert reply.reply == "Your name is Bob."
