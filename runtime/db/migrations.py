"""The schema: the product's migrations, and applying them with the checkpointer's.

The product's own tables come from :data:`MIGRATIONS` (index = schema version), the same
habit as the checkpointer's ``MIGRATIONS``. :func:`migrate` applies what is missing and
then runs the checkpointer's and the store's ``setup()``, all under the migration lock
(:mod:`runtime.db.lock`, a lease row polled for, so it works behind a transaction-mode pooler):
``setup()`` is not safe when several processes run it at once, and a *blocking* lock around it
deadlocks with its ``CREATE INDEX CONCURRENTLY``. With a schema, it is created first and every
table lands in it (the connections put it alone on their ``search_path``).
"""

from __future__ import annotations

import logging

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection

from runtime.checkpoints import LZ4_COLUMNS, set_lz4_sql
from runtime.db.lock import ensure_created, migration_lock
from runtime.db.query import Db, Pool, Row, connect, execute, fetch_one

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_is_current"]

log = logging.getLogger(__name__)

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
    """
    -- An agent names its graph as `graph` (it was `graph_kind`, always 'react'), so SQL can
    -- read every agent's graph by one name.
    UPDATE agents SET spec = (spec - 'graph_kind')
        || jsonb_build_object('graph', coalesce(spec->>'graph_kind', 'react'))
    WHERE NOT spec ? 'graph'
    """,
    """
    -- Web widgets: keys safe in a web page (one agent, allowed origins), the sessions each
    -- created (with the hash of the visitor's session token), and fixed-window rate counters.
    CREATE TABLE publishable_keys (
        key_id          text PRIMARY KEY,
        owner           text NOT NULL,
        agent_id        text NOT NULL,
        allowed_origins text[] NOT NULL,
        name            text,
        key_hash        text NOT NULL UNIQUE,
        created_at      timestamptz NOT NULL DEFAULT now(),
        revoked_at      timestamptz
    )
    """,
    """
    CREATE TABLE widget_sessions (
        owner       text NOT NULL,
        session_id  text NOT NULL,
        key_id      text NOT NULL REFERENCES publishable_keys ON DELETE CASCADE,
        token_hash  text NOT NULL,
        PRIMARY KEY (owner, session_id),
        FOREIGN KEY (owner, session_id) REFERENCES sessions (owner, session_id)
            ON DELETE CASCADE
    )
    """,
    """
    CREATE UNLOGGED TABLE rate_windows (
        bucket        text NOT NULL,
        window_start  timestamptz NOT NULL,
        hits          integer NOT NULL,
        PRIMARY KEY (bucket, window_start)
    )
    """,
    """
    -- Every version of every agent, kept (LangGraph's assistant versions); agents holds the
    -- current one. Written with agents' own statements (runtime/agents/sql.py).
    CREATE TABLE agent_versions (
        agent_id     text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
        version      integer NOT NULL,
        spec         jsonb NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (agent_id, version)
    )
    """,
    """
    INSERT INTO agent_versions (agent_id, version, spec, created_at)
    SELECT agent_id, version, spec, updated_at FROM agents
    """,
    """
    -- The events of resumable runs' streams (runtime.runs.events), numbered from 1 per run.
    CREATE TABLE run_events (
        run_id      text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        seq         integer NOT NULL,
        event       text NOT NULL,
        data        jsonb,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, seq)
    )
    """,
    """CREATE INDEX run_events_created_idx ON run_events (created_at)""",
    """
    -- Idempotency keys: a turn's result under the key its client sent, committed with the
    -- turn (runtime.sessions.idempotency); kept 24 h, and deleted with the session.
    CREATE TABLE turn_keys (
        owner         text NOT NULL,
        session_id    text NOT NULL,
        key           text NOT NULL,
        request_hash  text NOT NULL,
        result        jsonb NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (owner, session_id, key),
        FOREIGN KEY (owner, session_id) REFERENCES sessions (owner, session_id)
            ON DELETE CASCADE
    )
    """,
    """
    -- Agent ids are scoped by owner, as session ids are: (owner, agent_id) is unique, and a
    -- session (and each turn record) names its agent's owner: its own, or the system owner.
    -- Runs of the LangGraph API keep the idempotency key they were created with.
    DO $$ BEGIN
        ALTER TABLE agent_versions ADD COLUMN owner text;
        UPDATE agent_versions v SET owner = a.owner FROM agents a WHERE a.agent_id = v.agent_id;
        ALTER TABLE agent_versions ALTER COLUMN owner SET NOT NULL;
        ALTER TABLE agent_versions DROP CONSTRAINT agent_versions_agent_id_fkey;
        ALTER TABLE agent_versions DROP CONSTRAINT agent_versions_pkey;
        ALTER TABLE agents DROP CONSTRAINT agents_pkey;
        ALTER TABLE agents ADD PRIMARY KEY (owner, agent_id);
        DROP INDEX agents_owner_idx;
        CREATE INDEX agents_id_idx ON agents (agent_id);
        ALTER TABLE agent_versions ADD PRIMARY KEY (owner, agent_id, version);
        ALTER TABLE agent_versions ADD FOREIGN KEY (owner, agent_id)
            REFERENCES agents (owner, agent_id) ON DELETE CASCADE;
        ALTER TABLE sessions ADD COLUMN agent_owner text;
        UPDATE sessions s SET agent_owner = coalesce(
            (SELECT a.owner FROM agents a WHERE a.agent_id = s.agent_id), s.owner);
        ALTER TABLE sessions ALTER COLUMN agent_owner SET NOT NULL;
        DROP INDEX sessions_agent_idx;
        CREATE INDEX sessions_agent_idx ON sessions (agent_owner, agent_id);
        ALTER TABLE turn_log ADD COLUMN agent_owner text;
        UPDATE turn_log t SET agent_owner = coalesce(
            (SELECT a.owner FROM agents a WHERE a.agent_id = t.agent_id), t.owner);
        ALTER TABLE turn_log ALTER COLUMN agent_owner SET NOT NULL;
        DROP INDEX turn_log_agent_idx;
        CREATE INDEX turn_log_agent_idx ON turn_log (agent_owner, agent_id, finished_at);
        ALTER TABLE runs ADD COLUMN idempotency_key text, ADD COLUMN request_hash text;
        CREATE UNIQUE INDEX runs_key_idx ON runs (owner, session_id, idempotency_key)
            WHERE idempotency_key IS NOT NULL;
    END $$
    """,
    """
    -- Holder liveness (runtime.sessions.heartbeat): one row per server process, beaten every
    -- third of its `liveness`; a lease names its holder, and a holder whose beat is older
    -- than its liveness is dead, so its leases are free at once (sessions/sql.py LEASE_FREE).
    -- One statement (DO): a migration is one entry of the list.
    DO $$
    BEGIN
        CREATE TABLE replicas (
            holder      text PRIMARY KEY,
            beat_at     timestamptz NOT NULL DEFAULT now(),
            liveness    interval NOT NULL,
            started_at  timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE sessions ADD COLUMN lease_holder text;
    END
    $$
    """,
    """
    -- The last turn stopped at a static breakpoint (interrupt_before / interrupt_after): the
    -- session is interrupted until a turn continues (or replaces) it.
    ALTER TABLE sessions ADD COLUMN at_breakpoint boolean NOT NULL DEFAULT false
    """,
    """
    -- A run names its holder, the replica that runs it or whose task waits to (a row of
    -- replicas, as a session's lease names its own: runtime.runs.orphans), so a run whose
    -- holder died is an orphan, ended by its next reader; and whether its turn committed
    -- (set in the turn's release transaction), which says how an orphan ends.
    ALTER TABLE runs ADD COLUMN lease_holder text,
        ADD COLUMN turn_committed boolean NOT NULL DEFAULT false
    """,
    """
    -- A statement that must keep a turn from committing calls this (runtime.sessions.sql
    -- REFUSE): the error aborts the release's implicit transaction, named by its reason.
    CREATE FUNCTION sessiongraph_refuse(reason text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        RAISE EXCEPTION USING ERRCODE = 'SG001', MESSAGE = reason;
    END
    $$
    """,
]

SCHEMA_VERSION = len(MIGRATIONS) - 1

_HAS_VERSIONS = "SELECT to_regclass('sessiongraph_migrations') IS NOT NULL AS present"
_CURRENT_VERSION = "SELECT coalesce(max(v), -1) AS v FROM sessiongraph_migrations"
_RECORD_VERSION = "INSERT INTO sessiongraph_migrations (v) VALUES (%s)"
_COMPRESSION = (
    "SELECT attcompression FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s"
)


async def _current_version(db: Db) -> int:
    row = await fetch_one(db, _HAS_VERSIONS)
    if not row or not row["present"]:
        return -1
    row = await fetch_one(db, _CURRENT_VERSION)
    return int(row["v"]) if row else -1


async def schema_is_current(pool: Pool) -> bool:
    """Whether every migration of this build has been applied."""
    async with connect(pool) as conn:
        return await _current_version(conn) >= SCHEMA_VERSION


async def _prefer_lz4(conn: AsyncConnection[Row]) -> None:
    """Compress checkpoint blobs with lz4 where the server has it (see ``LZ4_COLUMNS``)."""
    for table, column in LZ4_COLUMNS:
        row = await fetch_one(conn, _COMPRESSION, (table, column))
        if row is None or row["attcompression"] == "l":
            continue
        try:
            async with conn.transaction():
                await execute(conn, set_lz4_sql(table, column))
        except psycopg.errors.FeatureNotSupported:
            log.info("this Postgres has no lz4: checkpoint blobs keep the default compression")
            return


async def migrate(pool: Pool, *, schema: str | None = None, poll_seconds: float = 0.05) -> int:
    """Apply missing migrations and the checkpointer's ``setup()``; return the schema version.

    Safe when many processes call it at once on an empty database: one holds the migration
    lock and migrates; the others poll until it is free and then find nothing to do.

    Args:
        pool: the pool, whose connections already put ``schema`` on their search path.
        schema: the schema to create first (``SESSIONGRAPH_DATABASE_SCHEMA``), if any.
        poll_seconds: how often a waiting process asks for the lock again.
    """
    if schema:
        await ensure_created(pool, f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    async with migration_lock(pool, poll_seconds=poll_seconds), connect(pool) as conn:
        version = await _current_version(conn)
        for v in range(version + 1, len(MIGRATIONS)):
            async with conn.transaction():
                await execute(conn, MIGRATIONS[v])
                await execute(conn, _RECORD_VERSION, (v,))
            log.info("applied migration %d", v)
        # The saver's and the store's own migrations run on this connection, still under
        # the lock (the store backs the LangGraph API's /store endpoints).
        await AsyncPostgresSaver(conn).setup()
        await AsyncPostgresStore(conn).setup()
        await _prefer_lz4(conn)
    return SCHEMA_VERSION
