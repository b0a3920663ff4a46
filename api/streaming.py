"""Turn responses: JSON, or Server-Sent Events when the client asks for them.

A streamed turn's events are ``turn`` (its ``turn_id`` and ``session_id``), ``token``,
``tool_call``, ``tool_result``, ``message``, ``approval_required`` or ``interrupt`` (a pause),
``usage``, then ``done`` (the whole turn result) or ``error``; each ``data`` is JSON and each
event has an ``id`` (1, 2, ...). The turn runs detached from the connection, so a client that
disconnects mid-stream leaves the session complete (the turn finishes) rather than
half-written; it rejoins with ``GET`` on the ``Content-Location`` the response named and
``Last-Event-ID`` (what it missed, then the rest live, from any replica).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, Literal, TypeVar

import orjson
from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.responses import FastJSONResponse
from runtime import Runtime, TurnEvent
from runtime.errors import InvalidInput
from runtime.runs import Run
from runtime.runs.events import Recorded
from runtime.turns import TurnRequest

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SSE_RESPONSES",
    "Cancel",
    "OnDisconnect",
    "TurnStreamEvents",
    "cancel_on_disconnect",
    "compact_json",
    "compact_json_bytes",
    "first_event_after",
    "recorded_sse",
    "respond",
    "sse_event",
    "stream_turn",
    "turn_stream_path",
    "wants_stream",
]

T = TypeVar("T")
Cancel = Callable[[], None]
"""What to call when a client leaves a stream before its end (cancel the run or turn)."""
OnDisconnect = Literal["continue", "cancel"]

# The header that makes a turn request safe to retry (runtime.turns.retries).
IDEMPOTENCY_HEADER = "Idempotency-Key"

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The turn: JSON by default; Server-Sent Events with "
        "`Accept: text/event-stream` (events turn, token, tool_call, tool_result, message, "
        "approval_required, interrupt, usage, done, error; each `data` is JSON, each event "
        "has an `id`; `Content-Location` names the stream to rejoin with `Last-Event-ID`).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "headers": {
            "Content-Location": {
                "description": "SSE only: the turn's stream, "
                "`/v1/sessions/{session_id}/turns/{turn_id}/stream`, to rejoin with "
                "`Last-Event-ID`.",
                "schema": {"type": "string"},
            }
        },
    }
}


def wants_stream(request: Request) -> bool:
    """Whether the client asked for Server-Sent Events."""
    return "text/event-stream" in request.headers.get("accept", "")


def compact_json_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (anything else as its ``str``; an ``orjson.Fragment``
    as the JSON it holds), by orjson (the standard library's encoder for what orjson
    refuses, e.g. huge integers)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        return text.encode()


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text (:func:`compact_json_bytes`)."""
    return compact_json_bytes(value).decode()


def sse_event(name: str, data: Any) -> ServerSentEvent:
    """One Server-Sent Event whose ``data`` is ``data`` as JSON."""
    return ServerSentEvent(compact_json(data), event=name)


class TurnStreamEvents:
    """What a streamed turn records (:class:`~runtime.runs.model.EventRecorder`): ``turn``
    first (its id and session, to rejoin it), then each turn event as it is."""

    def first(self, run: Run) -> list[tuple[str, Any]]:
        return [("turn", {"turn_id": run.run_id, "session_id": run.session_id})]

    def translate(self, event: TurnEvent) -> list[tuple[str, Any]]:
        return [(event.type, event.data)]


def turn_stream_path(session_id: str, turn_id: str) -> str:
    """Where a streamed turn is rejoined: its ``Content-Location``."""
    return f"/v1/sessions/{session_id}/turns/{turn_id}/stream"


async def cancel_on_disconnect(
    chunks: AsyncIterable[T], cancel: Cancel | None, tail: Iterable[T] = ()
) -> AsyncIterator[T]:
    """``chunks``, then ``tail``; a client that leaves before ``tail`` calls ``cancel``."""
    finished = False
    try:
        async for chunk in chunks:
            yield chunk
        finished = True
        for chunk in tail:
            yield chunk
    finally:
        if not finished and cancel is not None:
            cancel()


def recorded_sse(
    recorded: AsyncIterable[Recorded],
    cancel: Cancel | None = None,
    *,
    tail: Iterable[ServerSentEvent] = (),
    headers: Mapping[str, str] | None = None,
    grace: float = 0.0,
) -> EventSourceResponse:
    """An SSE response of recorded events, each with its number as its ``id`` (what a
    client sends back as ``Last-Event-ID``), then ``tail``. A client that leaves before the
    end calls ``cancel``; when the server shuts down the stream may go on for ``grace``
    seconds."""

    async def body() -> AsyncIterator[ServerSentEvent]:
        async for seq, name, data in recorded:
            yield ServerSentEvent(compact_json(data), event=name, id=str(seq))

    return EventSourceResponse(
        cancel_on_disconnect(body(), cancel, tail=tail),
        ping=15,
        headers={"Cache-Control": "no-cache", **(headers or {})},
        shutdown_grace_period=grace,
    )


def first_event_after(last_event_id: str | None) -> int | None:
    """``Last-Event-ID`` as the number of the last event the client has (``-1``: none).

    Raises:
        InvalidInput: not a number.
    """
    if last_event_id is None:
        return None
    try:
        return int(last_event_id)
    except ValueError:
        raise InvalidInput(
            "Last-Event-ID must be an event id this server sent, or -1", field="Last-Event-ID"
        ) from None


async def stream_turn(
    runtime: Runtime,
    owner: str,
    session_id: str,
    turn: TurnRequest,
    on_disconnect: OnDisconnect = "continue",
) -> EventSourceResponse:
    """An SSE response for a turn, sent as soon as the turn holds its session's lease.

    The errors that stop the turn from starting (unknown session, busy, inactive, bad input)
    are raised first, so they still answer with their status and JSON body. The turn is
    recorded (:meth:`runtime.runs.RunManager.start_turn`): every event has an id, and
    ``Content-Location`` names the stream to rejoin from any replica. A client that leaves
    does not stop the turn, unless ``on_disconnect`` is ``cancel`` (rolled back whole).
    """
    run = await runtime.runs.start_turn(owner, session_id, turn, TurnStreamEvents())
    cancel = None
    if on_disconnect == "cancel":
        cancel = partial(runtime.runs.cancel_soon, owner, session_id, run.run_id)
    return recorded_sse(
        runtime.runs.follow(run, 0),
        cancel,
        headers={"Content-Location": turn_stream_path(session_id, run.run_id)},
        grace=runtime.settings.shutdown_grace_seconds,
    )


async def respond(
    runtime: Runtime,
    request: Request,
    owner: str,
    session_id: str,
    turn: TurnRequest,
    on_disconnect: OnDisconnect = "continue",
) -> Any:
    """A turn's answer: its events as SSE when the client asks for them, else its result.

    An ``Idempotency-Key`` header makes a retry safe: the same key and body return the
    first attempt's result (or wait for it) instead of running the turn again.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        turn = replace(turn, idempotency_key=key)
    if wants_stream(request):
        return await stream_turn(runtime, owner, session_id, turn, on_disconnect)
    return FastJSONResponse((await runtime.run(session_id, turn, owner=owner)).to_dict())
