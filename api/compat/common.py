"""Shared pieces of the LangGraph Server API surface: id mapping and serialisers.

Assistants are agent templates, threads are sessions (``thread_id`` is the session id, never
the checkpointer's internal thread id), thread state is the graph state at the session's
committed checkpoint. Every function here returns JSON-ready values, so the same dicts can
go into JSON responses and SSE events alike.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Interrupt, StateSnapshot
from pydantic import BaseModel

from runtime import Runtime
from runtime.agents import SYSTEM_OWNER, AgentTemplate
from runtime.memo import PerObject, message_version
from runtime.sessions import Session, SessionState, StateFilter

__all__ = [
    "NEVER_STATUS",
    "THREAD_STATUSES",
    "assistant_dict",
    "checkpoint_dict",
    "interrupt_dict",
    "iso",
    "json_bytes",
    "jsonable",
    "load_thread",
    "resolve_assistant_id",
    "state_dict",
    "thread_status",
]


def resolve_assistant_id(runtime: Runtime, assistant_id: str) -> str:
    """The agent id an assistant id names: a graph id means that graph's system agent."""
    return runtime.graph_agent_id(assistant_id) or assistant_id


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True)


# A message is dumped once for as long as it lives (a run's answer holds the whole history).
_dumped_message = PerObject(_dump, message_version)


def _encode(value: Any) -> Any:
    # What orjson cannot encode itself: pydantic models (messages) as FastAPI encodes them,
    # anything else (sets, bytes, Decimal, pydantic v1 models...) by FastAPI's own encoder.
    if isinstance(value, BaseMessage):
        return _dumped_message(value)
    if isinstance(value, BaseModel):
        return _dump(value)
    return jsonable_encoder(value)


_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS


def json_bytes(value: Any) -> bytes:
    """``value`` as JSON, encoded as :func:`jsonable` encodes it."""
    try:
        return orjson.dumps(value, default=_encode, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):  # e.g. an integer beyond 64 bits
        text = json.dumps(jsonable_encoder(value), separators=(",", ":"), ensure_ascii=False)
        return text.encode()


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: messages and other models as their ``model_dump``.

    FastAPI's ``jsonable_encoder`` gives the same data, but walks it in Python (a run's whole
    state, every step); this encodes it with orjson and reads it back (FastAPI's encoder
    for what orjson refuses, e.g. integers beyond 64 bits, which it would read back as floats).
    """
    try:
        return orjson.loads(orjson.dumps(value, default=_encode, option=_OPTIONS))
    except (orjson.JSONEncodeError, TypeError):
        return jsonable_encoder(value)


def iso(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 text."""
    return value.isoformat() if value is not None else None


def assistant_dict(template: AgentTemplate) -> dict[str, Any]:
    """An agent template as a LangGraph assistant.

    ``metadata`` is the template's, plus ``{"created_by": "system"}`` for system templates;
    ``config.configurable`` is what the graph reads there
    (:meth:`~runtime.agents.TemplateSpec.configurable_values`); ``context`` the template's.
    """
    spec = template.spec
    metadata = dict(spec.metadata)
    if template.owner == SYSTEM_OWNER:
        metadata["created_by"] = "system"
    return {
        "assistant_id": template.agent_id,
        "graph_id": spec.graph,
        "config": {"configurable": jsonable(spec.configurable_values())},
        "context": jsonable(spec.context),
        "metadata": jsonable(metadata),
        "version": template.version,
        "name": spec.name,
        "description": spec.description or None,
        "created_at": iso(template.created_at),
        "updated_at": iso(template.updated_at),
    }


def checkpoint_dict(config: RunnableConfig | None, thread_id: str) -> dict[str, Any] | None:
    """A checkpoint reference as the API shows it, under the public ``thread_id``."""
    configurable = (config or {}).get("configurable") or {}
    checkpoint_id = configurable.get("checkpoint_id")
    if not checkpoint_id:
        return None
    return {
        "thread_id": thread_id,
        "checkpoint_ns": configurable.get("checkpoint_ns") or "",
        "checkpoint_id": checkpoint_id,
        "checkpoint_map": configurable.get("checkpoint_map"),
    }


def interrupt_dict(interrupt: Interrupt) -> dict[str, Any]:
    """An interrupt: its ``id`` and ``value`` (our approval node: ``{"pending": [...]}``)."""
    return {"id": interrupt.id, "value": jsonable(interrupt.value)}


def state_dict(snapshot: StateSnapshot, thread_id: str) -> dict[str, Any]:
    """A state snapshot as a LangGraph ``ThreadState``.

    ``thread_id`` is the public id (the session id) written into every checkpoint reference.
    """
    checkpoint = checkpoint_dict(snapshot.config, thread_id)
    parent = checkpoint_dict(snapshot.parent_config, thread_id)
    return {
        "values": jsonable(snapshot.values),
        "next": list(snapshot.next),
        "tasks": [
            {
                "id": task.id,
                "name": task.name,
                "path": jsonable(task.path),
                "error": None if task.error is None else repr(task.error),
                "interrupts": [interrupt_dict(i) for i in task.interrupts],
                "checkpoint": None,
                # With subgraphs=true, a pending subgraph task's own state.
                "state": state_dict(task.state, thread_id)
                if isinstance(task.state, StateSnapshot)
                else None,
                "result": jsonable(task.result),
            }
            for task in snapshot.tasks
        ],
        "metadata": jsonable(snapshot.metadata),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "interrupts": [interrupt_dict(i) for i in snapshot.interrupts],
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }


# LangGraph's thread statuses and the session states (search filters) they name:
# ``interrupted`` is paused for a resume or stopped at a static breakpoint.
THREAD_STATUSES: dict[str, StateFilter] = {
    "idle": "idle",
    "busy": "running",
    "interrupted": "paused",
}
# LangGraph's status that no session is in (errors are never recorded): matches nothing.
NEVER_STATUS = "error"
_STATUS_OF_STATE: dict[SessionState, str] = {
    "idle": "idle",
    "running": "busy",
    "awaiting_approval": "interrupted",
    "interrupted": "interrupted",
}


def thread_status(session: Session) -> str:
    """``busy`` while a turn holds the lease, ``interrupted`` while awaiting approval (a
    resume) or stopped at a static breakpoint, or ``idle``."""
    return _STATUS_OF_STATE[session.state]


def thread_metadata(session: Session) -> dict[str, Any]:
    """The session's metadata plus the ``graph_id`` and ``assistant_id`` clients filter on."""
    return {**session.metadata, "graph_id": session.graph, "assistant_id": session.agent_id}


def thread_dict(session: Session, snapshot: StateSnapshot | None = None) -> dict[str, Any]:
    """A session as a LangGraph ``Thread``; ``values`` and ``interrupts`` from ``snapshot``
    (the committed state), empty without one."""
    interrupts: dict[str, list[dict[str, Any]]] = {}
    if snapshot is not None:
        for task in snapshot.tasks:
            if task.interrupts:
                interrupts[task.id] = [interrupt_dict(i) for i in task.interrupts]
    return {
        "thread_id": session.session_id,
        "created_at": iso(session.created_at),
        "updated_at": iso(session.last_activity_at),
        "state_updated_at": iso(session.last_activity_at),
        "metadata": jsonable(thread_metadata(session)),
        "status": thread_status(session),
        "config": {},
        "values": jsonable(snapshot.values) if snapshot is not None else {},
        "interrupts": interrupts,
    }


async def load_thread(runtime: Runtime, session: Session) -> dict[str, Any]:
    """The session as a ``Thread`` with its committed values and pending interrupts."""
    return thread_dict(session, await runtime.threads.state(session))
