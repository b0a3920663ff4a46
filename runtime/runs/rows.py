"""The ``runs`` rows a :class:`~runtime.runs.manager.RunManager` reads and writes, one
statement each (the statements are :mod:`runtime.runs.sql`)."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from runtime.db import Pool, execute, fetch_one
from runtime.runs import sql
from runtime.runs.model import Run, RunRequest, RunStatus

__all__ = ["delete_row", "inflight", "insert_run", "queued_before", "set_status"]


async def inflight(pool: Pool, owner: str, session_id: str, wait: float) -> bool:
    """Whether a run is pending or running on the thread, or a turn holds its lease."""
    row = await fetch_one(pool, sql.INFLIGHT, {"o": owner, "s": session_id, "wait": wait})
    return bool(row and row["busy"])


async def queued_before(pool: Pool, run: Run, wait: float) -> bool:
    """Whether an older run of the thread is still pending (the queue is FIFO)."""
    params = {
        "o": run.owner,
        "s": run.session_id,
        "run_id": run.run_id,
        "created_at": run.created_at,
        "wait": wait,
    }
    row = await fetch_one(pool, sql.QUEUED_BEFORE, params)
    return bool(row and row["queued"])


async def insert_run(
    pool: Pool, request: RunRequest, run_id: str, status: RunStatus = "pending"
) -> Run:
    """The run's new row."""
    params = (
        run_id,
        request.owner,
        request.session_id,
        request.assistant_id,
        status,
        Jsonb(request.metadata),
        request.multitask_strategy,
        Jsonb(request.kwargs),
    )
    row = await fetch_one(pool, sql.INSERT_RUN, params)
    assert row is not None
    return Run.from_row(row)


async def set_status(
    pool: Pool, run_id: str, status: RunStatus, error: dict[str, Any] | None = None
) -> Run | None:
    """The run with its new status (None: its row is gone)."""
    params = (status, Jsonb(error) if error is not None else None, run_id)
    row = await fetch_one(pool, sql.SET_STATUS, params)
    return Run.from_row(row) if row is not None else None


async def delete_row(pool: Pool, run_id: str) -> None:
    """Delete the run's row (a run that never started)."""
    await execute(pool, sql.DELETE_RUN, (run_id,))
