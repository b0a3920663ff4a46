"""Idempotency keys of runs: a run created with a key is what a retry with that key gets.

A LangGraph API run created with an ``Idempotency-Key`` keeps the key and the hash of its
request in its row (unique per thread), so a retry (same key, same request) finds that run,
running or ended, on any replica, and starts nothing; the same key with another request is
``InvalidInput`` (422). The key rules are those of turns, used by name from
:mod:`runtime.sessions.idempotency`; a key names its run for ``KEY_RETENTION_SECONDS`` (24 h)
and is deleted with its thread.
"""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from runtime.db import Db, Pool, connect, execute, fetch_one
from runtime.errors import Conflict
from runtime.runs import sql
from runtime.runs.model import Run, RunRequest
from runtime.sessions.idempotency import KEY_RETENTION_SECONDS, check_same_request

__all__ = ["find_keyed_run", "insert_run"]


def _key_params(owner: str, session_id: str, key: str | None) -> dict[str, object]:
    return {"owner": owner, "sid": session_id, "key": key, "keep": KEY_RETENTION_SECONDS}


async def find_keyed_run(
    db: Db, owner: str, session_id: str, key: str | None, request_hash: str | None
) -> Run | None:
    """The run an earlier request with this key created on the thread (None: no key, or no
    such run).

    Raises:
        InvalidInput: the key was used with a different request.
    """
    if key is None:
        return None
    row = await fetch_one(db, sql.SELECT_KEYED_RUN, _key_params(owner, session_id, key))
    if row is None:
        return None
    check_same_request(row["request_hash"], request_hash, thread_id=session_id)
    return Run.from_row(row)


async def _find(db: Db, request: RunRequest) -> Run | None:
    return await find_keyed_run(
        db, request.owner, request.session_id, request.idempotency_key, request.request_hash
    )


async def insert_run(pool: Pool, request: RunRequest, run_id: str) -> tuple[Run, bool]:
    """``(the new run's row, True)``; or, when a request with the same key won the race,
    ``(its run, False)``."""
    params = {
        **_key_params(request.owner, request.session_id, request.idempotency_key),
        "run": run_id,
        "assistant": request.assistant_id,
        "metadata": Jsonb(request.metadata),
        "strategy": request.multitask_strategy,
        "kwargs": Jsonb(request.kwargs),
        "hash": request.request_hash,
    }
    try:
        async with connect(pool) as conn:
            if request.idempotency_key is not None:
                await execute(conn, sql.FREE_LAPSED_KEY, params)
            row = await fetch_one(conn, sql.INSERT_RUN, params)
    except psycopg.errors.UniqueViolation:
        kept = await _find(pool, request)
        if kept is None:  # the winner's thread was deleted in between
            raise Conflict(
                "a run with this idempotency key was created and removed concurrently",
                field="idempotency_key",
            ) from None
        return kept, False
    assert row is not None
    return Run.from_row(row), True
