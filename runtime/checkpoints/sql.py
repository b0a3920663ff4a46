"""Every statement this project runs on LangGraph's checkpoint tables, named once.

The tables are the checkpointer's (``checkpoints``, ``checkpoint_blobs``,
``checkpoint_writes``), plus ``tool_records``, which is keyed by thread the same way. Only
the root namespace (``checkpoint_ns = ''``) is used: the graphs have no subgraphs.
Checkpoint ids are time-ordered (UUIDv6), as the saver itself relies on.

This module imports nothing of the project, so the session and database packages can both
use it. Conditions on ``sessions`` (whether a turn holds a lease) are the sessions
package's; a statement that needs one takes it as an argument (:func:`prune_sql`).
"""

from __future__ import annotations

import functools

__all__ = [
    "CHECKPOINT_TABLES",
    "DELETE_THREADS",
    "LATEST_CHECKPOINT",
    "LINEAGE",
    "LZ4_COLUMNS",
    "ROLLBACK_THREAD",
    "THREAD_TABLES",
    "prune_sql",
    "set_lz4_sql",
]

# The checkpointer's tables, children first.
CHECKPOINT_TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints")
# Every table with rows per thread: the checkpointer's, and the write tools' records.
THREAD_TABLES = (*CHECKPOINT_TABLES, "tool_records")

# Delete every row of the threads ``%s`` (a list of thread ids) from one table.
DELETE_THREADS = {
    table: f"DELETE FROM {table} WHERE thread_id = ANY(%s)" for table in THREAD_TABLES
}

# Delete the thread's checkpoints (and their writes) newer than a checkpoint, or all of them
# when it is NULL. Parameters: (thread_id, checkpoint_id, checkpoint_id).
ROLLBACK_THREAD = tuple(
    f"DELETE FROM {table} WHERE thread_id = %s AND checkpoint_ns = '' "
    "AND (%s::text IS NULL OR checkpoint_id > %s)"
    for table in ("checkpoint_writes", "checkpoints")
)

# A scalar subquery: the newest root checkpoint of the ``sessions`` row aliased ``s`` (the
# checkpoints primary key serves it).
LATEST_CHECKPOINT = (
    "SELECT c.checkpoint_id FROM checkpoints c WHERE c.thread_id = s.thread_id "
    "AND c.checkpoint_ns = '' ORDER BY c.checkpoint_id DESC LIMIT 1"
)

# The committed lineage of a thread: a checkpoint and its ancestors, newest first.
LINEAGE = """
WITH RECURSIVE lineage AS (
    SELECT checkpoint_id, parent_checkpoint_id, metadata FROM checkpoints
    WHERE thread_id = %(thread)s AND checkpoint_ns = '' AND checkpoint_id = %(start)s
  UNION ALL
    SELECT c.checkpoint_id, c.parent_checkpoint_id, c.metadata FROM checkpoints c
    JOIN lineage l ON c.thread_id = %(thread)s AND c.checkpoint_ns = ''
     AND c.checkpoint_id = l.parent_checkpoint_id
)
SELECT checkpoint_id FROM lineage
WHERE (%(only)s::text IS NULL OR checkpoint_id = %(only)s)
  AND (%(before)s::text IS NULL OR checkpoint_id < %(before)s)
  AND (%(meta)s::jsonb IS NULL OR metadata @> %(meta)s::jsonb)
ORDER BY checkpoint_id DESC LIMIT %(n)s
"""


@functools.cache
def prune_sql(lease_held: str) -> str:
    """Retention: keep a thread's newest ``%(kept)s`` checkpoints, delete the older ones.

    Older checkpoints go with their writes and every blob no kept checkpoint refers to
    (which also sweeps up blobs of rolled-back turns). Nothing is deleted while a turn holds
    the lease of the thread's session: ``lease_held`` is that condition on a ``sessions``
    row. Parameters: ``thread``, ``kept``.
    """
    return (
        "WITH keep AS (SELECT checkpoint_id, checkpoint FROM checkpoints "
        "WHERE thread_id = %(thread)s AND checkpoint_ns = '' "
        "ORDER BY checkpoint_id DESC LIMIT %(kept)s), "
        "cutoff AS (SELECT min(checkpoint_id) AS id FROM keep HAVING count(*) >= %(kept)s), "
        "gone AS (DELETE FROM checkpoints c USING cutoff WHERE c.thread_id = %(thread)s "
        "AND c.checkpoint_ns = '' AND c.checkpoint_id < cutoff.id "
        "AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.thread_id = %(thread)s "
        f"AND {lease_held}) RETURNING c.checkpoint_id), "
        "gone_writes AS (DELETE FROM checkpoint_writes w USING gone "
        "WHERE w.thread_id = %(thread)s AND w.checkpoint_ns = '' "
        "AND w.checkpoint_id = gone.checkpoint_id) "
        "DELETE FROM checkpoint_blobs b WHERE b.thread_id = %(thread)s AND b.checkpoint_ns = '' "
        "AND EXISTS (SELECT 1 FROM gone) AND NOT EXISTS (SELECT 1 FROM keep k "
        "WHERE k.checkpoint -> 'channel_versions' ->> b.channel = b.version)"
    )


# Checkpoint blobs hold a session's whole message list: lz4 compresses them about as well as
# Postgres' default pglz at a third of the time (0.42 vs 1.15 ms for a 165 kB blob, measured
# on PostgreSQL 15), on servers built with lz4 (most packaged ones; not the embedded one).
LZ4_COLUMNS = (("checkpoint_blobs", "blob"), ("checkpoint_writes", "blob"))


def set_lz4_sql(table: str, column: str) -> str:
    """The statement that makes ``table.column`` (one of :data:`LZ4_COLUMNS`) use lz4."""
    return f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4"
