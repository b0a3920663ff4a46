"""LangGraph's checkpoint tables: the saver, its serializer, deferred writes, and deletions."""

from __future__ import annotations

from runtime.checkpoints.saver import (
    EXPECTED_CHECKPOINT,
    MessageCachingSerializer,
    SessionSaver,
    Write,
    deferring_writes,
    fenced_writes,
    replay_writes,
)
from runtime.checkpoints.sql import LATEST_CHECKPOINT, LINEAGE, LZ4_COLUMNS, set_lz4_sql
from runtime.checkpoints.threads import delete_threads, prune_thread, rollback_thread

__all__ = [
    "EXPECTED_CHECKPOINT",
    "LATEST_CHECKPOINT",
    "LINEAGE",
    "LZ4_COLUMNS",
    "MessageCachingSerializer",
    "SessionSaver",
    "Write",
    "deferring_writes",
    "delete_threads",
    "fenced_writes",
    "prune_thread",
    "replay_writes",
    "rollback_thread",
    "set_lz4_sql",
]
