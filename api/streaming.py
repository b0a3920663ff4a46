"""Turn responses: JSON, or Server-Sent Events when the client asks for them.

A streamed turn's events are ``token``, ``tool_call``, ``tool_result``, ``message``,
``usage``, then ``done`` (the whole turn result) or ``error``; each ``data`` is JSON. The
turn runs detached from the connection, so a client that disconnects mid-stream leaves the
session complete (the turn finishes) rather than half-written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from runtime import TurnEvent

__all__ = ["SSE_RESPONSES", "compact_json", "sse_event", "stream_turn", "wants_stream"]

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The turn: JSON by default; Server-Sent Events with "
        "`Accept: text/event-stream` (events token, tool_call, tool_result, message, usage, "
        "done, error; each `data` is JSON).",
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


async def stream_turn(events: AsyncIterator[TurnEvent]) -> EventSourceResponse:
    """An SSE response for a turn.

    The first event is awaited here, so errors that stop the turn from starting (unknown
    session, busy, inactive, bad input) still answer with their status and JSON body.
    """
    first = await anext(events)

    async def body() -> AsyncIterator[ServerSentEvent]:
        yield sse_event(first.type, first.data)
        async for event in events:
            yield sse_event(event.type, event.data)

    return EventSourceResponse(body(), ping=15, headers={"Cache-Control": "no-cache"})
