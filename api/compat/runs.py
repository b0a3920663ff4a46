"""LangGraph Server API: runs, which are turns on a thread's session.

A run's input is one user message (``{"messages": [{"role": "user", "content": ...}]}``), or
``command: {"resume": ...}`` for a thread awaiting approval, or nothing with a
``checkpoint_id`` (continue from that checkpoint). Everything the turn runner enforces
(lease, budgets, tool permissions, approvals, rollback on failure) applies unchanged.

Accepted and ignored (documented): ``config`` and ``context`` (the graph takes neither),
``stream_subgraphs`` (no subgraphs), ``stream_resumable`` (events are not stored for replay;
``join``/join-stream still work), ``feedback_keys`` and ``langsmith_tracer`` (no LangSmith),
``checkpoint_during`` (``durability`` says it: ``"async"`` / ``"sync"`` give one checkpoint
per step for time travel, ``"exit"`` one per run; default: the server's setting), ``strict_resume``
(resumes are always strict). Refused with 422: non-empty ``interrupt_before`` /
``interrupt_after`` (only the approval interrupt exists), ``webhook``, ``after_seconds`` > 0,
``multitask_strategy: "interrupt"``, ``command.update`` / ``command.goto``, and the
``events`` stream mode is accepted but yields nothing.

``command.resume`` may be ``{"decisions": [...]}``, a list of decisions, one decision
(``{"action": ...}``), or the string ``"approve"`` / ``"reject"`` for every pending call.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.auth import turn_roles
from api.compat.common import (
    checkpoint_dict,
    interrupt_dict,
    iso,
    jsonable,
    resolve_assistant_id,
)
from api.deps import PrincipalDep, RuntimeDep
from runtime import Runtime
from runtime.db import MAX_OFFSET_LIMIT
from runtime.errors import InvalidInput, NotFound
from runtime.keys import Principal
from runtime.runs import Run, RunHandle, RunRequest
from runtime.sessions import Session
from runtime.turns import TurnEvent, TurnRequest

router = APIRouter(tags=["langgraph: runs"])

ThreadId = Annotated[str, Path(min_length=1, max_length=128)]
RunId = Annotated[str, Path(min_length=1, max_length=128)]

# Every stream mode the SDK knows; "events" is accepted and yields nothing.
STREAM_MODES = (
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "debug",
    "custom",
    "events",
    "tasks",
    "checkpoints",
)
_KEEPALIVE_SECONDS = 5.0


class RunCreate(BaseModel):
    """A run request as ``langgraph-sdk`` and Studio send it (unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    assistant_id: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    stream_mode: str | list[str] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    feedback_keys: list[str] | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = Field(default=None, max_length=128)
    checkpoint_during: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    webhook: str | None = None
    multitask_strategy: str | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    after_seconds: float | None = None
    langsmith_tracer: dict[str, Any] | None = None
    strict_resume: bool | None = None


# -- requests -> runs ---------------------------------------------------------------------------


def _text(content: Any) -> str:
    """A message's content as text: a string, or text blocks joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                kind = block.get("type") if isinstance(block, dict) else type(block).__name__
                raise InvalidInput(
                    f"only text content is supported, not {kind!r} blocks",
                    field="input.messages",
                )
        return "\n".join(parts)
    raise InvalidInput("message content must be text", field="input.messages")


def _user_message(payload: dict[str, Any]) -> tuple[str, str | None]:
    """The one user message of a run input, as ``(text, message id)``."""
    extra = sorted(k for k, v in payload.items() if k != "messages" and v not in (None, [], "", {}))
    if extra:
        raise InvalidInput(
            f"a run's input takes only messages, not {extra}: state is written by the agent",
            field="input",
        )
    messages = payload.get("messages")
    if isinstance(messages, dict | str):
        messages = [messages]
    if not isinstance(messages, list) or len(messages) != 1:
        raise InvalidInput(
            "a run's input must hold exactly one user message: "
            '{"messages": [{"role": "user", "content": "..."}]}',
            field="input.messages",
        )
    message = messages[0]
    if isinstance(message, str):
        return message, None
    if not isinstance(message, dict):
        raise InvalidInput("a message must be an object", field="input.messages")
    role = message.get("role") or message.get("type")
    if role not in ("user", "human"):
        raise InvalidInput(
            f"a run's input message must come from the user, not {role!r}",
            field="input.messages",
        )
    message_id = message.get("id")
    return _text(message.get("content")), message_id if isinstance(message_id, str) else None


def _decisions(resume: Any) -> list[dict[str, Any]]:
    """``command.resume`` as decisions (see the module docstring)."""
    if isinstance(resume, str):
        if resume not in ("approve", "reject"):
            raise InvalidInput(
                'resume with "approve", "reject", a decision or {"decisions": [...]}',
                field="command.resume",
            )
        return [{"action": resume}]
    if isinstance(resume, dict) and "decisions" in resume:
        resume = resume["decisions"]
    elif isinstance(resume, dict):
        resume = [resume]
    if not isinstance(resume, list) or not all(isinstance(d, dict) for d in resume):
        raise InvalidInput("resume decisions must be objects", field="command.resume")
    return resume


def _stream_modes(body: RunCreate, default: tuple[str, ...] = ("values",)) -> tuple[str, ...]:
    modes = body.stream_mode
    requested = [modes] if isinstance(modes, str) else list(modes or default)
    unknown = sorted(set(requested) - set(STREAM_MODES))
    if unknown:
        raise InvalidInput(
            f"unknown stream mode(s) {unknown}", field="stream_mode", allowed=list(STREAM_MODES)
        )
    return tuple(dict.fromkeys(requested))


def _graph_modes(modes: tuple[str, ...]) -> tuple[str, ...]:
    """The LangGraph stream modes a set of API stream modes needs."""
    out = {"messages" if m == "messages-tuple" else m for m in modes} - {"events"}
    return tuple(sorted(out))


def _refuse_unsupported(body: RunCreate) -> None:
    if body.interrupt_before or body.interrupt_after:
        raise InvalidInput(
            "interrupt_before / interrupt_after are not supported: the only interrupt is the "
            "approval of tool calls configured on the agent (require_approval)",
            field="interrupt_before" if body.interrupt_before else "interrupt_after",
        )
    if body.webhook:
        raise InvalidInput("webhooks are not supported", field="webhook")
    if body.after_seconds:
        raise InvalidInput(
            "scheduled runs (after_seconds) are not supported", field="after_seconds"
        )
    if body.input is not None and body.command is not None:
        raise InvalidInput("give either input or command, not both", field="command")
    if body.command is not None:
        other = sorted(k for k, v in body.command.items() if k != "resume" and v is not None)
        if other:
            raise InvalidInput(
                f"command {other} is not supported; only command.resume is",
                field="command",
            )
        if body.command.get("resume") is None:
            raise InvalidInput("command needs a resume value", field="command.resume")


def _checkpoint_id(body: RunCreate) -> str | None:
    if body.checkpoint_id:
        return body.checkpoint_id
    for source in (body.checkpoint, ((body.config or {}).get("configurable") or {})):
        value = source.get("checkpoint_id") if isinstance(source, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


async def _thread(
    runtime: Runtime, who: Principal, thread_id: str, agent_id: str, create: bool
) -> Session:
    """The run's session: created if asked, bound to the run's agent if it has no messages."""
    try:
        session = await runtime.sessions.get(who.owner, thread_id)
    except NotFound:
        if not create:
            raise
        session, _ = await runtime.sessions.get_or_create(who.owner, thread_id, agent_id=agent_id)
    if session.agent_id != agent_id:
        session = await runtime.sessions.bind_agent(who.owner, thread_id, agent_id)
    return session


async def _run_request(
    runtime: Runtime,
    who: Principal,
    thread_id: str | None,
    body: RunCreate,
    stream_modes: tuple[str, ...],
) -> RunRequest:
    """Validate a run body and turn it into a :class:`RunRequest` (thread made if needed)."""
    _refuse_unsupported(body)
    agent_id = resolve_assistant_id(body.assistant_id)
    await runtime.templates.get(agent_id, owner=who.owner)  # NotFound for another's agent
    strategy = body.multitask_strategy or "reject"
    checkpoint_id = _checkpoint_id(body)
    content: str | None = None
    message_id: str | None = None
    decisions: list[dict[str, Any]] | None = None
    given = any(v not in (None, [], "", {}) for v in (body.input or {}).values())
    if body.command is not None:
        decisions = _decisions(body.command["resume"])
    elif given or checkpoint_id is None:
        # No input with a checkpoint: continue from it (Studio's "re-run from here").
        content, message_id = _user_message(body.input or {})
    temporary = thread_id is None and body.on_completion != "keep"
    if thread_id is None:
        if decisions is not None:
            raise InvalidInput("a resume needs a thread", field="command")
        thread_id = str(uuid.uuid4())
    session = await _thread(
        runtime, who, thread_id, agent_id, create=body.if_not_exists == "create" or temporary
    )
    if checkpoint_id is not None:
        # Only a checkpoint of the committed lineage can be run from (not another thread's).
        if not await runtime.threads.lineage(session, only=checkpoint_id, limit=1):
            raise NotFound(
                f"checkpoint {checkpoint_id!r} not found in thread {thread_id!r}",
                thread_id=thread_id,
                checkpoint_id=checkpoint_id,
            )
    turn = TurnRequest(
        content=content,
        decisions=decisions,
        roles=turn_roles(who, None),
        stream_modes=_graph_modes(stream_modes),
        checkpoint_id=checkpoint_id,
        metadata=body.metadata,
        message_id=message_id,
        durability=body.durability,
    )
    kwargs = body.model_dump(
        exclude_none=True, exclude={"assistant_id", "metadata", "multitask_strategy"}
    )
    kwargs["stream_mode"] = list(stream_modes)
    return RunRequest(
        owner=who.owner,
        session_id=thread_id,
        assistant_id=agent_id,
        turn=turn,
        multitask_strategy=strategy,  # type: ignore[arg-type]  # checked by the manager
        metadata=dict(body.metadata or {}),
        kwargs=kwargs,
        temporary=temporary,
    )


# -- runs and events -> JSON ------------------------------------------------------------------


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
        """JSON-ready data with no internal objects or ids."""
        data = jsonable(_strip(value))
        return _rename(data, self.thread_key, self.thread_id) if self.thread_key else data

    def translate(self, event: TurnEvent) -> list[tuple[str, Any]]:
        if event.type == "error":
            return [("error", {k: event.data.get(k) for k in ("error", "message")})]
        if event.type != "chunk":
            return []
        mode, data = event.data["mode"], event.data["data"]
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


def _sse(name: str, data: Any) -> ServerSentEvent:
    return ServerSentEvent(
        json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str), event=name
    )


async def _values_result(runtime: Runtime, run: Run) -> dict[str, Any]:
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


def _locations(run: Run, temporary: bool, tail: str) -> dict[str, str]:
    base = f"/threads/{run.session_id}/runs/{run.run_id}"
    if temporary:
        return {"Content-Location": base}
    return {"Content-Location": base, "Location": base + tail}


async def _stream_response(
    runtime: Runtime,
    request: RunRequest,
    handle: RunHandle,
    modes: tuple[str, ...],
    on_disconnect: str,
) -> EventSourceResponse:
    translator = EventTranslator(modes, request.session_id, handle.thread_key)
    run = handle.run

    async def body() -> AsyncIterator[ServerSentEvent]:
        finished = False
        try:
            yield _sse("metadata", {"run_id": run.run_id, "attempt": 1})
            async for event in handle.events():
                for name, data in translator.translate(event):
                    yield _sse(name, data)
            finished = True
            yield _sse("end", None)
        finally:
            if not finished and on_disconnect == "cancel":
                runtime.runs.cancel_soon(request.owner, request.session_id, run.run_id)

    return EventSourceResponse(
        body(),
        ping=15,
        headers={"Cache-Control": "no-cache", **_locations(run, request.temporary, "/stream")},
    )


async def _keepalive_json(result: asyncio.Future[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The JSON body once ``result`` is ready, with a newline every few seconds meanwhile
    (leading whitespace is valid JSON; it keeps proxies from timing the request out)."""
    while True:
        try:
            value = await asyncio.wait_for(asyncio.shield(result), timeout=_KEEPALIVE_SECONDS)
        except TimeoutError:
            yield b"\n"
            continue
        yield json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
        return


async def _wait_response(
    runtime: Runtime, request: RunRequest, handle: RunHandle, on_disconnect: str
) -> StreamingResponse:
    translator = EventTranslator(("values",), request.session_id, handle.thread_key)

    async def outcome() -> dict[str, Any]:
        last: dict[str, Any] | None = None
        async for event in handle.events():
            for name, data in translator.translate(event):
                if name == "error":
                    return {"__error__": data}
                if name == "values":
                    last = data
        return last if last is not None else await _values_result(runtime, handle.run)

    task = asyncio.ensure_future(outcome())

    async def body() -> AsyncIterator[bytes]:
        finished = False
        try:
            async for chunk in _keepalive_json(task):
                yield chunk
            finished = True
        finally:
            if not finished and on_disconnect == "cancel":
                runtime.runs.cancel_soon(request.owner, request.session_id, handle.run.run_id)

    return StreamingResponse(
        body(),
        media_type="application/json",
        headers=_locations(handle.run, request.temporary, "/join"),
    )


# -- routes -------------------------------------------------------------------------------------


async def _stream(
    runtime: Runtime, who: Principal, thread_id: str | None, body: RunCreate
) -> EventSourceResponse:
    modes = _stream_modes(body)
    request = await _run_request(runtime, who, thread_id, body, modes)
    handle = await runtime.runs.create(request, subscribe=True)
    return await _stream_response(runtime, request, handle, modes, body.on_disconnect or "continue")


async def _wait(
    runtime: Runtime, who: Principal, thread_id: str | None, body: RunCreate
) -> StreamingResponse:
    _stream_modes(body)  # validated, though the output is the final values
    request = await _run_request(runtime, who, thread_id, body, ("values",))
    handle = await runtime.runs.create(request, subscribe=True)
    return await _wait_response(runtime, request, handle, body.on_disconnect or "continue")


async def _background(
    runtime: Runtime, who: Principal, thread_id: str | None, body: RunCreate
) -> JSONResponse:
    # Live events for join-stream: the modes asked for, and the values always.
    modes = tuple(dict.fromkeys(("values", *_stream_modes(body))))
    request = await _run_request(runtime, who, thread_id, body, modes)
    handle = await runtime.runs.create(request)
    return JSONResponse(run_dict(handle.run), headers=_locations(handle.run, True, ""))


@router.post("/threads/{thread_id}/runs/stream", summary="Run on a thread, streaming (SSE)")
async def stream_run(
    thread_id: ThreadId, body: RunCreate, runtime: RuntimeDep, who: PrincipalDep
) -> EventSourceResponse:
    return await _stream(runtime, who, thread_id, body)


@router.post("/runs/stream", summary="Run on a new thread, streaming (SSE)")
async def stream_stateless_run(
    body: RunCreate, runtime: RuntimeDep, who: PrincipalDep
) -> EventSourceResponse:
    return await _stream(runtime, who, None, body)


@router.post("/threads/{thread_id}/runs/wait", summary="Run on a thread and wait for its output")
async def wait_run(
    thread_id: ThreadId, body: RunCreate, runtime: RuntimeDep, who: PrincipalDep
) -> StreamingResponse:
    return await _wait(runtime, who, thread_id, body)


@router.post("/runs/wait", summary="Run on a new thread and wait for its output")
async def wait_stateless_run(
    body: RunCreate, runtime: RuntimeDep, who: PrincipalDep
) -> StreamingResponse:
    return await _wait(runtime, who, None, body)


@router.post("/threads/{thread_id}/runs", summary="Start a background run on a thread")
async def create_run(
    thread_id: ThreadId, body: RunCreate, runtime: RuntimeDep, who: PrincipalDep
) -> JSONResponse:
    return await _background(runtime, who, thread_id, body)


@router.post("/runs", summary="Start a background run on a new thread")
async def create_stateless_run(
    body: RunCreate, runtime: RuntimeDep, who: PrincipalDep
) -> JSONResponse:
    return await _background(runtime, who, None, body)


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
    await runtime.runs.get(who.owner, thread_id, run_id)  # 404 before the body starts

    async def outcome() -> dict[str, Any]:
        return await _values_result(runtime, await runtime.runs.join(who.owner, thread_id, run_id))

    return StreamingResponse(
        _keepalive_json(asyncio.ensure_future(outcome())), media_type="application/json"
    )


@router.get("/threads/{thread_id}/runs/{run_id}/stream", summary="Join a run's stream (SSE)")
async def join_run_stream(
    thread_id: ThreadId,
    run_id: RunId,
    runtime: RuntimeDep,
    who: PrincipalDep,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    cancel_on_disconnect: bool = False,
) -> EventSourceResponse:
    run = await runtime.runs.get(who.owner, thread_id, run_id)
    session = await runtime.sessions.get(who.owner, thread_id)
    requested: list[str] = []
    for value in stream_mode or []:
        # The SDK repeats the parameter (and sends it empty for none); LangGraph also
        # accepts a JSON array in one value.
        if not value:
            continue
        parsed = json.loads(value) if value.startswith("[") else value
        requested.extend(parsed if isinstance(parsed, list) else [parsed])
    modes = _stream_modes(RunCreate(assistant_id="-", stream_mode=requested or None))
    if not requested:
        modes = tuple(run.kwargs.get("stream_mode") or ("values",))
    live = runtime.runs.live_events(run_id)
    translator = EventTranslator(modes, thread_id, session.thread_id)

    async def body() -> AsyncIterator[ServerSentEvent]:
        finished = False
        try:
            yield _sse("metadata", {"run_id": run_id, "attempt": 1})
            if live is not None:
                async for event in live:
                    for name, data in translator.translate(event):
                        yield _sse(name, data)
            else:
                # Not running here: the run's outcome once it ends (from any replica).
                ended = await runtime.runs.join(who.owner, thread_id, run_id)
                result = await _values_result(runtime, ended)
                if "__error__" in result:
                    yield _sse("error", result["__error__"])
                elif "values" in modes:
                    yield _sse("values", result)
            finished = True
            yield _sse("end", None)
        finally:
            if not finished and cancel_on_disconnect:
                runtime.runs.cancel_soon(who.owner, thread_id, run_id)

    return EventSourceResponse(body(), ping=15, headers={"Cache-Control": "no-cache"})


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
    run = await runtime.runs.join(who.owner, thread_id, run_id)
    return JSONResponse(await _values_result(runtime, run))


@router.delete("/threads/{thread_id}/runs/{run_id}", summary="Delete an ended run", status_code=204)
async def delete_run(
    thread_id: ThreadId, run_id: RunId, runtime: RuntimeDep, who: PrincipalDep
) -> Response:
    await runtime.runs.delete(who.owner, thread_id, run_id)
    return Response(status_code=204)
