"""Idempotency keys of runs: a run created with a key is what a retry with that key gets.

A LangGraph API run created with an ``Idempotency-Key`` keeps the key and the hash of its
request in its row (unique per thread), so a retry (same key, same request) finds that run,
running or ended, on any replica, and starts nothing; the same key with another request is
``InvalidInput`` (422). The key rules are those of turns, used by name from
:mod:`runtime.sessions.idempotency`; a key names its run for ``KEY_RETENTION_SECONDS`` (24 h)
and is deleted with its thread. The row is written by :func:`runtime.runs.rows.insert_run`.

A run its replica lost (:mod:`runtime.runs.orphans`: ended ``error``, ``replica_lost``) names
no run for its key any more: its turn never committed and never will, so a retry runs the
request again as a new run under the same key (``insert_run`` frees the key first), rather
than answering the loss. A run that ended any other way, its turn committed or not, is the
answer, as it is.
"""

from __future__ import annotations

from runtime.db import Db, fetch_one
from runtime.runs import sql
from runtime.runs.model import Run
from runtime.runs.orphans import seen
from runtime.sessions.idempotency import KEY_RETENTION_SECONDS, check_same_request

__all__ = ["find_keyed_run", "key_params"]


def key_params(owner: str, session_id: str, key: str | None) -> dict[str, object]:
    """The parameters that name a thread's key and how long it is kept (runtime.runs.sql)."""
    return {"owner": owner, "sid": session_id, "key": key, "keep": KEY_RETENTION_SECONDS}


async def find_keyed_run(
    db: Db, owner: str, session_id: str, key: str | None, request_hash: str | None
) -> Run | None:
    """The run an earlier request with this key created on the thread (None: no key, no such
    run, or one its replica lost; an orphan is settled first).

    Raises:
        InvalidInput: the key was used with a different request.
    """
    if key is None:
        return None
    row = await fetch_one(db, sql.SELECT_KEYED_RUN, key_params(owner, session_id, key))
    if row is None:
        return None
    check_same_request(row["request_hash"], request_hash, thread_id=session_id)
    run = (await seen(db, [row]))[0]
    return None if run.lost else run
