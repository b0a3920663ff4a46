"""Sessions: the registry, the per-session turn lease, and expiry."""

from __future__ import annotations

from runtime.sessions.heartbeat import Heartbeat, heartbeat_for
from runtime.sessions.model import (
    MAX_METADATA_BYTES,
    Lease,
    ReleaseStep,
    Session,
    SessionSortKey,
    SessionState,
    StateFilter,
    SweepResult,
    TurnCounters,
    check_metadata,
)
from runtime.sessions.store import SessionStore

__all__ = [
    "Heartbeat",
    "Lease",
    "MAX_METADATA_BYTES",
    "ReleaseStep",
    "Session",
    "SessionSortKey",
    "SessionState",
    "StateFilter",
    "SessionStore",
    "SweepResult",
    "TurnCounters",
    "check_metadata",
    "heartbeat_for",
]
