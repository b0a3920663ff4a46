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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from runtime.agents import AgentKey, Budgets, CompiledAgent, GraphCache, template_from_row
from runtime.checkpoints import Write, deferring_writes
from runtime.db import database_error
from runtime.errors import Conflict, InvalidInput, NotFound, NothingToResume, SessionExpired
from runtime.keys import ADMIN_ROLE
from runtime.sessions import Lease, SessionStore, TurnCounters
from runtime.tools import ToolRegistry, ToolSpec
from runtime.turns.events import (
    Durability,
    Emit,
    TurnEvent,
    TurnRequest,
    TurnResult,
    message_to_dict,
)
from runtime.turns.failures import error_body, public_error
from runtime.turns.guards import (
    ToolRecords,
    TurnGuard,
    effective_budgets,
    hard_bounds,
    template_tools,
)
from runtime.turns.retries import begin_once, keyed, keyed_result, replayed
from runtime.turns.stream import (
    GraphStream,
    ModelTimer,
    apply_input,
    check_input_keys,
    checked_request,
    split_pending,
    turn_config,
    turn_input,
    waits_for_value,
)

__all__ = ["GuardOptions", "Ready", "TurnRunner"]

log = logging.getLogger(__name__)

# Called once a started turn may run, before its graph does (see TurnRunner.start).
Ready = Callable[[str | None], Awaitable[None]]


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
            durability: when checkpoints are written. ``"exit"`` (the default): per turn, the
                state with the input applied (see ``apply_input``) and the state when the
                graph run ends or pauses, written when it ends. A turn is all-or-nothing
                anyway (one that dies half-way is rolled back to the session's committed
                checkpoint), so
                per-step checkpoints (``"async"``, ``"sync"``) only add writes, each
                rewriting every message, unless you want step-by-step time travel.
        """
        self._sessions = sessions
        self._graphs = graphs
        self._tools = tools or ToolRegistry()
        self._options = guard_options or GuardOptions()
        self._durability: Durability = durability
        self._policies: dict[AgentKey, tuple[Budgets, dict[str, ToolSpec]]] = {}
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
        request = checked_request(keyed(request))
        begun = await begin_once(self._begin, self._sessions, owner, session_id, request)
        if isinstance(begun, TurnResult):  # a retry of a turn that committed
            return begun
        lease, agent = begun
        task = self._spawn(self._execute(lease, agent, request, None))
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
        self, owner: str, session_id: str, request: TurnRequest, *, ready: Ready | None = None
    ) -> tuple[AsyncIterator[TurnEvent], asyncio.Task[TurnResult]]:
        """Start a turn (its lease taken when this returns) and return its events and task.

        Errors that stop the turn from starting are raised here. Cancelling the task stops
        the turn and rolls it back; the events then end with an ``error``. ``ready`` is
        awaited before the graph starts, with the session's agent id once the lease is
        taken (None: a kept result is replayed); if it fails, the lease is given back.
        """
        request = checked_request(keyed(request))
        begun = await begin_once(self._begin, self._sessions, owner, session_id, request)
        if isinstance(begun, TurnResult):
            if ready is not None:
                await ready(None)
            return replayed(begun)
        lease, agent = begun
        if ready is not None:
            try:
                await ready(lease.agent_id)
            except BaseException:
                await self._sessions.abort(lease)
                raise
        queue: asyncio.Queue[TurnEvent] = asyncio.Queue()
        task = self._spawn(self._execute(lease, agent, request, queue.put_nowait))

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

    async def _begin(
        self, owner: str, session_id: str, request: TurnRequest
    ) -> tuple[Lease, CompiledAgent]:
        """The session's lease and its agent version, built; the request checked against it.

        An agent version not built yet in this process is built under the lease, renewed
        while a slow graph factory runs (the lease is never let go: a turn keeps its place).
        """
        lease = await self._lease(owner, session_id, request)
        try:
            agent = self._graphs.lookup(lease.agent_key)
            if agent is None:
                current = asyncio.current_task()
                assert current is not None
                async with self._sessions.renewing(lease, current):
                    agent = await self._graphs.for_row(lease.agent_row)
            # A message goes to the graph's `messages`; an input as given.
            given = {"messages": ()} if request.content is not None else request.input
            check_input_keys(agent, given)
        except BaseException:
            await self._sessions.abort(lease)
            raise
        return lease, agent

    async def _lease(self, owner: str, session_id: str, request: TurnRequest) -> Lease:
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
        if request.resume or request.proceed:
            try:
                self._check_resume(lease, request)
            except BaseException:
                await self._sessions.abort(lease)
                raise
        return lease

    def _check_resume(self, lease: Lease, request: TurnRequest) -> None:
        """Refuse a resume that does not answer what the session waits for (before the
        graph runs, so a bad resume changes nothing)."""
        if request.proceed:
            if not lease.at_breakpoint:
                raise NothingToResume(
                    f"session {lease.session_id!r} is not stopped at a breakpoint",
                    session_id=lease.session_id,
                )
            return
        if waits_for_value(lease.pending_approvals):
            if request.decisions is not None:
                raise InvalidInput(
                    "the session waits for a value for the graph's interrupt, not for "
                    "decisions on tool calls: resume it with a value",
                    field="resume",
                    pending=lease.pending_approvals,
                )
            return
        if request.decisions is None:
            raise InvalidInput(
                "the session waits for decisions on tool calls: resume it with decisions",
                field="decisions",
                pending=lease.pending_approvals,
            )
        _, specs = self._policy(lease)
        TurnGuard(budgets=Budgets(), specs=specs).accept_decisions(
            lease.pending_approvals or [], {"decisions": request.decisions}
        )

    def _policy(self, lease: Lease) -> tuple[Budgets, dict[str, ToolSpec]]:
        """The template version's budgets and tools (parsed once per version)."""
        key = lease.agent_key
        policy = self._policies.get(key)
        if policy is None:
            spec = template_from_row(lease.agent_row).spec
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
        self, lease: Lease, agent: CompiledAgent, request: TurnRequest, emit: Emit | None
    ) -> TurnResult:
        started = time.perf_counter()
        timer = ModelTimer()
        graph_input, added = turn_input(request)
        given = len(added)  # the caller's own messages: not the turn's output
        run = GraphStream(emit, request.stream_modes, added, request.subgraphs)
        try:
            guard = self._guard(lease, request)
            config = turn_config(lease, request, guard, timer, agent)
            writes = await self._run_graph(lease, agent, graph_input, config, request, guard, run)
            result = self._result(lease, run, given, started, timer, guard)
            await self._sessions.release(
                lease,
                TurnCounters(
                    turns=1,
                    messages=len(run.added),
                    tokens_in=result.usage["input_tokens"],
                    tokens_out=result.usage["output_tokens"],
                    model_latency_ms=round(result.model_latency_ms),
                    latency_ms=result.latency_ms,
                ),
                pending_approvals=run.pending,
                writes=writes,
                keyed=keyed_result(request, result),
                breakpoint=run.breakpoint,
                step=request.run_end,
            )
        except BaseException as exc:
            error = await self._failed(lease, exc, started, emit)
            if error is exc:
                raise
            raise error from exc
        self._notify(lease, "ok", started)
        if emit:
            if result.status != "completed":
                self._emit_pause(emit, result)
            emit(TurnEvent("usage", dict(result.usage)))
            emit(TurnEvent("done", result.to_dict()))
        return result

    async def _run_graph(
        self,
        lease: Lease,
        agent: CompiledAgent,
        graph_input: Any,
        config: RunnableConfig,
        request: TurnRequest,
        guard: TurnGuard,
        run: GraphStream,
    ) -> list[Write]:
        """Stream the graph into ``run`` under the renewed lease and the turn's hard bounds;
        return deferred writes."""
        current = asyncio.current_task()
        assert current is not None
        durability = request.durability or self._durability
        # With one checkpoint per turn, its writes wait for the release: one commit ends
        # the turn. Per-step checkpoints are written as the steps end, each fenced by the
        # lease (a holder paused past its liveness bound, and taken over, writes nothing).
        deferring: AbstractContextManager[list[Write]] = (
            deferring_writes() if durability == "exit" else nullcontext([])
        )
        # The agent's context and the run's over it, for graphs with a context_schema.
        context = {**agent.template.spec.context, **(request.context or {})} or None
        graph: Any = agent.graph
        with deferring as writes, self._sessions.fencing(lease):
            async with self._sessions.renewing(lease, current), hard_bounds(guard):
                # The state with the input applied gets a checkpoint (regenerate), unless a
                # breakpoint before a node would be passed by the graph continuing from it.
                before = request.interrupt_before or graph.interrupt_before_nodes
                if durability == "exit" and isinstance(graph_input, Mapping) and not before:
                    config = await apply_input(graph, graph_input, config)
                    graph_input = None
                await run.consume(
                    run.parts(
                        graph,
                        graph_input,
                        config,
                        context=context,
                        durability=durability,
                        interrupt_before=request.interrupt_before,
                        interrupt_after=request.interrupt_after,
                    )
                )
        return writes

    async def _failed(
        self, lease: Lease, exc: BaseException, started: float, emit: Emit | None
    ) -> BaseException:
        """Roll a failed turn back and report it; return the error its caller sees."""
        if not lease.lost:
            try:
                await asyncio.shield(self._sessions.abort(lease))
            except Exception as exc2:  # the original error matters more
                if database_error(exc2) is not None:
                    self._sessions.abort_when_back(lease)
                else:
                    log.exception("could not roll back the turn on %s", lease.session_id)
        error = public_error(exc, lease)
        self._notify(lease, getattr(error, "code", "cancelled"), started)
        if emit:
            emit(TurnEvent("error", error_body(error)))
        return error

    @staticmethod
    def _emit_pause(emit: Emit, result: TurnResult) -> None:
        """The event of a paused turn: the approvals, or the graph's interrupts, it waits on."""
        if result.pending_approvals:
            emit(TurnEvent("approval_required", {"pending": result.pending_approvals}))
        if result.status == "interrupted":  # no interrupts: a static breakpoint
            emit(TurnEvent("interrupt", {"interrupts": result.interrupts}))

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
        run: GraphStream,
        given: int,
        started: float,
        timer: ModelTimer,
        guard: TurnGuard,
    ) -> TurnResult:
        """The turn's result; usage and reply come from what the graph wrote, never from the
        ``given`` messages the caller sent (which ``run.added`` starts with)."""
        added = run.added
        usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        reply = ""
        for message in added[given:]:
            if isinstance(message, AIMessage):
                if message.usage_metadata:
                    usage["input_tokens"] += message.usage_metadata["input_tokens"]
                    usage["output_tokens"] += message.usage_metadata["output_tokens"]
                    usage["total_tokens"] += message.usage_metadata["total_tokens"]
                if message.text:
                    reply = message.text
        approvals, interrupts = split_pending(run.pending)
        return TurnResult(
            session_id=lease.session_id,
            reply=reply,
            messages=[message_to_dict(m) for m in added],
            usage=usage,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            model_latency_ms=round(timer.total * 1000, 3),
            warnings=list(guard.warnings),
            status=_status(approvals, interrupts, run.breakpoint),
            pending_approvals=approvals,
            interrupts=interrupts,
        )


def _status(
    approvals: list[dict[str, Any]], interrupts: list[dict[str, Any]], breakpoint: bool
) -> Literal["completed", "awaiting_approval", "interrupted"]:
    """A turn's status from what it paused on (nothing: completed)."""
    if interrupts or breakpoint:
        return "interrupted"
    return "awaiting_approval" if approvals else "completed"


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a finished turn's error as seen: a streamed turn reports it as an event."""
    if not task.cancelled():
        task.exception()
