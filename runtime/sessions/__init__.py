"""Sessions: the registry, the per-session turn lease, expiry, and their graph state."""

from __future__ import annotations

from runtime.sessions.model import (
    MAX_METADATA_BYTES,
    Lease,
    Session,
    SessionSortKey,
    SessionState,
    SweepResult,
    TurnCounters,
)
from runtime.sessions.state import DEFAULT_HISTORY, MAX_HISTORY, ThreadStates
from runtime.sessions.store import SessionStore

__all__ = [
    "DEFAULT_HISTORY",
    "Lease",
    "MAX_HISTORY",
    "MAX_METADATA_BYTES",
    "Session",
    "SessionSortKey",
    "SessionState",
    "SessionStore",
    "SweepResult",
    "ThreadStates",
    "TurnCounters",
]
