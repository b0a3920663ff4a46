"""Deleting a thread's checkpoints: whole threads, a rolled-back turn, and retention.

Each function runs on a connection the caller holds, inside the caller's transaction (or
pipeline), so the deletion commits with the change to ``sessions`` that called for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from runtime.checkpoints.sql import (
    CHECKPOINT_TABLES,
    DELETE_THREADS,
    ROLLBACK_THREAD,
    THREAD_TABLES,
    prune_sql,
)

__all__ = ["delete_threads", "prune_thread", "rollback_thread"]


async def delete_threads(
    conn: AsyncConnection[Any], thread_ids: Sequence[str], *, keep_records: bool = False
) -> None:
    """Delete every checkpoint row of these threads (inside the caller's transaction).

    ``keep_records`` keeps the write-tool records (clearing a conversation does not undo
    what its tools did in the world).
    """
    if not thread_ids:
        return
    for table in CHECKPOINT_TABLES if keep_records else THREAD_TABLES:
        await conn.execute(DELETE_THREADS[table], (list(thread_ids),))


async def rollback_thread(
    conn: AsyncConnection[Any], thread_id: str, checkpoint_id: str | None
) -> None:
    """Delete the thread's checkpoints newer than ``checkpoint_id`` (all of them if None).

    Blobs are left: their versions carry a random part, so no later write collides with
    them, and they go with the session.
    """
    for statement in ROLLBACK_THREAD:
        await conn.execute(statement, (thread_id, checkpoint_id, checkpoint_id))


async def prune_thread(
    conn: AsyncConnection[Any], thread_id: str, *, kept: int, lease_held: str
) -> None:
    """Keep the thread's newest ``kept`` checkpoints and delete the rest (see
    :func:`~runtime.checkpoints.sql.prune_sql`); nothing while ``lease_held`` is true of
    the thread's session. Sends the statement without reading a result (pipeline-safe)."""
    await conn.execute(prune_sql(lease_held), {"thread": thread_id, "kept": kept})
