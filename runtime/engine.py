"""The engine, usable without HTTP: ``async with Runtime.open(settings) as rt: ...``.

:meth:`Runtime.open` owns, in one ``AsyncExitStack`` torn down in reverse: the embedded
Postgres (when no ``DATABASE_URL`` is set), the connection pool, the checkpointer, the
template store and compiled-graph cache, the turn runner and the expiry sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.postgres.aio import AsyncPostgresStore

from runtime.agents import (
    DEFAULT_AGENT_ID,
    SYSTEM_OWNER,
    AgentStats,
    AgentTemplate,
    GraphCache,
    TemplateSpec,
    TemplateStore,
    agent_stats,
    default_template_spec,
    prune_turn_log,
)
from runtime.checkpoints import MessageCachingSerializer, SessionSaver
from runtime.completions import Completions
from runtime.db import (
    Page,
    Pool,
    check_limit,
    decode_cursor,
    embedded_postgres,
    encode_cursor,
    migrate,
    open_pool,
    position,
    schema_is_current,
)
from runtime.errors import InvalidInput, ModelUnavailable, NotFound
from runtime.keys import KeyStore
from runtime.models import make_chat_model
from runtime.project import (
    BUILTIN_GRAPH,
    AgentCompiler,
    GraphRegistry,
    ensure_system_agents,
    load_project,
)
from runtime.runs import RunManager
from runtime.sessions import Session, SessionStore, SweepResult, heartbeat_for
from runtime.settings import Settings, get_settings
from runtime.threads import SessionMessages, ThreadStates
from runtime.tools import ToolRegistry, default_registry
from runtime.turns import (
    BudgetLimits,
    Content,
    GuardOptions,
    ToolRecords,
    TurnEvent,
    TurnRequest,
    TurnResult,
    TurnRunner,
    check_input_keys,
    checked_input,
    message_to_dict,
)
from runtime.widgets import PublishableKeyStore, WidgetVisitors

__all__ = ["DEFAULT_OWNER", "Runtime", "strict_serializer"]

log = logging.getLogger(__name__)

# The owner of everything created when authentication is off.
DEFAULT_OWNER = "local"


def strict_serializer() -> JsonPlusSerializer:
    """The checkpoint serializer: msgpack restricted to LangGraph's safe allow-list, no pickle.

    Loading a checkpoint never imports or calls arbitrary Python (GHSA-g48c-2wqr-h844,
    CVE-2025-64439), whatever ``LANGGRAPH_STRICT_MSGPACK`` says. Each message object is
    encoded once (:class:`~runtime.checkpoints.saver.MessageCachingSerializer`).
    """
    return MessageCachingSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


class Runtime:
    """Templates, sessions and turns on one Postgres database. Build with :meth:`open`."""

    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        checkpointer: SessionSaver,
        tools: ToolRegistry,
        project: GraphRegistry | None = None,
        *,
        holder: str | None = None,
    ) -> None:
        """``holder``: the name this process's heartbeat beats (``Runtime.open`` starts it),
        which its leases carry; None leaves them to the lease timeout alone."""
        self.settings = settings
        self.pool = pool
        self.checkpointer = checkpointer
        self.tools = tools
        # The graphs agents can run: the built-in one and the project's (langgraph.json).
        self.project = project or GraphRegistry()
        # LangGraph's key-value store: for the LangGraph API's /store endpoints and graphs.
        self.store = AsyncPostgresStore(pool)
        self.templates = TemplateStore(pool, self.validate_template, self.project.names())
        self.compiler = AgentCompiler(settings, tools, self.project, checkpointer, self.store)
        self.graphs = GraphCache(self.compiler)
        self.sessions = SessionStore(
            pool,
            self.templates,
            default_ttl_seconds=settings.session_ttl_seconds,
            lease_timeout_seconds=settings.lease_timeout_seconds,
            liveness_seconds=settings.heartbeat_timeout_seconds,
            database_timeout_seconds=settings.database_timeout_seconds,
            lease_wait_seconds=settings.lease_wait_seconds,
            checkpoints_kept=settings.checkpoints_kept,
            holder=holder,
        )
        self.turns = _turn_runner(settings, pool, self.sessions, self.graphs, tools)
        self.keys = KeyStore(pool)
        # Runs of the LangGraph API: turns with a recorded id, status and multitask strategy.
        self.runs = RunManager(
            pool,
            self.sessions,
            self.turns,
            events_retention_seconds=settings.run_events_retention_seconds,
        )
        # Thread state, history and state updates for the LangGraph API (committed only).
        self.threads = ThreadStates(pool, self.sessions, self.templates, self.graphs)
        # A session's messages as resources: read one, append, edit, delete (no turn).
        self.messages = SessionMessages(self.threads, self.sessions)
        # OpenAI's chat completions as turns, with a session or stateless.
        self.completions = Completions(self.sessions, self.turns)
        # Web widgets: publishable keys and the sessions their visitors start.
        self.widget_keys = PublishableKeyStore(pool, self.templates)
        self.widgets = WidgetVisitors(
            pool,
            self.sessions,
            per_key=settings.widget_rate_per_key,
            per_ip=settings.widget_rate_per_ip,
        )
        # Called after every sweep with the number of sessions removed (for metrics).
        self.sweep_listeners: list[Callable[[int], None]] = []

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        tools: ToolRegistry | None = None,
        sweeper: bool = True,
        migrate_schema: bool = True,
        project: bool = True,
    ) -> AsyncIterator[Runtime]:
        """Start the engine; on exit, wait for running turns and release everything.

        Args:
            settings: configuration; :func:`get_settings` when omitted.
            tools: the tool registry templates draw on; the built-ins when omitted.
            sweeper: run the expiry sweeper every ``sweep_interval_seconds``.
            migrate_schema: apply migrations and the checkpointer's setup on start.
            project: load the project's langgraph.json (graphs, tools, MCP servers) and keep
                its graphs' system agents in step; off for administration (keys, migrations,
                sweeps), which must not depend on the project's code or servers.
        """
        settings = settings or get_settings()
        async with AsyncExitStack() as stack:
            # A registry of its own: the project's tools are added to it, never to the caller's.
            tools = ToolRegistry((tools or default_registry()).specs())
            graphs = await load_project(settings, tools, stack) if project else GraphRegistry()
            url = settings.database_url
            if not url:
                url = stack.enter_context(embedded_postgres(settings.data_dir))
            pool = await stack.enter_async_context(open_pool(url, settings))
            checkpointer = SessionSaver(
                pool, serde=strict_serializer(), cache_messages=settings.state_cache_messages
            )
            if migrate_schema:
                await migrate(pool, schema=settings.database_schema)
            # Beating before any lease names it; its row deleted last, once turns are over.
            heartbeat = heartbeat_for(url, settings)
            await asyncio.to_thread(heartbeat.start)
            stack.push_async_callback(asyncio.to_thread, heartbeat.stop)
            # Bounded only now: a migration's index build on a big database may take long.
            pool.bound(settings.database_timeout_seconds)
            rt = cls(settings, pool, checkpointer, tools, graphs, holder=heartbeat.holder)
            await rt.templates.ensure(
                default_template_spec(settings.resolved_default_model()),
                owner=SYSTEM_OWNER,
                agent_id=DEFAULT_AGENT_ID,
            )
            if project:
                await ensure_system_agents(rt.templates, rt.project, tools, settings)
            if sweeper and settings.sweep_interval_seconds > 0:
                task = asyncio.create_task(rt._sweep_forever(), name="sessiongraph-sweeper")
                stack.push_async_callback(_cancel, task)
            stack.push_async_callback(rt.turns.drain, settings.shutdown_grace_seconds)
            # First on the way out: end queued runs, then wait for running ones.
            stack.push_async_callback(rt.runs.close, settings.shutdown_grace_seconds)
            yield rt

    # -- templates ----------------------------------------------------------------------------

    async def validate_template(self, spec: TemplateSpec) -> None:
        """Check a template against this server: graph, tool names, model, and (when it
        has static breakpoints) the nodes they name, by building its graph once.

        Raises:
            InvalidInput: something in it cannot be built here.
        """
        try:
            self.project.check_name(spec.graph)
        except NotFound as exc:
            raise InvalidInput(exc.message, field="graph", **exc.details) from exc
        self.tools.resolve(spec.tools)
        try:
            make_chat_model(spec.model, self.settings)
            if spec.summary_model is not None:
                make_chat_model(spec.summary_model, self.settings)
        except ModelUnavailable as exc:
            # A template naming a model this server cannot build is bad input, not an outage.
            raise InvalidInput(exc.message, field="model") from exc
        if spec.interrupt_before or spec.interrupt_after:
            now = datetime.now(UTC)
            # Not cached (a version that may never be stored): check_breakpoints runs in it.
            await self.compiler(
                AgentTemplate(
                    agent_id="-", owner="-", version=0, spec=spec, created_at=now, updated_at=now
                )
            )

    def graph_agent_id(self, graph: str) -> str | None:
        """The system agent of a graph (LangGraph's assistant named by its graph id), if any."""
        if graph == BUILTIN_GRAPH:
            return DEFAULT_AGENT_ID
        return graph if graph in self.project.names() else None

    async def check_input(self, template: AgentTemplate, graph_input: Any) -> None:
        """Refuse, before anything runs, an input the agent's graph cannot take.

        Raises:
            InvalidInput: not an object, unreadable messages, or keys the graph lacks.
        """
        agent = await self.graphs.get(template)
        check_input_keys(agent, checked_input(graph_input))

    # -- sessions and turns -------------------------------------------------------------------

    async def session(
        self,
        session_id: str | None = None,
        *,
        agent_id: str = DEFAULT_AGENT_ID,
        owner: str = DEFAULT_OWNER,
        **fields: Any,
    ) -> Session:
        """Get or create a session (``name``, ``description``, ``metadata``, ``ttl_seconds``)."""
        session, _ = await self.sessions.get_or_create(
            owner, session_id, agent_id=agent_id, **fields
        )
        return session

    async def chat(
        self,
        session_id: str,
        content: Content | None = None,
        *,
        input: Mapping[str, Any] | None = None,
        owner: str = DEFAULT_OWNER,
        agent_id: str | None = None,
        roles: frozenset[str] | None = None,
        budgets: BudgetLimits | None = None,
    ) -> TurnResult:
        """Run one turn and return its result.

        Args:
            content: the user's message (text or content blocks), for graphs with a
                ``messages`` channel; or
            input: the graph's input as its input schema takes it (several messages, a
                system message, other keys).
            agent_id: create the session for this agent first if it does not exist (a
                session bound to another agent is a ``Conflict``), as chat widgets expect.
            roles: the caller's roles; the model is offered only the tools they permit.
                None: every tool of the template.
            budgets: tighter budgets for this turn than the template's.
        """
        request = TurnRequest(
            content=content, input=input, roles=roles, budgets=budgets, agent_id=agent_id
        )
        return await self.turns.run(owner, session_id, request)

    async def stream(
        self,
        session_id: str,
        content: Content | None = None,
        *,
        input: Mapping[str, Any] | None = None,
        owner: str = DEFAULT_OWNER,
        agent_id: str | None = None,
        roles: frozenset[str] | None = None,
        budgets: BudgetLimits | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """Run one turn, yielding its events (arguments as in :meth:`chat`).

        Errors that prevent the turn from starting are raised at the first iteration.
        """
        request = TurnRequest(
            content=content, input=input, roles=roles, budgets=budgets, agent_id=agent_id
        )
        async for event in await self.start(session_id, request, owner=owner):
            yield event

    async def resume(
        self,
        session_id: str,
        decisions: list[dict[str, Any]] | None = None,
        *,
        value: Any = None,
        owner: str = DEFAULT_OWNER,
        roles: frozenset[str] | None = None,
        budgets: BudgetLimits | None = None,
    ) -> TurnResult:
        """Finish a paused turn: one decision per pending tool call, or (for a graph's own
        ``interrupt()``) the ``value`` the interrupt returns.

        Each decision is ``{"tool_call_id", "action": "approve" | "reject" | "edit",
        "args"?: {...} (edit), "reason"?: str}``.
        """
        request = TurnRequest(decisions=decisions, resume_value=value, roles=roles, budgets=budgets)
        return await self.turns.run(owner, session_id, request)

    async def resume_stream(
        self,
        session_id: str,
        decisions: list[dict[str, Any]] | None = None,
        *,
        value: Any = None,
        owner: str = DEFAULT_OWNER,
        roles: frozenset[str] | None = None,
        budgets: BudgetLimits | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """:meth:`resume`, yielding the turn's events."""
        request = TurnRequest(decisions=decisions, resume_value=value, roles=roles, budgets=budgets)
        async for event in await self.start(session_id, request, owner=owner):
            yield event

    async def run(
        self, session_id: str, request: TurnRequest, *, owner: str = DEFAULT_OWNER
    ) -> TurnResult:
        """Run a turn built by the caller (:class:`~runtime.turns.TurnRequest`)."""
        return await self.turns.run(owner, session_id, request)

    async def start(
        self, session_id: str, request: TurnRequest, *, owner: str = DEFAULT_OWNER
    ) -> AsyncIterator[TurnEvent]:
        """Start a turn and return its events as soon as it holds the session's lease.

        Errors that stop the turn from starting (unknown session, busy, bad input) are raised
        here, before any event, so an HTTP response can still answer them with their status
        while the events stream as they happen (no waiting for the model's first token).
        """
        events, _ = await self.turns.start(owner, session_id, request)
        return events

    async def history(self, session_id: str, *, owner: str = DEFAULT_OWNER) -> list[dict[str, Any]]:
        """The session's whole conversation, oldest first."""
        session = await self.sessions.get(owner, session_id)
        return await self._messages(session)

    async def history_page(
        self,
        session_id: str,
        *,
        owner: str = DEFAULT_OWNER,
        order: Literal["asc", "desc"] = "asc",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """One page of the conversation, from the oldest (``asc``) or newest (``desc``) end.

        The cursor is a position in the conversation, which only grows between turns, so
        paging stays stable while the session keeps talking (a cleared session restarts).
        """
        if order not in ("asc", "desc"):
            raise InvalidInput("order must be asc or desc", field="order")
        limit = check_limit(limit)
        after = decode_cursor(f"messages:{order}", cursor, {"i": position})
        session = await self.sessions.get(owner, session_id)
        messages = await self._messages(session)
        if order == "asc":
            start = min(after["i"], len(messages)) if after else 0
            items = messages[start : start + limit]
            end = start + len(items)
            more = end < len(messages)
        else:
            # The cursor is an absolute position (exclusive upper bound) counted from the
            # oldest message, so turns added meanwhile do not shift the pages still to read.
            end = min(after["i"], len(messages)) if after else len(messages)
            items = messages[max(end - limit, 0) : end][::-1]
            end -= len(items)
            more = end > 0
        next_cursor = encode_cursor(f"messages:{order}", {"i": end}) if more else None
        return Page(items, next_cursor)

    async def clear_history(self, session_id: str, *, owner: str = DEFAULT_OWNER) -> Session:
        """Empty the session's conversation, keeping the session itself."""
        return await self.sessions.clear(owner, session_id)

    async def stats(
        self, *, agent_id: str | None = None, owner: str | None = None
    ) -> list[AgentStats]:
        """Per-agent figures: live sessions, and turns, messages, tokens, latency."""
        return await agent_stats(self.pool, agent_id=agent_id, owner=owner)

    async def _messages(self, session: Session) -> list[dict[str, Any]]:
        if session.committed_checkpoint_id is None:
            return []
        # Read as of the last completed turn, so a turn in flight is never shown half-done.
        saved = await self.checkpointer.aget_tuple(
            {
                "configurable": {
                    "thread_id": session.thread_id,
                    "checkpoint_ns": "",
                    "checkpoint_id": session.committed_checkpoint_id,
                }
            }
        )
        messages = saved.checkpoint["channel_values"].get("messages", []) if saved else []
        return [message_to_dict(m) for m in messages]

    # -- expiry and health --------------------------------------------------------------------

    async def sweep(self, *, idle_seconds: float | None = None) -> SweepResult:
        """Delete expired (or idle) sessions and their checkpoints now."""
        result = await self.sessions.sweep(
            batch_size=self.settings.sweep_batch_size, idle_seconds=idle_seconds
        )
        if result.count:
            log.info("swept %d sessions", result.count)
        await prune_turn_log(self.pool, self.settings.stats_retention_days)
        for listener in self.sweep_listeners:
            listener(result.count)
        return result

    async def _sweep_forever(self) -> None:
        interval = self.settings.sweep_interval_seconds
        while True:
            # Jitter spreads replicas' sweeps apart; SKIP LOCKED keeps overlaps safe anyway.
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                await self.sweep()
            except Exception:
                log.exception("expiry sweep failed; retrying next interval")

    async def ready(self) -> bool:
        """Whether the database answers and its schema is current."""
        try:
            return await schema_is_current(self.pool)
        except Exception:
            log.warning("readiness check failed", exc_info=True)
            return False


def _turn_runner(
    settings: Settings, pool: Pool, sessions: SessionStore, graphs: GraphCache, tools: ToolRegistry
) -> TurnRunner:
    """The turn runner, its guards configured from the settings."""
    options = GuardOptions(
        records=ToolRecords(pool),
        tool_timeout_seconds=settings.tool_timeout_seconds,
        model_retries=settings.model_retries,
    )
    return TurnRunner(sessions, graphs, tools, options, durability=settings.checkpoint_durability)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
