"""The session value types: a session, a turn's counters, a lease, a sweep's result, and what
another store commits with a turn (:class:`ReleaseStep`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from psycopg import AsyncConnection, AsyncCursor

from runtime.errors import PayloadTooLarge

__all__ = [
    "MAX_METADATA_BYTES",
    "Lease",
    "ReleaseStep",
    "Session",
    "SessionSortKey",
    "SessionState",
    "StateFilter",
    "Status",
    "SweepResult",
    "TurnCounters",
    "check_metadata",
]

MAX_METADATA_BYTES = 16 * 1024
Status = Literal["active", "inactive"]
# Where a session is in its turn cycle: ``running`` while a turn holds the lease,
# ``awaiting_approval`` while paused for a resume (decisions on tool calls, or a value for the
# graph's own ``interrupt()``), ``interrupted`` when its last turn stopped at a static
# breakpoint (``interrupt_before`` / ``interrupt_after``: a turn with no input continues it),
# else ``idle``.
SessionState = Literal["idle", "running", "awaiting_approval", "interrupted"]
# What a search filters on: a state, or ``paused`` (awaiting_approval or interrupted).
StateFilter = SessionState | Literal["paused"]
# What a search sorts on (``state``: idle, running, awaiting approval, interrupted).
SessionSortKey = Literal["session_id", "created_at", "last_activity_at", "state"]


@dataclass(frozen=True)
class Session:
    """A session's metadata and counters (its messages live in the checkpointer)."""

    owner: str
    session_id: str
    thread_id: str
    agent_id: str
    # Whose agent it is: the session's owner, or the system owner (agent ids are per owner).
    agent_owner: str
    name: str | None
    description: str | None
    metadata: dict[str, Any]
    status: Status
    ttl_seconds: int
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    turns: int
    messages: int
    tokens_in: int
    tokens_out: int
    model_latency_ms: int
    # The checkpoint of the last completed turn: what history shows while a turn runs.
    committed_checkpoint_id: str | None = None
    # Paused on tool calls that need a human decision (listed in pending_approvals).
    awaiting_approval: bool = False
    pending_approvals: list[dict[str, Any]] | None = None
    # When the turn lease lapses; None while no turn holds it.
    lease_expires_at: datetime | None = None
    # Whether a turn held the lease when this row was read, by the database's clock
    # (every statement that returns a session selects ``SESSION_COLUMNS``).
    busy: bool = False
    # The graph its agent runs (``react``, or a langgraph.json name).
    graph: str | None = None
    # The last turn stopped at a static breakpoint (see :data:`SessionState`).
    at_breakpoint: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Session:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def state(self) -> SessionState:
        """``running``, ``awaiting_approval``, ``interrupted`` or ``idle`` (see
        :data:`SessionState`)."""
        if self.busy:
            return "running"
        if self.awaiting_approval:
            return "awaiting_approval"
        return "interrupted" if self.at_breakpoint else "idle"


@dataclass
class TurnCounters:
    """What one turn adds to its session's counters."""

    turns: int = 1
    messages: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    model_latency_ms: int = 0
    latency_ms: float = 0.0


@dataclass
class Lease:
    """The right to run one turn on a session, held until :meth:`SessionStore.release`."""

    owner: str
    session_id: str
    thread_id: str
    agent_id: str
    agent_version: int
    # The agent's owner (the session's, or the system owner): with agent_id, its identity.
    agent_owner: str
    token: str
    agent_row: dict[str, Any] = field(repr=False)
    committed_checkpoint_id: str | None = None
    pending_approvals: list[dict[str, Any]] | None = None
    at_breakpoint: bool = False  # the previous turn stopped at a static breakpoint
    # The session's metadata as the turn began (tools see it as ``session_metadata``).
    session_metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    lost: bool = False

    @property
    def agent_key(self) -> tuple[str, str, int]:
        """The agent version it runs, as ``runtime.agents.AgentKey`` (owner, id, version)."""
        return (self.agent_owner, self.agent_id, self.agent_version)


class ReleaseStep(Protocol):
    """Another store's statement that commits with a turn, or keeps it from committing: sent
    in the release's pipeline, in its transaction (a run's record of its turn:
    :class:`runtime.runs.orphans.RunEnd`)."""

    async def send(self, conn: AsyncConnection[Any]) -> AsyncCursor[Any]:
        """Send the statement (in the pipeline: not read yet); return its cursor. To keep
        the turn from committing, the statement refuses (:func:`runtime.db.refuse`)."""
        ...

    def refused(self, reason: str) -> Exception | None:
        """The error to raise when the statement refused with ``reason`` (None: not its)."""
        ...

    async def check(self, cursor: AsyncCursor[Any]) -> None:
        """Read its outcome once the turn has committed."""
        ...


@dataclass(frozen=True)
class SweepResult:
    """What a sweep removed."""

    sessions: list[tuple[str, str]]  # (owner, session_id)

    @property
    def count(self) -> int:
        return len(self.sessions)


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``metadata`` (``{}`` for None), refused when its JSON is too large.

    Raises:
        PayloadTooLarge: more than :data:`MAX_METADATA_BYTES` of JSON.
    """
    metadata = dict(metadata or {})
    size = len(json.dumps(metadata, separators=(",", ":"), default=str).encode())
    if size > MAX_METADATA_BYTES:
        raise PayloadTooLarge(
            f"metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}",
            field="metadata",
            limit=MAX_METADATA_BYTES,
        )
    return metadata
