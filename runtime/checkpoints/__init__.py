"""LangGraph's checkpoint tables: the saver, its serializer, deferred writes."""

from __future__ import annotations

from runtime.checkpoints.saver import (
    EXPECTED_CHECKPOINT,
    MessageCachingSerializer,
    SessionSaver,
    Write,
    deferring_writes,
    replay_writes,
)

__all__ = [
    "EXPECTED_CHECKPOINT",
    "MessageCachingSerializer",
    "SessionSaver",
    "Write",
    "deferring_writes",
    "replay_writes",
]
