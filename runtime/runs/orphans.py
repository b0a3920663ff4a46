"""Runs whose replica died: orphans, ended by whoever reads them next.

A run names its holder (``runs.lease_holder``): the replica that runs it, or whose task waits
to run it, by the name its heartbeat beats (:mod:`runtime.sessions.heartbeat`). Once that
holder is dead by ``HOLDER_ALIVE`` (its beat stale: about 1.5 s after a SIGKILL), a run still
pending or running there is an orphan (``sql.ORPHANED``): nothing will end it. Every "is it
still running" check ignores it at once (``sql.UNDERWAY``: the busy checks of ``reject``
and the queue, waits for cancelled runs, cancels), and a reader (get, list, join, stream
followers, the keyed lookup) settles it before showing it (:func:`seen`): one guarded UPDATE
(``sql.SETTLE_ORPHANS``), which changes the row only while the holder is still dead and the
run still active, ends it ``success`` if its turn had committed, else ``error`` with
:class:`~runtime.errors.ReplicaLost` (:data:`LOST_ERROR`, retryable); a recorded stream gets
that error as its last event, so whoever follows it sees how it ended.

**A lost run's turn never committed, and never will.** A run's turn commits only with its
run: the release marks the run in the release's own transaction (``sql.COMMIT_TURN``, sent
by :class:`RunEnd`), only while the run is active, else the turn rolls back. Settling and
the release take the same row lock, so either the turn committed first (and the orphan is
settled ``success``), or the run was settled first and its turn cannot commit, even if its
replica was only paused and comes back. A keyed retry of a lost run therefore runs the
request again, under the same key (:mod:`runtime.runs.keys`): nothing runs twice.

A run whose stream is not recorded ends ``success`` in that same transaction (one statement
fewer); a recorded one ends once its last events are written (followers read the end of the
stream before they see the run ended), its commit recorded meanwhile by ``turn_committed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.types.json import Jsonb

from runtime.db import Db, Row, execute, fetch_all
from runtime.errors import ReplicaLost
from runtime.runs import sql
from runtime.runs.model import Run

__all__ = ["LOST_ERROR", "LOST_EVENT", "RunEnd", "seen", "settle"]

# The error a lost run ends with (its ``error`` column).
LOST_ERROR: dict[str, Any] = ReplicaLost(
    "the replica running this run stopped before the run ended; its turn was rolled back"
).to_dict()
# The event that ends a lost run's recorded stream, with LOST_ERROR as its data: the name
# every recorder gives a turn's ``error`` event (api/streaming.py, api/compat/run_streams.py).
LOST_EVENT = "error"


async def settle(db: Db, run_ids: Sequence[str]) -> None:
    """End those of these runs that are orphans, as their turn ended (see the module)."""
    params = {"ids": list(run_ids), "error": Jsonb(LOST_ERROR), "event": LOST_EVENT}
    await execute(db, sql.SETTLE_ORPHANS, params)


async def seen(db: Db, rows: Sequence[Row]) -> list[Run]:
    """The runs these rows hold (read with their ``orphaned`` flag), orphans settled first."""
    orphans = [row["run_id"] for row in rows if row["orphaned"]]
    if orphans:
        await settle(db, orphans)
        again = {r["run_id"]: r for r in await fetch_all(db, sql.SELECT_RUNS, (orphans,))}
        rows = [again.get(row["run_id"], row) for row in rows]
    return [Run.from_row(row) for row in rows]


@dataclass
class RunEnd:
    """What a run's turn commits with (a :class:`~runtime.sessions.ReleaseStep`): the run
    marked as committed, ended ``success`` too when ``final`` (no recorded stream to write
    first); refused, and the turn rolled back, once the run has ended without it."""

    run_id: str
    final: bool
    run: Run | None = None  # the run as the commit left it

    async def send(self, conn: AsyncConnection[Any]) -> AsyncCursor[Any]:
        return await conn.execute(sql.COMMIT_TURN, {"run": self.run_id, "final": self.final})

    def refused(self, reason: str) -> Exception | None:
        if reason != sql.RUN_ENDED:
            return None
        return ReplicaLost(
            f"run {self.run_id!r} ended before its turn could commit (its replica was "
            "taken for dead); the turn was rolled back",
            run_id=self.run_id,
        )

    async def check(self, cursor: AsyncCursor[Any]) -> None:
        row = await cursor.fetchone()
        self.run = Run.from_row(row) if row is not None else None
