"""LangGraph Server API: what a run sends back, as Server-Sent Events or as JSON.

A streamed run answers ``metadata``, its events in the LangGraph vocabulary of the requested
stream modes, then ``end``; a waited-for run answers its output as one JSON value (with
keep-alive newlines meanwhile). Either body, if the client leaves before the end, may
cancel the run (:func:`cancel_on_disconnect`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.compat.common import checkpoint_dict, interrupt_dict, json_bytes
from api.streaming import Cancel, cancel_on_disconnect, compact_json_bytes, recorded_sse, sse_event
from runtime import Runtime
from runtime.errors import NotFound
from runtime.runs import Run, RunHandle
from runtime.runs.events import Recorded
from runtime.turns import TurnEvent

__all__ = [
    "Cancel",
    "EventTranslator",
    "cancel_on_disconnect",
    "ended_events",
    "joined_values",
    "json_response",
    "live_events",
    "recorded_events",
    "replay_response",
    "sse_response",
    "values_result",
    "wait_outcome",
]

_KEEPALIVE_SECONDS = 5.0

# What a run waited for answers: JSON-ready data, or the same already encoded.
Outcome = dict[str, Any] | orjson.Fragment


def _public_configurable(configurable: Mapping[str, Any]) -> dict[str, Any]:
    # The turn's guard (and anything else that is not plain data) and the runtime's own
    # keys (the saver's cache hint) stay inside.
    return {
        k: v
        for k, v in configurable.items()
        if isinstance(v, str | int | float | bool) and not k.startswith("sessiongraph_")
    }


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _public_configurable(v) if k == "configurable" and isinstance(v, dict) else _strip(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return [_strip(v) for v in value]
    return value


def _rename(value: Any, internal: str, public: str) -> Any:
    """Replace the checkpointer's thread id with the public one, everywhere."""
    if isinstance(value, str):
        return public if value == internal else value
    if isinstance(value, dict):
        return {k: _rename(v, internal, public) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, internal, public) for v in value]
    return value


class EventTranslator:
    """Turn events → LangGraph SSE events for the requested stream modes of one stream."""

    def __init__(self, modes: tuple[str, ...], thread_id: str, thread_key: str) -> None:
        self.modes = set(modes)
        self.thread_id = thread_id
        self.thread_key = thread_key
        self._messages: dict[str, Any] = {}  # "messages" mode: chunks accumulated by id

    def public(self, value: Any) -> Any:
        """JSON-ready data with no internal objects or ids (the checkpointer's thread id, a
        UUID, is looked for in the encoded text before the data is walked to replace it)."""
        raw = json_bytes(_strip(value))
        data = orjson.loads(raw)
        if self.thread_key and self.thread_key.encode() in raw:
            return _rename(data, self.thread_key, self.thread_id)
        return data

    def public_json(self, value: Any) -> orjson.Fragment:
        """:meth:`public` already encoded (read back only when an id must be replaced)."""
        raw = json_bytes(_strip(value))
        if self.thread_key and self.thread_key.encode() in raw:
            raw = json_bytes(_rename(orjson.loads(raw), self.thread_key, self.thread_id))
        return orjson.Fragment(raw)

    def first(self, run: Run) -> list[tuple[str, Any]]:
        """What a run's stream starts with: its ``metadata``."""
        return [("metadata", {"run_id": run.run_id, "attempt": 1})]

    def translate(self, event: TurnEvent) -> list[tuple[str, Any]]:
        if event.type == "error":
            return [("error", {k: event.data.get(k) for k in ("error", "message")})]
        if event.type != "chunk":
            return []
        out = self._chunk(event.data["mode"], event.data["data"])
        ns = event.data.get("ns")
        if ns:
            # A subgraph's part: LangGraph names its event "<mode>|<namespace>".
            suffix = "|" + "|".join(ns)
            return [(name + suffix, data) for name, data in out]
        return out

    def _chunk(self, mode: str, data: Any) -> list[tuple[str, Any]]:
        if mode == "messages":
            return self._message(data)
        if mode not in self.modes:
            return []
        if mode == "debug" and isinstance(data, dict) and data.get("type") == "checkpoint":
            payload = dict(data.get("payload") or {})
            payload["checkpoint"] = checkpoint_dict(payload.get("config"), self.thread_id)
            payload["parent_checkpoint"] = checkpoint_dict(
                payload.get("parent_config"), self.thread_id
            )
            data = {**data, "payload": payload}
        return [(mode, self.public(data))]

    def _message(self, data: Any) -> list[tuple[str, Any]]:
        message, metadata = data
        if "messages-tuple" in self.modes:
            return [("messages", [self.public(message), self.public(metadata)])]
        if "messages" not in self.modes:
            return []
        out: list[tuple[str, Any]] = []
        key = message.id
        if key in self._messages:
            self._messages[key] = self._messages[key] + message
        else:
            self._messages[key] = message
            out.append(("messages/metadata", {key: {"metadata": self.public(metadata)}}))
        partial = type(message).__name__.endswith("Chunk")
        name = "messages/partial" if partial else "messages/complete"
        out.append((name, [self.public(self._messages[key])]))
        return out


def sse_response(
    events: AsyncIterable[tuple[str, Any]],
    cancel: Cancel | None = None,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """An SSE response of ``(event, data)`` pairs, ending with ``end``."""

    async def body() -> AsyncIterator[ServerSentEvent]:
        async for name, data in events:
            yield sse_event(name, data)

    return EventSourceResponse(
        cancel_on_disconnect(body(), cancel, tail=(sse_event("end", None),)),
        ping=15,
        headers={"Cache-Control": "no-cache", **(headers or {})},
    )


def replay_response(
    recorded: AsyncIterable[Recorded],
    cancel: Cancel | None = None,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """An SSE response of a resumable run's recorded events, each with its number as its
    ``id`` (what a client sends back as ``Last-Event-ID``), ending with ``end``."""
    return recorded_sse(recorded, cancel, tail=(sse_event("end", None),), headers=headers)


def recorded_events(runtime: Runtime, run: Run, after: int | None) -> AsyncIterator[Recorded]:
    """A resumable run's events numbered above ``after`` (None: from now on), then live."""
    return runtime.runs.follow(run, after)


async def live_events(
    run_id: str, events: AsyncIterable[TurnEvent], translator: EventTranslator
) -> AsyncIterator[tuple[str, Any]]:
    """A run's ``metadata``, then its turn events as LangGraph events."""
    yield "metadata", {"run_id": run_id, "attempt": 1}
    async for event in events:
        for name, data in translator.translate(event):
            yield name, data


async def ended_events(
    runtime: Runtime, run: Run, modes: tuple[str, ...]
) -> AsyncIterator[tuple[str, Any]]:
    """For a run not executing here: ``metadata``, then its outcome once it ends (from any
    replica): its ``error``, or its final ``values``."""
    yield "metadata", {"run_id": run.run_id, "attempt": 1}
    ended = await runtime.runs.join(run.owner, run.session_id, run.run_id)
    result = await values_result(runtime, ended)
    if "__error__" in result:
        yield "error", result["__error__"]
    elif "values" in modes:
        yield "values", result


async def joined_values(runtime: Runtime, run: Run) -> dict[str, Any]:
    """What a run returns once it ends (in this process or any other): see
    :func:`values_result`."""
    return await values_result(
        runtime, await runtime.runs.join(run.owner, run.session_id, run.run_id)
    )


async def values_result(runtime: Runtime, run: Run) -> dict[str, Any]:
    """What ``join`` returns: the thread's committed values (with pending interrupts), or
    ``{"__error__": ...}`` for a failed run."""
    if run.status == "error" and run.error:
        return {"__error__": {"error": run.error.get("error"), "message": run.error.get("message")}}
    try:
        session = await runtime.sessions.get(run.owner, run.session_id)
    except NotFound:
        return {}  # a stateless run's thread, deleted with it
    snapshot = await runtime.threads.state(session)
    values = EventTranslator((), run.session_id, session.thread_id).public(snapshot.values)
    out: dict[str, Any] = dict(values) if isinstance(values, dict) else {}
    if snapshot.interrupts:
        out["__interrupt__"] = [interrupt_dict(i) for i in snapshot.interrupts]
    return out


async def _keepalive_json(result: asyncio.Future[Any]) -> AsyncIterator[bytes]:
    """The JSON body once ``result`` is ready, with a newline every few seconds meanwhile
    (leading whitespace is valid JSON; it keeps proxies from timing the request out)."""
    while True:
        try:
            value = await asyncio.wait_for(asyncio.shield(result), timeout=_KEEPALIVE_SECONDS)
        except TimeoutError:
            yield b"\n"
            continue
        yield compact_json_bytes(value)
        return


def json_response(
    result: asyncio.Future[Any],  # of an Outcome
    cancel: Cancel | None = None,
    headers: Mapping[str, str] | None = None,
) -> StreamingResponse:
    """A JSON response of ``result`` once it is ready (see :func:`_keepalive_json`)."""
    return StreamingResponse(
        cancel_on_disconnect(_keepalive_json(result), cancel),
        media_type="application/json",
        headers=headers,
    )


async def wait_outcome(runtime: Runtime, handle: RunHandle, thread_id: str) -> Outcome:
    """What a waited-for run returns: its last values (encoded once, never read back), its
    error, or the thread's values."""
    translator = EventTranslator(("values",), thread_id, handle.thread_key)
    last: TurnEvent | None = None  # only the last values are encoded
    async for event in handle.events():
        if event.type == "chunk" and event.data["mode"] == "values" and not event.data.get("ns"):
            last = event
            continue
        for name, data in translator.translate(event):
            if name == "error":
                return {"__error__": data}
    if last is None:
        return await values_result(runtime, handle.run)
    return translator.public_json(last.data["data"])
