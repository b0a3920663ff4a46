"""What a run is: its row (:class:`Run`), what to run (:class:`RunRequest`), its statuses.

Statuses: ``pending`` (queued) → ``running`` → ``success``, ``error`` or ``interrupted``
(cancelled); see :mod:`runtime.runs.manager`. A run whose replica stopped ends ``error``
(``replica_lost``): :mod:`runtime.runs.orphans`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from runtime.errors import ReplicaLost
from runtime.turns import TurnEvent, TurnRequest, TurnResult

if TYPE_CHECKING:
    from runtime.runs.orphans import RunEnd

__all__ = [
    "ACTIVE_STATUSES",
    "EventRecorder",
    "MULTITASK_STRATEGIES",
    "NATIVE_KWARGS",
    "RUN_STATUSES",
    "MultitaskStrategy",
    "Run",
    "LiveRun",
    "RunHandle",
    "RunRequest",
    "RunStatus",
]

RunStatus = Literal["pending", "running", "success", "error", "interrupted"]
RUN_STATUSES: tuple[RunStatus, ...] = ("pending", "running", "success", "error", "interrupted")
# A run with one of these statuses has not ended (runtime.runs.sql spells them as ACTIVE).
ACTIVE_STATUSES: tuple[RunStatus, ...] = ("pending", "running")
# The ``kwargs`` of a native (``/v1``) streamed turn's run: its stream is recorded.
NATIVE_KWARGS: dict[str, Any] = {"api": "v1", "stream_resumable": True}
MultitaskStrategy = Literal["reject", "enqueue", "rollback", "interrupt"]
MULTITASK_STRATEGIES: tuple[MultitaskStrategy, ...] = ("reject", "enqueue", "rollback", "interrupt")


@dataclass(frozen=True)
class Run:
    """A run's row: what the LangGraph API shows as a ``Run``."""

    run_id: str
    owner: str
    session_id: str
    assistant_id: str
    status: RunStatus
    metadata: dict[str, Any]
    multitask_strategy: str
    kwargs: dict[str, Any]
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @property
    def done(self) -> bool:
        """Whether the run has ended (any status but pending and running)."""
        return self.status not in ACTIVE_STATUSES

    @property
    def lost(self) -> bool:
        """Whether its replica stopped before it ended: its turn never committed."""
        return self.status == "error" and (self.error or {}).get("error") == ReplicaLost.code

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        """The run a ``runs`` row holds."""
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class EventRecorder(Protocol):
    """What a run records: the events that start its stream, and each turn event as stream
    events (the API's vocabulary; the runtime stores them as given)."""

    def first(self, run: Run) -> list[tuple[str, Any]]: ...

    def translate(self, event: TurnEvent) -> list[tuple[str, Any]]: ...


@dataclass(frozen=True)
class RunRequest:
    """What to run: a turn on one session, with the run's bookkeeping.

    ``temporary``: delete the session when the run ends (LangGraph's stateless runs).
    ``recorder``: record the run's stream for replay (resumable streams), as it translates it.
    ``idempotency_key``, ``request_hash``: the run a retry with this key and request finds
    instead of running again (:mod:`runtime.runs.keys`).
    """

    owner: str
    session_id: str
    assistant_id: str
    turn: TurnRequest
    multitask_strategy: MultitaskStrategy = "reject"
    metadata: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    temporary: bool = False
    recorder: EventRecorder | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    # The session's checkpointer thread id, when the caller has just read the session (None:
    # the manager reads it).
    thread_key: str | None = None


@dataclass
class RunHandle:
    """A run just created, and (when asked for) its live events from the first one."""

    run: Run
    thread_key: str  # the session's checkpointer thread id (internal, never shown)
    _queue: asyncio.Queue[TurnEvent] | None = None
    # The run an earlier request with the same idempotency key created: nothing new started.
    repeated: bool = False

    async def events(self) -> AsyncIterator[TurnEvent]:
        """The turn's events, ending with ``done`` or ``error``."""
        if self._queue is None:
            return
        while True:
            event = await self._queue.get()
            yield event
            if event.type in ("done", "error"):
                return


class LiveRun:
    """A run executing (or queued) in this process: its tasks and event subscribers (the
    manager's own bookkeeping)."""

    def __init__(self, run: Run, end: RunEnd | None = None) -> None:
        self.run = run
        self.end = end  # what the turn's release commits for the run
        self.subscribers: list[asyncio.Queue[TurnEvent]] = []
        self.ended = asyncio.Event()
        self.task: asyncio.Task[None] | None = None  # the waiter / event pump
        self.turn: asyncio.Task[TurnResult] | None = None
        self.cancelled = False

    def subscribe(self) -> asyncio.Queue[TurnEvent]:
        """A queue that receives every event published from now on."""
        queue: asyncio.Queue[TurnEvent] = asyncio.Queue()
        self.subscribers.append(queue)
        return queue

    def publish(self, event: TurnEvent) -> None:
        """Send ``event`` to every subscriber."""
        for queue in self.subscribers:
            queue.put_nowait(event)
