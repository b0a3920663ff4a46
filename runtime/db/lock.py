"""The migration lock: a lease row, so migrating needs no session state.

A session-level advisory lock lives on one server connection; behind a transaction-mode
pooler the next statement may run on another, so the lock (and its unlock) would land on
connections the process no longer controls. Instead the lock is one row with a holder and
an expiry, taken by an ``INSERT … ON CONFLICT`` that succeeds only when the row is free or
lapsed, renewed while the holder migrates and deleted when it is done. Every statement is a
short autocommit one, so nothing here holds a transaction open across ``setup()``'s
``CREATE INDEX CONCURRENTLY`` (a blocking lock around it deadlocks). A migrator that dies
frees the database after :data:`LOCK_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

from runtime.db.query import Db, Pool, execute, fetch_one

__all__ = ["LOCK_SECONDS", "ensure_created", "migration_lock"]

log = logging.getLogger(__name__)

# A lock not renewed for this long is free again (its holder died).
LOCK_SECONDS = 60.0

_CREATE_LOCK_TABLE = """
    CREATE TABLE IF NOT EXISTS sessiongraph_migration_lock (
        id          boolean PRIMARY KEY DEFAULT true CHECK (id),
        holder      text NOT NULL,
        expires_at  timestamptz NOT NULL
    )
"""
_TAKE = (
    "INSERT INTO sessiongraph_migration_lock AS l (holder, expires_at) "
    "VALUES (%(holder)s, now() + make_interval(secs => %(secs)s)) "
    "ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
    "WHERE l.expires_at < now() RETURNING holder"
)
_RENEW = (
    "UPDATE sessiongraph_migration_lock SET expires_at = now() + make_interval(secs => %s) "
    "WHERE holder = %s"
)
_FREE = "DELETE FROM sessiongraph_migration_lock WHERE holder = %s"


async def ensure_created(db: Db, sql: str, *, attempts: int = 20) -> None:
    """Run a ``CREATE … IF NOT EXISTS`` that other processes may run at the same moment.

    ``IF NOT EXISTS`` is not atomic: two creators can both pass the check and one then
    fails on the catalog's unique index; it retries and finds the object there.
    """
    for attempt in range(attempts):
        try:
            await execute(db, sql)
            return
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05)


@asynccontextmanager
async def migration_lock(pool: Pool, *, poll_seconds: float = 0.05) -> AsyncIterator[None]:
    """Hold the database's migration lock for the block (waiting for it by polling)."""
    await ensure_created(pool, _CREATE_LOCK_TABLE)
    holder = secrets.token_hex(8)
    params = {"holder": holder, "secs": LOCK_SECONDS}
    while await fetch_one(pool, _TAKE, params) is None:
        await asyncio.sleep(poll_seconds)
    renewer = asyncio.create_task(_renew(pool, holder), name="sessiongraph-migration-lock")
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        await execute(pool, _FREE, (holder,))


async def _renew(pool: Pool, holder: str) -> None:
    while True:
        await asyncio.sleep(LOCK_SECONDS / 4)
        try:
            await execute(pool, _RENEW, (LOCK_SECONDS, holder))
        except psycopg.Error as exc:  # the next renewal may succeed; the lease has slack
            log.warning("could not renew the migration lock: %s", exc)
