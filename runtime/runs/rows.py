"""The ``runs`` rows a :class:`~runtime.runs.manager.RunManager` reads and writes (the
statements are :mod:`runtime.runs.sql`; a run's idempotency key is :mod:`runtime.runs.keys`).
Every read settles the orphans it finds first (:mod:`runtime.runs.orphans`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from runtime.db import Pool, check_offset_page, connect, execute, fetch_all, fetch_one
from runtime.errors import Conflict, InvalidInput, NotFound
from runtime.runs import sql
from runtime.runs.keys import find_keyed_run, key_params
from runtime.runs.model import RUN_STATUSES, Run, RunRequest, RunStatus
from runtime.runs.orphans import seen

__all__ = [
    "delete_ended",
    "delete_row",
    "has_ended",
    "inflight",
    "insert_run",
    "list_runs",
    "queued_before",
    "request_cancel",
    "ids_of",
    "select_run",
    "set_status",
    "wait_ended",
]


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
    pool: Pool, request: RunRequest, run_id: str, status: RunStatus, holder: str | None
) -> tuple[Run, bool]:
    """``(the run's new row, True)``, held by ``holder`` (this process's heartbeat); or, when
    a request with the same idempotency key won the race (:mod:`runtime.runs.keys`), ``(its
    run, False)``."""
    params = {
        **key_params(request.owner, request.session_id, request.idempotency_key),
        "run": run_id,
        "assistant": request.assistant_id,
        "status": status,
        "metadata": Jsonb(request.metadata),
        "strategy": request.multitask_strategy,
        "kwargs": Jsonb(request.kwargs),
        "hash": request.request_hash,
        "holder": holder,
    }
    try:
        async with connect(pool) as conn:
            if request.idempotency_key is not None:
                await execute(conn, sql.FREE_SPENT_KEY, params)
            row = await fetch_one(conn, sql.INSERT_RUN, params)
    except psycopg.errors.UniqueViolation:
        kept = await find_keyed_run(
            pool, request.owner, request.session_id, request.idempotency_key, request.request_hash
        )
        if kept is None:  # the winner's thread was deleted in between
            raise Conflict(
                "a run with this idempotency key was created and removed concurrently",
                field="idempotency_key",
            ) from None
        return kept, False
    assert row is not None
    return Run.from_row(row), True


async def select_run(pool: Pool, owner: str, session_id: str, run_id: str) -> Run:
    """The run (an orphan settled), or ``NotFound``."""
    row = await fetch_one(pool, sql.SELECT_RUN, (owner, session_id, run_id))
    if row is None:
        raise NotFound(f"run {run_id!r} not found", run_id=run_id, thread_id=session_id)
    return (await seen(pool, [row]))[0]


async def list_runs(
    pool: Pool, owner: str, session_id: str, limit: int, offset: int, status: str | None
) -> list[Run]:
    """A page of the thread's runs, newest first (``status`` None: any), orphans settled.

    Raises:
        InvalidInput: an unknown status, or a bad page.
    """
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput(
            f"unknown run status {status!r}", field="status", allowed=list(RUN_STATUSES)
        )
    check_offset_page(limit, offset)
    params = (owner, session_id, status, status, limit, offset)
    return await seen(pool, await fetch_all(pool, sql.LIST_RUNS, params))


async def has_ended(pool: Pool, run: Run) -> bool:
    """Whether the run has ended (an orphan is settled: it has), or its row is gone."""
    try:
        return (await select_run(pool, run.owner, run.session_id, run.run_id)).done
    except NotFound:
        return True


async def request_cancel(pool: Pool, owner: str, session_id: str, run_id: str) -> Run | None:
    """Mark a pending or running run to be cancelled; the run (None: no such run, or ended,
    or an orphan)."""
    row = await fetch_one(pool, sql.REQUEST_CANCEL, (owner, session_id, run_id))
    return Run.from_row(row) if row is not None else None


async def ids_of(pool: Pool, statement: str, *params: Any) -> list[str]:
    """The ``run_id`` of each row a statement returns (the cancels it requests, ...)."""
    return [r["run_id"] for r in await fetch_all(pool, statement, params)]


async def wait_ended(pool: Pool, run_ids: Sequence[str], wait: float, poll: float) -> None:
    """Wait, up to ``wait`` seconds, until none of these runs is underway (an orphan is not),
    reading their rows every ``poll`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while run_ids and loop.time() < deadline:
        rows = await fetch_all(pool, sql.STILL_ACTIVE, {"ids": list(run_ids), "wait": wait})
        run_ids = [r["run_id"] for r in rows]
        if run_ids:
            await asyncio.sleep(poll)


async def set_status(
    pool: Pool, run_id: str, status: RunStatus, error: dict[str, Any] | None = None
) -> Run | None:
    """The run with its new status; None when it had ended already (settled as an orphan
    while this process was taken for dead, or ended with its turn) or its row is gone."""
    params = (status, Jsonb(error) if error is not None else None, run_id)
    row = await fetch_one(pool, sql.SET_STATUS, params)
    return Run.from_row(row) if row is not None else None


async def delete_ended(pool: Pool, owner: str, session_id: str, run_id: str) -> None:
    """Delete an ended run's row.

    Raises:
        NotFound: no such run.
        Conflict: the run is still pending or running (cancel it first).
    """
    params = (owner, session_id, run_id)
    if await execute(pool, sql.DELETE_ENDED_RUN, params):
        return
    run = await select_run(pool, owner, session_id, run_id)  # an orphan ends here
    if not run.done:
        raise Conflict(
            f"run {run_id!r} is {run.status}; cancel it before deleting it", run_id=run_id
        )
    await execute(pool, sql.DELETE_ENDED_RUN, params)


async def delete_row(pool: Pool, run_id: str) -> None:
    """Delete the run's row (a run that never started)."""
    await execute(pool, sql.DELETE_RUN, (run_id,))
