"""Safe retries: a turn sent again with the same idempotency key runs once.

A keyed request first looks for the result kept under its key
(:mod:`runtime.sessions.idempotency`): found, it is the answer (the same key with another
request is :class:`~runtime.errors.InvalidInput`). Not found, the turn takes the lease as
usual, then looks once more (the first attempt may have committed in between) before it
runs. While the session is busy (perhaps the first attempt, still running) a keyed request
waits for it, up to the lease timeout, instead of answering 409 at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from runtime.agents import CompiledAgent
from runtime.errors import SessionBusy
from runtime.sessions import Lease, SessionStore
from runtime.sessions.idempotency import KeyedResult, check_key, request_hash
from runtime.turns.events import TurnEvent, TurnRequest, TurnResult

__all__ = ["begin_once", "keyed", "keyed_result", "replayed"]

Begin = Callable[[str, str, TurnRequest], Awaitable[tuple[Lease, CompiledAgent]]]


def keyed(request: TurnRequest) -> TurnRequest:
    """The request with the hash of what it asks for, if it has an idempotency key (checked).

    Hashed as the caller sent it, before the runner converts its input.
    """
    if request.idempotency_key is None or request.request_hash is not None:
        return request
    check_key(request.idempotency_key)
    asked = {
        "content": request.content,
        "input": request.input,
        "decisions": request.decisions,
        "resume_value": request.resume_value,
        "agent_id": request.agent_id,
        "checkpoint_id": request.checkpoint_id,
        "proceed": request.proceed,
        "configurable": request.configurable,
        "context": request.context,
        "metadata": request.metadata,
        "message_id": request.message_id,
        "roles": request.roles,
        "budgets": request.budgets,
    }
    return replace(request, request_hash=request_hash(asked))


def keyed_result(request: TurnRequest, result: TurnResult) -> KeyedResult | None:
    """What the release keeps under the request's key (None: no key)."""
    if request.idempotency_key is None or request.request_hash is None:
        return None
    return KeyedResult(request.idempotency_key, request.request_hash, result.to_dict())


async def _kept(
    sessions: SessionStore, owner: str, session_id: str, request: TurnRequest
) -> TurnResult | None:
    assert request.idempotency_key is not None and request.request_hash is not None
    kept = await sessions.keyed_result(
        owner, session_id, request.idempotency_key, request.request_hash
    )
    return None if kept is None else TurnResult(**kept)


async def begin_once(
    begin: Begin, sessions: SessionStore, owner: str, session_id: str, request: TurnRequest
) -> tuple[Lease, CompiledAgent] | TurnResult:
    """``begin`` (take the lease), or the kept result of the request's key."""
    if request.idempotency_key is None:
        return await begin(owner, session_id, request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(sessions.lease_timeout_seconds, sessions.lease_wait_seconds)
    delay = 0.02
    while True:
        kept = await _kept(sessions, owner, session_id, request)
        if kept is not None:
            return kept
        try:
            lease, agent = await begin(owner, session_id, request)
        except SessionBusy:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
            continue
        kept = await _kept(sessions, owner, session_id, request)
        if kept is None:
            return lease, agent
        # The first attempt committed between the two looks: give the lease back untouched.
        await sessions.abort(lease)
        return kept


def replayed(result: TurnResult) -> tuple[AsyncIterator[TurnEvent], asyncio.Task[TurnResult]]:
    """A kept result as a started turn: its messages, usage and ``done`` as events."""

    async def events() -> AsyncIterator[TurnEvent]:
        for message in result.messages:
            yield TurnEvent("message", message)
        yield TurnEvent("usage", dict(result.usage))
        yield TurnEvent("done", result.to_dict())

    async def done() -> TurnResult:
        return result

    return events(), asyncio.ensure_future(done())
