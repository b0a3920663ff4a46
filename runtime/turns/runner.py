"""Running one turn: lease the session, run its compiled graph, record usage, release.

Two entry points share one body: :meth:`TurnRunner.run` returns a :class:`TurnResult`;
:meth:`TurnRunner.stream` yields :class:`TurnEvent` s (``token``, ``tool_call``,
``tool_result``, ``message``, ``usage``, then ``done`` or ``error``). A request naming
``stream_modes`` also gets LangGraph's raw stream parts of those modes as ``chunk`` events
(``{"mode", "data"}``), for the LangGraph Server API surface.

The graph runs in a task of its own, detached from the caller: if an HTTP client goes
away mid-stream, the turn still finishes and its session stays consistent instead of
stopping half-written. The runner keeps those tasks so shutdown can wait for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import openai
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from runtime.agents import Budgets, GraphCache
from runtime.checkpoints import EXPECTED_CHECKPOINT, Write, deferring_writes
from runtime.errors import (
    Conflict,
    InvalidInput,
    LeaseLost,
    ModelBadResponse,
    ModelRateLimited,
    ModelRejected,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    SessionExpired,
    SessiongraphError,
    TurnFailed,
)
from runtime.keys import ADMIN_ROLE
from runtime.sessions import Lease, SessionStore, TurnCounters
from runtime.tools import ToolRegistry, ToolSpec
from runtime.turns.constants import AGENT_NODE, CONFIG_KEY_GUARD
from runtime.turns.guards import (
    BudgetLimits,
    ToolRecords,
    TurnGuard,
    effective_budgets,
    template_tools,
)

__all__ = [
    "MAX_MESSAGE_CHARS",
    "GuardOptions",
    "TurnEvent",
    "TurnRequest",
    "TurnResult",
    "TurnRunner",
    "message_to_dict",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 32_000

Durability = Literal["exit", "async", "sync"]

EventType = Literal[
    "token",
    "tool_call",
    "tool_result",
    "message",
    "approval_required",
    "chunk",
    "usage",
    "done",
    "error",
]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def message_to_dict(message: BaseMessage) -> dict[str, Any]:
    """A message as the API shows it: role, text content, tool calls and tool results."""
    out: dict[str, Any] = {
        "id": message.id,
        "role": _ROLES.get(message.type, message.type),
        "content": message.text,
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
    return out


@dataclass(frozen=True)
class TurnEvent:
    """One streamed event: its type and a JSON-ready payload."""

    type: EventType
    data: dict[str, Any]


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
    # (``pending_approvals``); resume it with decisions to finish it.
    status: Literal["completed", "awaiting_approval"] = "completed"
    pending_approvals: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ModelTimer(BaseCallbackHandler):
    """Adds up wall time spent inside chat-model calls during one turn."""

    run_inline = True

    def __init__(self) -> None:
        self._started: dict[UUID, float] = {}
        self.total = 0.0

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._started[run_id] = time.perf_counter()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        started = self._started.pop(run_id, None)
        if started is not None:
            self.total += time.perf_counter() - started

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.on_llm_end(LLMResult(generations=[]), run_id=run_id)


def _updated_messages(update: Any) -> list[BaseMessage]:
    """Messages a node wrote, whether it returned a dict or (tools) a list of updates."""
    parts = update if isinstance(update, list) else [update]
    out: list[BaseMessage] = []
    for part in parts:
        if isinstance(part, dict):
            value = part.get("messages") or []
            out.extend(m for m in (value if isinstance(value, list) else [value]))
    return [m for m in out if isinstance(m, BaseMessage)]


@dataclass(frozen=True)
class TurnRequest:
    """What starts or continues a turn: a user message, or decisions on pending calls."""

    content: str | None = None
    decisions: list[dict[str, Any]] | None = None
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

    @property
    def resume(self) -> bool:
        return self.decisions is not None

    @property
    def replay(self) -> bool:
        """Continue from ``checkpoint_id`` without new input."""
        return self.content is None and self.decisions is None and self.checkpoint_id is not None


@dataclass(frozen=True)
class GuardOptions:
    """Process-wide knobs of the per-turn guard."""

    records: ToolRecords | None = None
    tool_timeout_seconds: float = 30.0
    model_retries: int = 2
    retry_backoff_seconds: float = 0.5


class TurnRunner:
    """Runs turns against the session store and the compiled-graph cache."""

    def __init__(
        self,
        sessions: SessionStore,
        graphs: GraphCache,
        tools: ToolRegistry | None = None,
        guard_options: GuardOptions | None = None,
        durability: Durability = "exit",
    ) -> None:
        """
        Args:
            durability: when checkpoints are written. ``"exit"`` (the default): one per turn,
                when the graph run ends or pauses. A turn is all-or-nothing anyway (one that
                dies half-way is rolled back to the session's committed checkpoint), so
                per-step checkpoints (``"async"``, ``"sync"``) only add writes, each
                rewriting every message, unless you want step-by-step time travel.
        """
        self._sessions = sessions
        self._graphs = graphs
        self._tools = tools or ToolRegistry()
        self._options = guard_options or GuardOptions()
        self._durability: Durability = durability
        self._policies: dict[tuple[str, int], tuple[Budgets, dict[str, ToolSpec]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Called after every turn with (agent_id, outcome, seconds); outcome is "ok" or the
        # error code. The HTTP layer feeds its metrics from here.
        self.listeners: list[Callable[[str, str, float], None]] = []

    @property
    def in_flight(self) -> int:
        """Turns currently running in this process."""
        return len(self._tasks)

    async def run(self, owner: str, session_id: str, request: TurnRequest) -> TurnResult:
        """Run one user message (or a resume) through the session's graph; return the result."""
        lease = await self._begin(owner, session_id, request)
        task = self._spawn(self._execute(lease, request, None))
        # shield: a cancelled caller (a dropped HTTP request) must not cut the turn short.
        return await asyncio.shield(task)

    async def stream(
        self, owner: str, session_id: str, request: TurnRequest
    ) -> AsyncIterator[TurnEvent]:
        """Run one user message (or a resume) and yield its events as they happen.

        Errors that stop the turn from starting (unknown session, busy, inactive, awaiting
        approval) are raised before the first event; errors during the turn arrive as an
        ``error`` event.
        """
        events, _ = await self.start(owner, session_id, request)
        async for event in events:
            yield event

    async def start(
        self, owner: str, session_id: str, request: TurnRequest
    ) -> tuple[AsyncIterator[TurnEvent], asyncio.Task[TurnResult]]:
        """Start a turn (its lease taken when this returns) and return its events and task.

        Errors that stop the turn from starting are raised here. Cancelling the task stops
        the turn and rolls it back; the events then end with an ``error``.
        """
        lease = await self._begin(owner, session_id, request)
        queue: asyncio.Queue[TurnEvent] = asyncio.Queue()
        task = self._spawn(self._execute(lease, request, queue.put_nowait))

        async def events() -> AsyncIterator[TurnEvent]:
            while True:
                event = await queue.get()
                yield event
                if event.type in ("done", "error"):
                    return

        return events(), task

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for running turns, then cancel what is left."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, TurnResult]) -> asyncio.Task[TurnResult]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_retrieved)
        return task

    async def _begin(self, owner: str, session_id: str, request: TurnRequest) -> Lease:
        if not request.resume and not request.replay:
            content = request.content
            if not isinstance(content, str) or not content.strip():
                raise InvalidInput("message content must be a non-empty string", field="content")
            if len(content) > MAX_MESSAGE_CHARS:
                raise PayloadTooLarge(
                    f"message is {len(content)} characters; the limit is {MAX_MESSAGE_CHARS}",
                    field="content",
                    limit=MAX_MESSAGE_CHARS,
                )
        try:
            lease = await self._sessions.acquire(owner, session_id, resume=request.resume)
        except (NotFound, SessionExpired):
            if request.agent_id is None or request.resume:
                raise
            # The first message of a session named with its agent: create it, then take it.
            # Sessions that exist (the usual case) cost no extra round trip this way.
            await self._sessions.get_or_create(owner, session_id, agent_id=request.agent_id)
            lease = await self._sessions.acquire(owner, session_id)
        if request.agent_id is not None and lease.agent_id != request.agent_id:
            await self._sessions.abort(lease)
            raise Conflict(
                f"session {session_id!r} belongs to agent {lease.agent_id!r}",
                session_id=session_id,
                agent_id=lease.agent_id,
            )
        if request.resume:
            try:
                # Checked before the graph runs, so a bad resume changes nothing.
                _, specs = self._policy(lease)
                TurnGuard(budgets=Budgets(), specs=specs).accept_decisions(
                    lease.pending_approvals or [], {"decisions": request.decisions}
                )
            except BaseException:
                await self._sessions.abort(lease)
                raise
        return lease

    def _graph(self, lease: Lease) -> Any:
        graph = self._graphs.lookup(lease.agent_id, lease.agent_version)
        return graph if graph is not None else self._graphs.get(lease.template())

    def _policy(self, lease: Lease) -> tuple[Budgets, dict[str, ToolSpec]]:
        """The template version's budgets and tools (parsed once per version)."""
        key = (lease.agent_id, lease.agent_version)
        policy = self._policies.get(key)
        if policy is None:
            spec = lease.template().spec
            policy = (spec.budgets, {t.name: t for t in template_tools(self._tools, spec)})
            if len(self._policies) > 512:
                self._policies.clear()
            self._policies[key] = policy
        return policy

    def _guard(self, lease: Lease, request: TurnRequest) -> TurnGuard:
        budgets, specs = self._policy(lease)
        o = self._options
        return TurnGuard(
            budgets=effective_budgets(budgets, request.budgets),
            specs=specs,
            roles=frozenset({ADMIN_ROLE}) if request.roles is None else request.roles,
            thread_id=lease.thread_id,
            records=o.records,
            tool_timeout_seconds=o.tool_timeout_seconds,
            model_retries=o.model_retries,
            retry_backoff_seconds=o.retry_backoff_seconds,
        )

    async def _execute(
        self, lease: Lease, request: TurnRequest, emit: Callable[[TurnEvent], None] | None
    ) -> TurnResult:
        started = time.perf_counter()
        timer = _ModelTimer()
        added: list[BaseMessage] = []
        graph_input: Any = None
        if request.resume:
            graph_input = Command(resume={"decisions": request.decisions})
        elif not request.replay:
            human = HumanMessage(
                request.content or "",
                id=request.message_id or str(uuid.uuid4()),
                response_metadata={"created_at": _now()},
            )
            added.append(human)
            graph_input = {"messages": [human]}
        pending: list[dict[str, Any]] | None = None
        try:
            graph = self._graph(lease)
            guard = self._guard(lease, request)
            config: RunnableConfig = {
                "configurable": {
                    "thread_id": lease.thread_id,
                    CONFIG_KEY_GUARD: guard,
                    # The committed checkpoint is the thread's latest (the lease rolled back
                    # anything newer): the saver may serve it from memory.
                    EXPECTED_CHECKPOINT: lease.committed_checkpoint_id,
                },
                "callbacks": [timer],
                "metadata": {
                    **(request.metadata or {}),
                    "session_id": lease.session_id,
                    "owner": lease.owner,
                },
                # The guard ends the turn at max_steps model calls; this is a backstop.
                "recursion_limit": guard.budgets.max_steps * 3 + 10,
            }
            if request.checkpoint_id:
                config["configurable"]["checkpoint_id"] = request.checkpoint_id
            if request.run_id:
                config["run_id"] = UUID(request.run_id)
            modes = ["updates", "messages"] if emit else ["updates"]
            raw = set(request.stream_modes) if emit else set()
            modes += sorted(raw - set(modes))
            current = asyncio.current_task()
            assert current is not None
            streamed = False  # tokens went out since the last complete message
            durability = request.durability or self._durability
            # With one checkpoint per turn, its writes wait for the release: one commit ends
            # the turn. Per-step checkpoints are written as the steps end.
            deferring: AbstractContextManager[list[Write]] = (
                deferring_writes() if durability == "exit" else nullcontext([])
            )
            with deferring as writes:
                async with self._sessions.renewing(lease, current):
                    async for mode, chunk in graph.astream(
                        graph_input,
                        config,
                        stream_mode=modes,
                        durability=durability,
                    ):
                        if emit and mode in raw:
                            emit(TurnEvent("chunk", {"mode": mode, "data": chunk}))
                        if mode not in ("messages", "updates"):
                            continue
                        if mode == "messages":
                            message, meta = chunk
                            if (
                                emit
                                and isinstance(message, AIMessageChunk)
                                and message.text
                                and meta.get("langgraph_node") == AGENT_NODE
                            ):
                                emit(TurnEvent("token", {"content": message.text}))
                                streamed = True
                            continue
                        if "__interrupt__" in chunk:
                            pending = list(chunk["__interrupt__"][0].value.get("pending", []))
                            continue
                        for node, update in chunk.items():
                            for message in _updated_messages(update):
                                # The state reducer stamps messages too, but updates stream
                                # before it runs; the same object gets the same stamp either way.
                                message.response_metadata.setdefault("created_at", _now())
                                added.append(message)
                                if emit:
                                    if (
                                        node == AGENT_NODE
                                        and isinstance(message, AIMessage)
                                        and message.text
                                        and not streamed
                                    ):
                                        # Not from the model (a budget's final word): send its
                                        # text as tokens too, so tokens always add up to replies.
                                        emit(TurnEvent("token", {"content": message.text}))
                                    streamed = False
                                    _emit_message(emit, message)
            result = self._result(lease, added, started, timer, guard, pending)
            await self._sessions.release(
                lease,
                TurnCounters(
                    turns=1,
                    messages=len(added),
                    tokens_in=result.usage["input_tokens"],
                    tokens_out=result.usage["output_tokens"],
                    model_latency_ms=round(result.model_latency_ms),
                    latency_ms=result.latency_ms,
                ),
                pending_approvals=pending,
                writes=writes,
            )
        except BaseException as exc:
            if not lease.lost:
                try:
                    await asyncio.shield(self._sessions.abort(lease))
                except Exception:  # the original error matters more
                    log.exception("could not roll back the turn on %s", lease.session_id)
            error = _public_error(exc, lease)
            self._notify(lease, getattr(error, "code", "cancelled"), started)
            if emit:
                emit(TurnEvent("error", _error_payload(error)))
            if error is exc:
                raise
            raise error from exc
        self._notify(lease, "ok", started)
        if emit:
            if pending:
                emit(TurnEvent("approval_required", {"pending": pending}))
            emit(TurnEvent("usage", dict(result.usage)))
            emit(TurnEvent("done", result.to_dict()))
        return result

    def _notify(self, lease: Lease, outcome: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        for listener in self.listeners:
            try:
                listener(lease.agent_id, outcome, elapsed)
            except Exception:
                log.exception("turn listener failed")

    def _result(
        self,
        lease: Lease,
        added: list[BaseMessage],
        started: float,
        timer: _ModelTimer,
        guard: TurnGuard,
        pending: list[dict[str, Any]] | None,
    ) -> TurnResult:
        usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        reply = ""
        for message in added:
            if isinstance(message, AIMessage):
                if message.usage_metadata:
                    usage["input_tokens"] += message.usage_metadata["input_tokens"]
                    usage["output_tokens"] += message.usage_metadata["output_tokens"]
                    usage["total_tokens"] += message.usage_metadata["total_tokens"]
                if message.text:
                    reply = message.text
        return TurnResult(
            session_id=lease.session_id,
            reply=reply,
            messages=[message_to_dict(m) for m in added],
            usage=usage,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            model_latency_ms=round(timer.total * 1000, 3),
            warnings=list(guard.warnings),
            status="awaiting_approval" if pending else "completed",
            pending_approvals=pending or [],
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _public_error(exc: BaseException, lease: Lease) -> BaseException:
    """The error a caller sees for a failed turn; internal details stay in the log."""
    if lease.lost and isinstance(exc, asyncio.CancelledError):
        return LeaseLost(
            f"the lease on session {lease.session_id!r} was lost mid-turn",
            session_id=lease.session_id,
        )
    if isinstance(exc, SessiongraphError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, openai.OpenAIError):
        return _model_error(exc, lease.session_id)
    log.error("turn on %s failed", lease.session_id, exc_info=exc)
    return TurnFailed(
        f"the turn failed ({type(exc).__name__}) and was rolled back",
        session_id=lease.session_id,
    )


def _model_error(exc: openai.OpenAIError, session_id: str) -> ModelUnavailable:
    """A model failure (after the client's own retries) as the caller should see it.

    ``retryable`` tells the client whether resending the same message may succeed; the
    session is unchanged either way.
    """
    status = getattr(exc, "status_code", None)
    what = f"the model failed: {type(exc).__name__}" + (f" (HTTP {status})" if status else "")
    if isinstance(exc, openai.RateLimitError):
        retry_after = exc.response.headers.get("retry-after")
        return ModelRateLimited(
            what + "; retry later",
            session_id=session_id,
            status_code=status,
            retryable=True,
            retry_after=retry_after,
        )
    if isinstance(exc, openai.APIStatusError) and status is not None and status < 500:
        return ModelRejected(what, session_id=session_id, status_code=status, retryable=False)
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelBadResponse(what, session_id=session_id, retryable=True)
    return ModelUnavailable(what, session_id=session_id, status_code=status, retryable=True)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a finished turn's error as seen: a streamed turn reports it as an event."""
    if not task.cancelled():
        task.exception()


def _emit_message(emit: Callable[[TurnEvent], None], message: BaseMessage) -> None:
    as_dict = message_to_dict(message)
    if isinstance(message, AIMessage):
        for call in as_dict.get("tool_calls", []):
            emit(TurnEvent("tool_call", call))
    elif message.type == "tool":
        emit(TurnEvent("tool_result", as_dict))
    emit(TurnEvent("message", as_dict))


def _error_payload(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "code", None) or "internal_error"
    message = getattr(exc, "message", None) or (
        "the turn was cancelled" if isinstance(exc, asyncio.CancelledError) else "turn failed"
    )
    return {"error": code, "message": message, "details": getattr(exc, "details", {})}
