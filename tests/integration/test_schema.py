"""SESSIONGRAPH_DATABASE_SCHEMA: every table in one schema, deployments side by side.

Directly and through session-mode pgbouncer the connections put the schema on their
``search_path``; behind transaction-mode pgbouncer a connection cannot (the next transaction
may run on another server connection), so the server must, and start-up refuses otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import psycopg
import pytest

from runtime import NotFound, Runtime, Settings
from runtime.agents import ModelSpec, TemplateSpec
from runtime.errors import ConfigError
from tests.support.pgbouncer import Pgbouncer, running_pgbouncer

# Tables of each deployment: ours, the checkpointer's and the store's.
TABLES = {"sessions", "agents", "api_keys", "runs", "checkpoints", "checkpoint_blobs", "store"}


def schema_settings(url: str, schema: str, tmp_path: Path, pooler: str = "none") -> Settings:
    return Settings(
        database_url=url,
        database_schema=schema,
        database_pooler=pooler,
        data_dir=tmp_path,
        sweep_interval_seconds=0,
        pool_min_size=1,
        pool_max_size=4,
    )


def tables_by_schema(url: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    for schema, table in rows:
        found.setdefault(schema, set()).add(table)
    return found


@asynccontextmanager
async def two_deployments(a: Settings, b: Settings) -> AsyncIterator[tuple[Runtime, Runtime]]:
    async with AsyncExitStack() as stack:
        yield (
            await stack.enter_async_context(Runtime.open(a)),
            await stack.enter_async_context(Runtime.open(b)),
        )


async def assert_isolated(a: Runtime, b: Runtime) -> None:
    """What deployment ``a`` stores, deployment ``b`` never sees."""
    await a.templates.create(
        TemplateSpec(name="only-a", model=ModelSpec(provider="offline")),
        owner="local",
        agent_id="only-a",
    )
    await a.session("shared-id")
    await a.chat("shared-id", "my name is Alice")
    _, secret = await a.keys.create("tenant-a")
    await a.store.aput(("notes",), "k", {"v": "a"})

    with pytest.raises(NotFound):
        await b.templates.get("only-a", owner="local")
    with pytest.raises(NotFound):
        await b.sessions.get("local", "shared-id")
    assert await b.keys.authenticate(secret) is None
    assert await b.store.aget(("notes",), "k") is None
    # The same ids in b are b's own.
    await b.session("shared-id")
    reply = await b.chat("shared-id", "what is my name?")
    assert reply.reply == "I don't know your name yet."
    assert (await a.chat("shared-id", "what is my name?")).reply == "Your name is Alice."
    assert await a.keys.authenticate(secret) is not None


@pytest.fixture(scope="module")
def session_pgbouncer(postgres_url: str) -> Iterator[Pgbouncer]:
    with running_pgbouncer(postgres_url, "session") as bouncer:
        yield bouncer


class TestSchemas:
    async def test_two_deployments_in_two_schemas(
        self, fresh_database: str, tmp_path: Path
    ) -> None:
        """Two deployments in two schemas of one database never see each other's data."""
        a = schema_settings(fresh_database, "tenant_a", tmp_path)
        b = schema_settings(fresh_database, "tenant_b", tmp_path)
        async with two_deployments(a, b) as (rt_a, rt_b):
            await assert_isolated(rt_a, rt_b)
        tables = tables_by_schema(fresh_database)
        assert TABLES <= tables["tenant_a"] and TABLES <= tables["tenant_b"]
        assert "public" not in tables, "nothing lands in public"

    async def test_through_session_mode_pgbouncer(
        self, session_pgbouncer: Pgbouncer, fresh_database: str, tmp_path: Path
    ) -> None:
        """Through session-mode pgbouncer each deployment's connections keep its schema."""
        url = session_pgbouncer.route(fresh_database)
        a = schema_settings(url, "tenant_a", tmp_path, "session")
        b = schema_settings(url, "tenant_b", tmp_path, "session")
        async with two_deployments(a, b) as (rt_a, rt_b):
            await assert_isolated(rt_a, rt_b)
        assert "public" not in tables_by_schema(fresh_database)

    async def test_transaction_mode_refuses_without_server_search_path(
        self, pgbouncer: Pgbouncer, fresh_database: str, tmp_path: Path
    ) -> None:
        """Behind transaction-mode pgbouncer, start-up refuses a schema the server does not set."""
        url = pgbouncer.route(fresh_database)
        settings = schema_settings(url, "tenant_t", tmp_path, "transaction")
        with pytest.raises(ConfigError, match="search_path"):
            async with Runtime.open(settings):
                pass

    async def test_transaction_mode_with_the_role_search_path(
        self, pgbouncer: Pgbouncer, fresh_database: str, tmp_path: Path
    ) -> None:
        """Behind transaction-mode pgbouncer the role's search_path carries the schema."""
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            user, db = conn.execute("SELECT current_user, current_database()").fetchone() or ()
            conn.execute(f'ALTER ROLE "{user}" IN DATABASE "{db}" SET search_path = tenant_t')
        url = pgbouncer.route(fresh_database)
        settings = schema_settings(url, "tenant_t", tmp_path, "transaction")
        async with Runtime.open(settings) as rt:
            await rt.session("t-1")
            assert (await rt.chat("t-1", "my name is Tess")).reply
        tables = tables_by_schema(fresh_database)
        assert TABLES <= tables["tenant_t"] and "public" not in tables
