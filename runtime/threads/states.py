"""A session's graph state as LangGraph threads show it: state, history and state updates.

The LangGraph Server API reads and edits a thread's checkpoints directly. Here that is done
on a session's checkpointer thread with the compiled graph of its agent, under the same
rules as turns:

- **Only committed state is visible.** Reads start at ``sessions.committed_checkpoint_id``
  (never at a turn in flight) and only checkpoints in its lineage (it and its ancestors)
  can be named; anything else is ``NotFound``.
- **Writes take the lease.** :meth:`ThreadStates.update` runs ``aupdate_state`` under the
  session's turn lease and commits the new checkpoint as a turn does, so the next turn
  builds on it instead of rolling it back.
- **History is bounded.** At most :data:`MAX_HISTORY` states per call, since each state
  loads its checkpoint's blobs.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot, StateUpdate
from psycopg.types.json import Jsonb

from runtime.agents import CompiledGraph, GraphCache, TemplateStore
from runtime.checkpoints import LINEAGE
from runtime.db import Pool, fetch_all
from runtime.errors import InvalidInput, NotFound
from runtime.sessions import Session, SessionStore, TurnCounters

__all__ = ["DEFAULT_HISTORY", "MAX_HISTORY", "ThreadStates", "empty_snapshot"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HISTORY = 10
MAX_HISTORY = 100

# What the graph raises for an update it cannot apply (unknown node, malformed values).
_REFUSED_UPDATE = (InvalidUpdateError, ValueError, TypeError, KeyError, NotImplementedError)


def empty_snapshot(thread_id: str) -> StateSnapshot:
    """The state of a thread with no checkpoint yet."""
    return StateSnapshot(
        values={},
        next=(),
        config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}},
        metadata=None,
        created_at=None,
        parent_config=None,
        tasks=(),
        interrupts=(),
    )


def _config(thread_id: str, checkpoint_id: str | None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _message_count(snapshot: StateSnapshot) -> int:
    values = snapshot.values if isinstance(snapshot.values, dict) else {}
    return len(values.get("messages") or [])


class ThreadStates:
    """State, history and state updates of sessions' threads (see the module docstring)."""

    def __init__(
        self, pool: Pool, sessions: SessionStore, templates: TemplateStore, graphs: GraphCache
    ) -> None:
        self._pool = pool
        self._sessions = sessions
        self._templates = templates
        self._graphs = graphs

    async def graph(self, session: Session) -> CompiledGraph:
        """The compiled graph of the session's agent (current version)."""
        template = await self._templates.get(session.agent_id, owner=session.agent_owner)
        return (await self._graphs.get(template)).graph

    async def lineage(
        self,
        session: Session,
        *,
        start: str | None = None,
        limit: int = DEFAULT_HISTORY,
        before: str | None = None,
        metadata: dict[str, Any] | None = None,
        only: str | None = None,
    ) -> builtins.list[str]:
        """Checkpoint ids in the committed lineage, newest first.

        Args:
            start: walk from this checkpoint instead of the committed one (it must itself
                be in the committed lineage to mean anything; callers check).
            before: only checkpoints older than this one.
            metadata: only checkpoints whose metadata contains these pairs.
            only: only this checkpoint (a membership test).
        """
        start = start or session.committed_checkpoint_id
        if start is None:
            return []
        rows = await fetch_all(
            self._pool,
            LINEAGE,
            {
                "thread": session.thread_id,
                "start": start,
                "only": only,
                "before": before,
                "meta": Jsonb(metadata) if metadata else None,
                "n": limit,
            },
        )
        return [r["checkpoint_id"] for r in rows]

    async def check_visible(self, session: Session, checkpoint_id: str) -> None:
        """``NotFound`` unless the checkpoint is in the session's committed lineage."""
        if not await self.lineage(session, only=checkpoint_id, limit=1):
            raise NotFound(
                f"checkpoint {checkpoint_id!r} not found in thread {session.session_id!r}",
                thread_id=session.session_id,
                checkpoint_id=checkpoint_id,
            )

    async def state(
        self, session: Session, checkpoint_id: str | None = None, *, subgraphs: bool = False
    ) -> StateSnapshot:
        """The state at the committed checkpoint, or at ``checkpoint_id`` in its lineage;
        with ``subgraphs``, each pending task's subgraph state too.

        Raises:
            NotFound: ``checkpoint_id`` is not in the session's committed lineage.
        """
        if checkpoint_id is not None:
            await self.check_visible(session, checkpoint_id)
        target = checkpoint_id or session.committed_checkpoint_id
        if target is None:
            return empty_snapshot(session.thread_id)
        graph = await self.graph(session)
        return await graph.aget_state(_config(session.thread_id, target), subgraphs=subgraphs)

    async def history(
        self,
        session: Session,
        *,
        limit: int = DEFAULT_HISTORY,
        before: str | None = None,
        checkpoint_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> builtins.list[StateSnapshot]:
        """Past states, newest first: at most ``limit`` (capped at :data:`MAX_HISTORY`).

        Args:
            before: only states older than this checkpoint.
            checkpoint_id: start from this checkpoint of the committed lineage.
            metadata: only states whose checkpoint metadata contains these pairs.
        """
        if limit < 1:
            raise InvalidInput("limit must be at least 1", field="limit")
        limit = min(limit, MAX_HISTORY)
        if checkpoint_id is not None:
            await self.check_visible(session, checkpoint_id)
        ids = await self.lineage(
            session, start=checkpoint_id, limit=limit, before=before, metadata=metadata
        )
        if not ids:
            return []
        graph = await self.graph(session)
        return [await graph.aget_state(_config(session.thread_id, cid)) for cid in ids]

    async def update(
        self,
        owner: str,
        session_id: str,
        values: dict[str, Any] | list[Any] | None,
        *,
        as_node: str | None = None,
        checkpoint_id: str | None = None,
    ) -> str:
        """Write ``values`` to the thread as if ``as_node`` had returned them; commit it.

        Runs under the session's turn lease (``SessionBusy`` while a turn runs,
        ``AwaitingApproval`` while tool calls await a decision), on the committed checkpoint
        or on ``checkpoint_id`` of its lineage (a fork, which becomes the committed state).
        Returns the new checkpoint's id.

        Raises:
            InvalidInput: the graph refuses the update (unknown node, malformed values).
            NotFound: no such session, or ``checkpoint_id`` outside the committed lineage.
        """
        if values is not None and not isinstance(values, dict | list):
            raise InvalidInput(
                "values must be an object of channel updates, or a list", field="values"
            )
        written, _ = await self.update_with(
            owner,
            session_id,
            lambda _: (values, None),
            as_node=as_node,
            checkpoint_id=checkpoint_id,
        )
        return written

    async def update_with(
        self,
        owner: str,
        session_id: str,
        plan: Callable[[dict[str, Any]], tuple[dict[str, Any] | list[Any] | None, T]],
        *,
        as_node: str | None = None,
        checkpoint_id: str | None = None,
    ) -> tuple[str, T]:
        """:meth:`update` with values computed from the state read under the lease.

        ``plan`` receives the base state's values and returns the update and a result of
        its own (returned beside the new checkpoint's id); whatever it raises aborts the
        update with nothing written.
        """
        lease = await self._sessions.acquire(owner, session_id)
        try:
            # Written as they go (not deferred): fenced, so nothing lands once the lease is lost.
            with self._sessions.fencing(lease):
                session = await self._sessions.get(owner, session_id)
                if checkpoint_id is not None:
                    await self.check_visible(session, checkpoint_id)
                graph = (await self._graphs.for_row(lease.agent_row)).graph
                base = _config(lease.thread_id, checkpoint_id or lease.committed_checkpoint_id)
                current = await graph.aget_state(base) if lease.committed_checkpoint_id else None
                before = _message_count(current) if current else 0
                values, result = plan(dict(current.values) if current else {})
                try:
                    written = await _write_update(graph, base, values, as_node)
                except _REFUSED_UPDATE as exc:
                    raise InvalidInput(
                        f"the graph refused the state update: {exc}", field="values"
                    ) from exc
                after = _message_count(await graph.aget_state(written))
        except BaseException:
            await self._sessions.abort(lease)
            raise
        await self._sessions.release(lease, TurnCounters(turns=0, messages=after - before))
        return str(written["configurable"]["checkpoint_id"]), result


async def _write_update(
    graph: Any, base: RunnableConfig, values: dict[str, Any] | list[Any] | None, as_node: str | None
) -> RunnableConfig:
    """Apply an update as LangGraph's ``POST /threads/{id}/state`` takes it: an object of
    channel values, or a list: of objects, applied one after the other (each as ``as_node``),
    or else the value of a graph whose state is a list."""
    if isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
        steps = [[StateUpdate(v, as_node)] for v in values]
        written: RunnableConfig = await graph.abulk_update_state(base, steps)
        return written
    written = await graph.aupdate_state(base, values, as_node=as_node)
    return written
