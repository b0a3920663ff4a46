"""A turn's value types: what starts it (:class:`TurnRequest`), what it streams
(:class:`TurnEvent`) and what it returns (:class:`TurnResult`), and messages as the API
shows them (:func:`message_to_dict`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from langchain_core.messages import AIMessage, BaseMessage

from runtime.sessions import ReleaseStep
from runtime.turns.content import Content
from runtime.turns.guards import BudgetLimits

__all__ = [
    "Durability",
    "Emit",
    "TurnEvent",
    "TurnRequest",
    "TurnResult",
    "emit_message",
    "message_to_dict",
    "now_stamp",
    "shown_content",
]

Durability = Literal["exit", "async", "sync"]

EventType = Literal[
    "token",
    "tool_call",
    "tool_result",
    "message",
    "approval_required",
    "interrupt",
    "chunk",
    "usage",
    "done",
    "error",
]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def now_stamp() -> str:
    """The current time as a message's ``created_at`` stamp (UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def shown_content(message: BaseMessage) -> Content:
    """A message's content as the API shows it: its text when it is plain text (a string, or
    only text blocks), else its list of content blocks as stored (images, files, ...)."""
    content = message.content
    if isinstance(content, str) or all(
        isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text") for b in content
    ):
        return message.text
    return [b if isinstance(b, dict) else {"type": "text", "text": b} for b in content]


def message_to_dict(message: BaseMessage) -> dict[str, Any]:
    """A message as the API shows it: role, content (text, or blocks when it has media; see
    :func:`shown_content`), tool calls and tool results."""
    out: dict[str, Any] = {
        "id": message.id,
        "role": _ROLES.get(message.type, message.type),
        "content": shown_content(message),
        "created_at": message.response_metadata.get("created_at"),
    }
    if isinstance(message, AIMessage) and message.tool_calls:
        out["tool_calls"] = [
            {"id": c["id"], "name": c["name"], "args": c["args"]} for c in message.tool_calls
        ]
    if message.type == "tool":
        out["tool_call_id"] = getattr(message, "tool_call_id", None)
        out["name"] = message.name
        out["status"] = getattr(message, "status", "success")
    # Set by runtime.threads.messages: a message's own metadata and its edits.
    for key in ("metadata", "edited_at", "revisions"):
        if key in message.response_metadata:
            out[key] = message.response_metadata[key]
    return out


@dataclass(frozen=True)
class TurnEvent:
    """One streamed event: its type and a JSON-ready payload."""

    type: EventType
    data: dict[str, Any]


Emit: TypeAlias = Callable[[TurnEvent], None]


def emit_message(emit: Emit, message: BaseMessage) -> None:
    """Emit a complete message: its tool calls or its tool result first, then the message."""
    as_dict = message_to_dict(message)
    if isinstance(message, AIMessage):
        for call in as_dict.get("tool_calls", []):
            emit(TurnEvent("tool_call", call))
    elif message.type == "tool":
        emit(TurnEvent("tool_result", as_dict))
    emit(TurnEvent("message", as_dict))


@dataclass
class TurnResult:
    """What a completed turn returns."""

    session_id: str
    reply: str
    messages: list[dict[str, Any]]
    usage: dict[str, int]
    latency_ms: float
    model_latency_ms: float
    warnings: list[str] = field(default_factory=list)
    # "awaiting_approval": the turn paused on tool calls that need a human decision
    # (``pending_approvals``); resume it with decisions to finish it. "interrupted": the graph
    # called ``interrupt()`` (``interrupts``): resume it with a value; or, with no
    # ``interrupts``, it stopped at a static breakpoint: resume it with nothing.
    status: Literal["completed", "awaiting_approval", "interrupted"] = "completed"
    pending_approvals: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (its lists shared, not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TurnRequest:
    """What starts or continues a turn: a user message (``content``) or any input the graph
    accepts (``input``), decisions on pending calls, or a value for a graph's own
    ``interrupt()``."""

    # A string or a list of content blocks (runtime.turns.content; checked by the runner).
    content: Content | None = None
    decisions: list[dict[str, Any]] | None = None
    # The graph's input as its input schema takes it (``{"messages": [...], "topic": ...}``);
    # messages may be dicts in any form LangChain converts. Instead of ``content``.
    input: Mapping[str, Any] | None = None
    # Resume a graph's own ``interrupt()`` with this value (``decisions`` answer approvals).
    resume_value: Any = None
    # Stream subgraphs' parts too (chunk events then carry their namespace).
    subgraphs: bool = False
    # This run's own configurable keys and context, over the agent's (the LangGraph API's run
    # config and context); the runtime's reserved keys are dropped.
    configurable: Mapping[str, Any] | None = None
    context: Mapping[str, Any] | None = None
    roles: frozenset[str] | None = None  # None: every tool (library use, admins)
    budgets: BudgetLimits | None = None
    # LangGraph stream modes ("values", "updates", "messages", "debug", "custom", ...) whose
    # raw parts are emitted as ``chunk`` events while streaming.
    stream_modes: tuple[str, ...] = ()
    # Run from this (committed) checkpoint of the thread instead of the latest one: a fork.
    # With neither content nor decisions, the graph continues from it with no new input.
    checkpoint_id: str | None = None
    run_id: str | None = None  # a UUID: the LangChain run id of the graph invocation
    metadata: Mapping[str, Any] | None = None  # added to the run's (and checkpoints') metadata
    message_id: str | None = None  # the id of the user message (generated when None)
    # The session's agent: a missing session is created for it, one of another agent is a
    # Conflict (chat widgets send it with every message).
    agent_id: str | None = None
    # When this turn's checkpoints are written; None: the runner's default.
    durability: Durability | None = None
    # Continue a session stopped at a static breakpoint, with no input.
    proceed: bool = False
    # Stop before / after these nodes ("*": every node), as LangGraph's run options.
    interrupt_before: str | tuple[str, ...] | None = None
    interrupt_after: str | tuple[str, ...] | None = None
    # A retry with the same key (and request) returns the first attempt's result instead of
    # running again (runtime.turns.retries); the hash of the request is set by the runner.
    idempotency_key: str | None = None
    request_hash: str | None = None
    # What the turn's release also commits: its run's record of it, which refuses the commit
    # once the run has ended without it (runtime.runs.orphans). None: a turn with no run.
    run_end: ReleaseStep | None = None

    @property
    def resume(self) -> bool:
        """Answers a paused turn: approval decisions, or a value for the graph's interrupt."""
        return self.decisions is not None or self.resume_value is not None

    @property
    def replay(self) -> bool:
        """Continue from ``checkpoint_id`` (or, to ``proceed``, the latest) without input."""
        return (
            self.content is None
            and self.input is None
            and not self.resume
            and (self.checkpoint_id is not None or self.proceed)
        )
