"""LangGraph Server API: runs, which are turns on a thread's session.

A run's input is one user message (``{"messages": [{"role": "user", "content": ...}]}``), or
``command: {"resume": ...}`` for a thread awaiting approval, or nothing with a
``checkpoint_id`` (continue from that checkpoint). Everything the turn runner enforces
(lease, budgets, tool permissions, approvals, rollback on failure) applies unchanged.

Accepted and ignored (documented): ``config`` and ``context`` (the graph takes neither),
``feedback_keys`` and ``langsmith_tracer`` (no LangSmith),
``checkpoint_during`` (``durability`` says it: ``"async"`` / ``"sync"`` give one checkpoint
per step for time travel, ``"exit"`` one per run; default: the server's setting), ``strict_resume``
(resumes are always strict). ``stream_resumable``: the stream is recorded
(:mod:`runtime.runs.events`), its events carry ids, and ``GET .../runs/{run_id}/stream`` with
``Last-Event-ID`` replays what followed that id (``-1``: everything), then the live tail, from
any replica. ``interrupt_before`` / ``interrupt_after`` stop the graph
before / after those nodes; a run with no input then continues the thread from its latest
checkpoint. Refused with 422: ``webhook``, ``after_seconds`` > 0, ``command.update`` /
``command.goto``, and the ``events`` stream mode is accepted but yields nothing.

``command.resume`` may be ``{"decisions": [...]}``, a list of decisions, one decision
(``{"action": ...}``), or the string ``"approve"`` / ``"reject"`` for every pending call.

The routes are here; reading a run body is :mod:`api.compat.run_input`, and the bodies a
run answers with (SSE, or JSON once it ends) are :mod:`api.compat.run_streams`.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sse_starlette import EventSourceResponse

from api.compat.common import iso
from api.compat.run_input import RunCreate, join_modes, start_run, stream_modes
from api.compat.run_streams import (
    Cancel,
    EventTranslator,
    ended_events,
    joined_values,
    json_response,
    live_events,
    recorded_events,
    replay_response,
    sse_response,
    wait_outcome,
)
from api.deps import PrincipalDep, RuntimeDep
from api.streaming import IDEMPOTENCY_HEADER, first_event_after
from runtime import Runtime
from runtime.db import MAX_OFFSET_LIMIT
from runtime.keys import Principal
from runtime.runs import Run, RunRequest

router = APIRouter(tags=["langgraph: runs"])

ThreadId = Annotated[str, Path(min_length=1, max_length=128)]
RunId = Annotated[str, Path(min_length=1, max_length=128)]
# A retry with the same key and body gets the first attempt's run, never a second one.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        max_length=255,
        description="Makes a retry safe: the same key and body return the first attempt's "
        "run (its result, or its stream replayed); the same key with another body is a 422.",
    ),
]

# LangGraph's run statuses that no run here ever ends in: a filter on one finds nothing
# (LangGraph clients may still send it).
NEVER_REACHED = frozenset({"timeout"})


# -- runs -> JSON -----------------------------------------------------------------------------


def run_dict(run: Run) -> dict[str, Any]:
    """A run as a LangGraph ``Run``."""
    return {
        "run_id": run.run_id,
        "thread_id": run.session_id,
        "assistant_id": run.assistant_id,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "status": run.status,
        "metadata": run.metadata,
        "multitask_strategy": run.multitask_strategy,
        "kwargs": run.kwargs,
    }


def _locations(run: Run, temporary: bool, tail: str) -> dict[str, str]:
    base = f"/threads/{run.session_id}/runs/{run.run_id}"
    if temporary:
        return {"Content-Location": base}
    return {"Content-Location": base, "Location": base + tail}


def _cancel(runtime: Runtime, request: RunRequest, run: Run, body: RunCreate) -> Cancel | None:
    """What cancels the run if its client leaves (``on_disconnect: "cancel"``)."""
    if body.on_disconnect != "cancel":
        return None
    return partial(runtime.runs.cancel_soon, request.owner, request.session_id, run.run_id)


# -- routes -------------------------------------------------------------------------------------


async def _rejoined(
    runtime: Runtime,
    run: Run,
    modes: tuple[str, ...],
    after: int | None,
    cancel: Cancel | None = None,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    """A run's stream joined: a resumable run's recorded events after ``after`` (-1: all),
    then live; else its live events if it runs here, or its outcome once it ends."""
    if run.kwargs.get("stream_resumable"):
        return replay_response(recorded_events(runtime, run, after), cancel, headers)
    live = runtime.runs.live_events(run.run_id)
    if live is None:
        return sse_response(ended_events(runtime, run, modes), cancel, headers)
    session = await runtime.sessions.get(run.owner, run.session_id)
    translator = EventTranslator(modes, run.session_id, session.thread_id)
    return sse_response(live_events(run.run_id, live, translator), cancel, headers)


async def _stream(
    runtime: Runtime, who: Principal, thread_id: str | None, body: RunCreate, key: str | None
) -> EventSourceResponse:
    modes = stream_modes(body)
    subscribe = not body.stream_resumable
    handle, request = await start_run(
        runtime, who, thread_id, body, modes, key, subscribe=subscribe
    )
    if request is None:  # a retry: the first attempt's stream, replayed or joined
        return await _rejoined(
            runtime, handle.run, modes, -1, None, _locations(handle.run, False, "/stream")
        )
    headers = _locations(handle.run, request.temporary, "/stream")
    cancel = _cancel(runtime, request, handle.run, body)
    if request.recorder is not None:  # stream_resumable: numbered events, replayable
        return replay_response(recorded_events(runtime, handle.run, 0), cancel, headers)
    translator = EventTranslator(modes, request.session_id, handle.thread_key)
    events = live_events(handle.run.run_id, handle.events(), translator)
    return sse_response(events, cancel, headers)


async def _wait(
    runtime: Runtime, who: Principal, thread_id: str | None, body: RunCreate, key: str | None
) -> StreamingResponse:
    stream_modes(body)  # validated, though the output is the final values
    handle, request = await start_run(
        runtime, who, thread_id, body, ("values",), key, subscribe=True
    )
    if request is None:  # a retry: the first attempt's output, once it ends
        outcome = asyncio.ensure_future(joined_values(runtime, handle.run))
        return json_response(outcome, None, _locations(handle.run, False, "/join"))
    waited = asyncio.ensure_future(wait_outcome(runtime, handle, request.session_id))
    headers = _locations(handle.run, request.temporary, "/join")
    return json_response(waited, _cancel(runtime, request, handle.run, body), headers)


async def _background(
    runtime: Runtime, who: Principal, thread_id: str | None, body: RunCreate, key: str | None
) -> JSONResponse:
    # Live events for join-stream: the modes asked for, and the values always.
    modes = tuple(dict.fromkeys(("values", *stream_modes(body))))
    handle, _ = await start_run(runtime, who, thread_id, body, modes, key)
    return JSONResponse(run_dict(handle.run), headers=_locations(handle.run, True, ""))


@router.post("/threads/{thread_id}/runs/stream", summary="Run on a thread, streaming (SSE)")
async def stream_run(
    thread_id: ThreadId,
    body: RunCreate,
    runtime: RuntimeDep,
    who: PrincipalDep,
    key: IdempotencyKey = None,
) -> EventSourceResponse:
    return await _stream(runtime, who, thread_id, body, key)


@router.post("/runs/stream", summary="Run on a new thread, streaming (SSE)")
async def stream_stateless_run(
    body: RunCreate, runtime: RuntimeDep, who: PrincipalDep, key: IdempotencyKey = None
) -> EventSourceResponse:
    return await _stream(runtime, who, None, body, key)


@router.post("/threads/{thread_id}/runs/wait", summary="Run on a thread and wait for its output")
async def wait_run(
    thread_id: ThreadId,
    body: RunCreate,
    runtime: RuntimeDep,
    who: PrincipalDep,
    key: IdempotencyKey = None,
) -> StreamingResponse:
    return await _wait(runtime, who, thread_id, body, key)


@router.post("/runs/wait", summary="Run on a new thread and wait for its output")
async def wait_stateless_run(
    body: RunCreate, runtime: RuntimeDep, who: PrincipalDep, key: IdempotencyKey = None
) -> StreamingResponse:
    return await _wait(runtime, who, None, body, key)


@router.post("/threads/{thread_id}/runs", summary="Start a background run on a thread")
async def create_run(
    thread_id: ThreadId,
    body: RunCreate,
    runtime: RuntimeDep,
    who: PrincipalDep,
    key: IdempotencyKey = None,
) -> JSONResponse:
    return await _background(runtime, who, thread_id, body, key)


@router.post("/runs", summary="Start a background run on a new thread")
async def create_stateless_run(
    body: RunCreate, runtime: RuntimeDep, who: PrincipalDep, key: IdempotencyKey = None
) -> JSONResponse:
    return await _background(runtime, who, None, body, key)


@router.get("/threads/{thread_id}/runs", summary="List a thread's runs, newest first")
async def list_runs(
    thread_id: ThreadId,
    runtime: RuntimeDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_OFFSET_LIMIT)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> list[dict[str, Any]]:
    await runtime.sessions.get(who.owner, thread_id)
    if status in NEVER_REACHED:
        return []
    runs = await runtime.runs.list(who.owner, thread_id, limit=limit, offset=offset, status=status)
    return [run_dict(r) for r in runs]


@router.get("/threads/{thread_id}/runs/{run_id}", summary="Get a run")
async def get_run(
    thread_id: ThreadId, run_id: RunId, runtime: RuntimeDep, who: PrincipalDep
) -> dict[str, Any]:
    return run_dict(await runtime.runs.get(who.owner, thread_id, run_id))


@router.get("/threads/{thread_id}/runs/{run_id}/join", summary="Wait for a run; its output")
async def join_run(
    thread_id: ThreadId, run_id: RunId, runtime: RuntimeDep, who: PrincipalDep
) -> StreamingResponse:
    run = await runtime.runs.get(who.owner, thread_id, run_id)  # 404 before the body starts
    return json_response(asyncio.ensure_future(joined_values(runtime, run)))


@router.get("/threads/{thread_id}/runs/{run_id}/stream", summary="Join a run's stream (SSE)")
async def join_run_stream(
    thread_id: ThreadId,
    run_id: RunId,
    runtime: RuntimeDep,
    who: PrincipalDep,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    cancel_on_disconnect: bool = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> EventSourceResponse:
    run = await runtime.runs.get(who.owner, thread_id, run_id)
    modes = join_modes(stream_mode, run)
    cancel = partial(runtime.runs.cancel_soon, who.owner, thread_id, run_id)
    # A resumable run: what the client missed after Last-Event-ID (-1: everything), then
    # live; without one, from now on. The events are the run's own stream modes.
    after = first_event_after(last_event_id) if run.kwargs.get("stream_resumable") else None
    return await _rejoined(runtime, run, modes, after, cancel if cancel_on_disconnect else None)


@router.post(
    "/threads/{thread_id}/runs/{run_id}/cancel",
    summary="Cancel a run; a running turn rolls back (action interrupt and rollback alike)",
    status_code=202,
)
async def cancel_run(
    thread_id: ThreadId,
    run_id: RunId,
    runtime: RuntimeDep,
    who: PrincipalDep,
    wait: bool = False,
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> Response:
    await runtime.runs.cancel(who.owner, thread_id, run_id)
    if not wait:
        return Response(status_code=202)
    run = await runtime.runs.get(who.owner, thread_id, run_id)
    return JSONResponse(await joined_values(runtime, run))


@router.delete("/threads/{thread_id}/runs/{run_id}", summary="Delete an ended run", status_code=204)
async def delete_run(
    thread_id: ThreadId, run_id: RunId, runtime: RuntimeDep, who: PrincipalDep
) -> Response:
    await runtime.runs.delete(who.owner, thread_id, run_id)
    return Response(status_code=204)
