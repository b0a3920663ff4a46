"""LangGraph Server API: threads, which are sessions, and their state and history.

A thread id is a session id of the caller's owner (another owner's thread is 404). A thread
made here is a session of the default agent, or of the agent named by
``metadata.assistant_id``; thread metadata shows ``graph_id`` and ``assistant_id`` besides
the session's own. State is read at the session's committed checkpoint and only
checkpoints in its lineage can be named; state updates run under the session's lease (see
:mod:`runtime.sessions.state`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.compat.common import (
    NEVER_STATUS,
    THREAD_STATUSES,
    checkpoint_dict,
    load_thread,
    resolve_assistant_id,
    state_dict,
)
from api.deps import PrincipalDep, RuntimeDep
from runtime import Runtime
from runtime.agents import DEFAULT_AGENT_ID
from runtime.db import MAX_OFFSET_LIMIT
from runtime.errors import Conflict, InvalidInput, NotFound
from runtime.keys import Principal
from runtime.sessions import Session, SessionSortKey, StateFilter
from runtime.threads import DEFAULT_HISTORY

router = APIRouter(tags=["langgraph: threads"])

ThreadId = Annotated[str, Path(min_length=1, max_length=128)]
CheckpointId = Annotated[str, Path(min_length=1, max_length=128)]
Status = Literal["idle", "busy", "interrupted", "error"]
SortBy = Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"]
# Metadata keys the surface derives from the session instead of storing.
_DERIVED_KEYS = ("graph_id", "assistant_id")
# LangGraph's thread sort keys and the session sort keys they name.
THREAD_SORT_KEYS: dict[str, SessionSortKey] = {
    "thread_id": "session_id",
    "created_at": "created_at",
    "updated_at": "last_activity_at",
    "state_updated_at": "last_activity_at",
    "status": "state",
}


class _Lenient(BaseModel):
    # Clients send fields this server has no use for: ignore them.
    model_config = ConfigDict(extra="ignore")


class StateUpdate(_Lenient):
    """One update of a superstep: values written as if ``as_node`` returned them."""

    values: dict[str, Any] | None = None
    as_node: str | None = None
    command: dict[str, Any] | None = None


class Superstep(_Lenient):
    """A group of state updates applied when a thread is created."""

    updates: list[StateUpdate] = Field(default_factory=list, max_length=100)


class ThreadCreate(_Lenient):
    """``POST /threads``."""

    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    supersteps: list[Superstep] | None = Field(default=None, max_length=100)
    ttl: dict[str, Any] | int | float | None = None


class ThreadPatch(_Lenient):
    """``PATCH /threads/{thread_id}``."""

    metadata: dict[str, Any] | None = None
    ttl: dict[str, Any] | int | float | None = None


class ThreadSearch(_Lenient):
    """``POST /threads/search``."""

    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: Status | None = None
    ids: list[str] | None = Field(default=None, max_length=1000)
    limit: int = Field(default=10, ge=1, le=MAX_OFFSET_LIMIT)
    offset: int = Field(default=0, ge=0)
    sort_by: SortBy | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class ThreadCount(_Lenient):
    """``POST /threads/count``."""

    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: Status | None = None


class CheckpointRef(_Lenient):
    """A checkpoint as clients name it (``thread_id`` is ignored: the path's counts)."""

    checkpoint_id: str | None = Field(default=None, max_length=128)
    checkpoint_ns: str | None = Field(default="", max_length=500)
    thread_id: str | None = None


class StateAtCheckpoint(_Lenient):
    """``POST /threads/{thread_id}/state/checkpoint``."""

    checkpoint: CheckpointRef
    subgraphs: bool = False


class ThreadStateUpdate(_Lenient):
    """``POST /threads/{thread_id}/state``."""

    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = Field(default=None, max_length=200)
    checkpoint_id: str | None = Field(default=None, max_length=128)
    checkpoint: CheckpointRef | None = None


class HistorySearch(_Lenient):
    """``POST /threads/{thread_id}/history``."""

    limit: int = Field(default=DEFAULT_HISTORY, ge=1)
    before: str | CheckpointRef | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None


def _ttl_seconds(ttl: dict[str, Any] | float | None) -> int | None:
    """LangGraph's thread TTL (minutes, or ``{"ttl": minutes, "strategy": "delete"}``)."""
    if ttl is None:
        return None
    minutes = ttl.get("ttl") if isinstance(ttl, dict) else ttl
    if isinstance(ttl, dict) and ttl.get("strategy", "delete") != "delete":
        raise InvalidInput("only the 'delete' ttl strategy is supported", field="ttl")
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes <= 0:
        raise InvalidInput("ttl must be a positive number of minutes", field="ttl")
    return max(1, round(minutes * 60))


def _split_metadata(metadata: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(stored, derived)``: the session's own keys and the ``graph_id`` / ``assistant_id``
    the surface derives from the session."""
    stored = {k: v for k, v in (metadata or {}).items() if k not in _DERIVED_KEYS}
    derived = {k: v for k, v in (metadata or {}).items() if k in _DERIVED_KEYS}
    return stored, derived


def _checkpoint_ns(ref: CheckpointRef | None) -> None:
    if ref is not None and ref.checkpoint_ns:
        raise NotFound(
            f"checkpoint namespace {ref.checkpoint_ns!r} not found: the graph has no subgraphs"
        )


def _before_id(before: str | CheckpointRef | dict[str, Any] | None) -> str | None:
    if before is None or isinstance(before, str):
        return before or None
    if isinstance(before, CheckpointRef):
        return before.checkpoint_id
    configurable = before.get("configurable") if "configurable" in before else before
    value = (configurable or {}).get("checkpoint_id")
    if value is not None and not isinstance(value, str):
        raise InvalidInput("before.checkpoint_id must be a string", field="before")
    return value


def _sort_key(sort_by: str) -> SessionSortKey:
    """The session sort key a thread sort key names."""
    if sort_by not in THREAD_SORT_KEYS:
        raise InvalidInput(
            f"cannot sort by {sort_by!r}", field="sort_by", allowed=sorted(THREAD_SORT_KEYS)
        )
    return THREAD_SORT_KEYS[sort_by]


def _state(status: str | None) -> StateFilter | None:
    """The session state a thread status filter names (None: no filter, or ``error``)."""
    if status is not None and status not in THREAD_STATUSES and status != NEVER_STATUS:
        raise InvalidInput(
            "status must be idle, busy, interrupted or error",
            field="status",
            allowed=sorted([*THREAD_STATUSES, NEVER_STATUS]),
        )
    return THREAD_STATUSES.get(status) if status is not None else None


def _matches_nothing(status: str | None) -> bool:
    """Whether a thread status filter excludes every session (no session is ever ``error``)."""
    return status == NEVER_STATUS


def _agent_filter(runtime: Runtime, assistant: Any) -> str | None:
    return None if assistant is None else resolve_assistant_id(runtime, str(assistant))


def _graph_filter(derived: dict[str, Any]) -> str | None:
    graph_id = derived.get("graph_id")
    return None if graph_id is None else str(graph_id)


async def _session(runtime: Runtime, principal: Principal, thread_id: str) -> Session:
    return await runtime.sessions.get(principal.owner, thread_id)


async def _apply_supersteps(
    runtime: Runtime, owner: str, thread_id: str, supersteps: list[Superstep]
) -> None:
    for step in supersteps:
        for update in step.updates:
            if update.command is not None:
                raise InvalidInput(
                    "commands in supersteps are not supported; send values", field="supersteps"
                )
            await runtime.threads.update(owner, thread_id, update.values, as_node=update.as_node)


@router.post("/threads", summary="Create a thread (a session)")
async def create_thread(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    body: Annotated[ThreadCreate | None, Body()] = None,
) -> dict[str, Any]:
    body = body or ThreadCreate()
    metadata, derived = _split_metadata(body.metadata)
    assistant = derived.get("assistant_id")
    agent_id = (
        resolve_assistant_id(runtime, assistant) if isinstance(assistant, str) else DEFAULT_AGENT_ID
    )
    thread_id = body.thread_id or str(uuid.uuid4())
    ttl = _ttl_seconds(body.ttl)
    try:
        session, created = await runtime.sessions.get_or_create(
            principal.owner, thread_id, agent_id=agent_id, metadata=metadata, ttl_seconds=ttl
        )
    except Conflict:
        if body.if_exists != "do_nothing":
            raise Conflict(f"thread {thread_id!r} already exists", thread_id=thread_id) from None
        session, created = await _session(runtime, principal, thread_id), False
    if not created:
        if body.if_exists != "do_nothing":
            raise Conflict(f"thread {thread_id!r} already exists", thread_id=thread_id)
        return await load_thread(runtime, session)
    if body.supersteps:
        await _apply_supersteps(runtime, principal.owner, thread_id, body.supersteps)
        session = await _session(runtime, principal, thread_id)
    return await load_thread(runtime, session)


@router.post("/threads/search", summary="Search threads")
async def search_threads(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    response: Response,
    body: Annotated[ThreadSearch | None, Body()] = None,
) -> list[dict[str, Any]]:
    body = body or ThreadSearch()
    if body.values:
        raise InvalidInput("searching threads by values is not supported", field="values")
    metadata, derived = _split_metadata(body.metadata)
    assistant = derived.get("assistant_id")
    sort_by = _sort_key(body.sort_by or "created_at")
    state = _state(body.status)
    if _matches_nothing(body.status):
        sessions: list[Session] = []
        more = False
    else:
        sessions, more = await runtime.sessions.search(
            owner=principal.owner,
            agent_id=_agent_filter(runtime, assistant),
            metadata=metadata or None,
            ids=body.ids,
            state=state,
            graph=_graph_filter(derived),
            limit=body.limit,
            offset=body.offset,
            sort_by=sort_by,
            sort_order=body.sort_order or "desc",
        )
    if more:
        response.headers["X-Pagination-Next"] = str(body.offset + len(sessions))
        response.headers["X-Pagination-Total"] = str(body.offset + len(sessions) + 1)
    else:
        response.headers["X-Pagination-Total"] = str(body.offset + len(sessions))
    threads = [await load_thread(runtime, s) for s in sessions]
    if body.select:
        threads = [{k: v for k, v in t.items() if k in body.select} for t in threads]
    return threads


@router.post("/threads/count", summary="Count threads")
async def count_threads(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    body: Annotated[ThreadCount | None, Body()] = None,
) -> int:
    body = body or ThreadCount()
    if body.values:
        raise InvalidInput("counting threads by values is not supported", field="values")
    metadata, derived = _split_metadata(body.metadata)
    assistant = derived.get("assistant_id")
    state = _state(body.status)
    if _matches_nothing(body.status):
        return 0
    return await runtime.sessions.count(
        owner=principal.owner,
        agent_id=_agent_filter(runtime, assistant),
        metadata=metadata or None,
        state=state,
        graph=_graph_filter(derived),
    )


@router.get("/threads/{thread_id}", summary="Get a thread")
async def get_thread(
    runtime: RuntimeDep, principal: PrincipalDep, thread_id: ThreadId
) -> dict[str, Any]:
    return await load_thread(runtime, await _session(runtime, principal, thread_id))


@router.patch("/threads/{thread_id}", summary="Merge metadata into a thread (or set its ttl)")
async def patch_thread(
    runtime: RuntimeDep, principal: PrincipalDep, thread_id: ThreadId, body: ThreadPatch
) -> dict[str, Any]:
    session = await _session(runtime, principal, thread_id)
    changes: dict[str, Any] = {}
    if body.metadata is not None:
        metadata, _ = _split_metadata(body.metadata)
        changes["metadata"] = {**session.metadata, **metadata}
    ttl = _ttl_seconds(body.ttl)
    if ttl is not None:
        changes["ttl_seconds"] = ttl
    if changes:
        session = await runtime.sessions.update(principal.owner, thread_id, **changes)
    return await load_thread(runtime, session)


@router.delete("/threads/{thread_id}", status_code=204, summary="Delete a thread")
async def delete_thread(
    runtime: RuntimeDep, principal: PrincipalDep, thread_id: ThreadId
) -> Response:
    await runtime.runs.delete_thread(principal.owner, thread_id)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/state", summary="The thread's committed state")
async def get_thread_state(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    thread_id: ThreadId,
    subgraphs: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    session = await _session(runtime, principal, thread_id)
    return state_dict(await runtime.threads.state(session, subgraphs=subgraphs), thread_id)


@router.get(
    "/threads/{thread_id}/state/{checkpoint_id}", summary="The thread's state at a checkpoint"
)
async def get_thread_state_at(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    thread_id: ThreadId,
    checkpoint_id: CheckpointId,
    subgraphs: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    session = await _session(runtime, principal, thread_id)
    snapshot = await runtime.threads.state(session, checkpoint_id, subgraphs=subgraphs)
    return state_dict(snapshot, thread_id)


@router.post("/threads/{thread_id}/state/checkpoint", summary="The thread's state at a checkpoint")
async def post_thread_state_at(
    runtime: RuntimeDep, principal: PrincipalDep, thread_id: ThreadId, body: StateAtCheckpoint
) -> dict[str, Any]:
    _checkpoint_ns(body.checkpoint)
    session = await _session(runtime, principal, thread_id)
    snapshot = await runtime.threads.state(
        session, body.checkpoint.checkpoint_id, subgraphs=body.subgraphs
    )
    return state_dict(snapshot, thread_id)


@router.post("/threads/{thread_id}/state", summary="Update the thread's state")
async def update_thread_state(
    runtime: RuntimeDep, principal: PrincipalDep, thread_id: ThreadId, body: ThreadStateUpdate
) -> dict[str, Any]:
    _checkpoint_ns(body.checkpoint)
    base = body.checkpoint_id or (body.checkpoint.checkpoint_id if body.checkpoint else None)
    checkpoint_id = await runtime.threads.update(
        principal.owner, thread_id, body.values, as_node=body.as_node, checkpoint_id=base
    )
    checkpoint = checkpoint_dict({"configurable": {"checkpoint_id": checkpoint_id}}, thread_id)
    return {"checkpoint": checkpoint}


async def _history(
    runtime: Runtime,
    principal: Principal,
    thread_id: str,
    *,
    limit: int,
    before: str | None,
    metadata: dict[str, Any] | None = None,
    checkpoint: CheckpointRef | None = None,
) -> list[dict[str, Any]]:
    session = await _session(runtime, principal, thread_id)
    if checkpoint is not None and checkpoint.checkpoint_ns:
        return []  # no subgraphs, so no states in any other namespace
    states = await runtime.threads.history(
        session,
        limit=limit,
        before=before,
        checkpoint_id=checkpoint.checkpoint_id if checkpoint else None,
        metadata=metadata,
    )
    return [state_dict(s, thread_id) for s in states]


@router.post("/threads/{thread_id}/history", summary="Past states, newest first (at most 100)")
async def post_thread_history(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    thread_id: ThreadId,
    body: Annotated[HistorySearch | None, Body()] = None,
) -> list[dict[str, Any]]:
    body = body or HistorySearch()
    return await _history(
        runtime,
        principal,
        thread_id,
        limit=body.limit,
        before=_before_id(body.before),
        metadata=body.metadata,
        checkpoint=body.checkpoint,
    )


@router.get("/threads/{thread_id}/history", summary="Past states, newest first (at most 100)")
async def get_thread_history(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    thread_id: ThreadId,
    limit: Annotated[int, Query(ge=1)] = DEFAULT_HISTORY,
    before: Annotated[str | None, Query(max_length=128)] = None,
) -> list[dict[str, Any]]:
    return await _history(runtime, principal, thread_id, limit=limit, before=before)
