"""Turn responses: JSON, or Server-Sent Events when the client asks for them.

A streamed turn's events are ``token``, ``tool_call``, ``tool_result``, ``message``,
``approval_required`` or ``interrupt`` (a pause), ``usage``, then ``done`` (the whole turn
result) or ``error``; each ``data`` is JSON. The
turn runs detached from the connection, so a client that disconnects mid-stream leaves the
session complete (the turn finishes) rather than half-written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.responses import FastJSONResponse
from runtime import Runtime, TurnEvent
from runtime.turns import TurnRequest

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SSE_RESPONSES",
    "compact_json",
    "respond",
    "sse_event",
    "stream_turn",
    "wants_stream",
]

# The header that makes a turn request safe to retry (runtime.turns.retries).
IDEMPOTENCY_HEADER = "Idempotency-Key"

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The turn: JSON by default; Server-Sent Events with "
        "`Accept: text/event-stream` (events token, tool_call, tool_result, message, "
        "approval_required, interrupt, usage, done, error; each `data` is JSON).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def wants_stream(request: Request) -> bool:
    """Whether the client asked for Server-Sent Events."""
    return "text/event-stream" in request.headers.get("accept", "")


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text (non-ASCII kept, anything else as its ``str``)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def sse_event(name: str, data: Any) -> ServerSentEvent:
    """One Server-Sent Event whose ``data`` is ``data`` as JSON."""
    return ServerSentEvent(compact_json(data), event=name)


async def stream_turn(
    started: Awaitable[AsyncIterator[TurnEvent]], grace: float = 0.0
) -> EventSourceResponse:
    """An SSE response for a turn, sent as soon as the turn holds its session's lease.

    ``started`` (:meth:`runtime.Runtime.start`) raises the errors that stop the turn from
    starting (unknown session, busy, inactive, bad input), so they still answer with their
    status and JSON body; the events then stream as they happen. When the server shuts down,
    the stream may go on for ``grace`` seconds, so a turn in flight still ends with ``done``.
    """
    events = await started

    async def body() -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield sse_event(event.type, event.data)

    return EventSourceResponse(
        body(), ping=15, headers={"Cache-Control": "no-cache"}, shutdown_grace_period=grace
    )


async def respond(
    runtime: Runtime, request: Request, owner: str, session_id: str, turn: TurnRequest
) -> Any:
    """A turn's answer: its events as SSE when the client asks for them, else its result.

    An ``Idempotency-Key`` header makes a retry safe: the same key and body return the
    first attempt's result (or wait for it) instead of running the turn again.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        turn = replace(turn, idempotency_key=key)
    if wants_stream(request):
        grace = runtime.settings.shutdown_grace_seconds
        return await stream_turn(runtime.start(session_id, turn, owner=owner), grace)
    return FastJSONResponse((await runtime.run(session_id, turn, owner=owner)).to_dict())
