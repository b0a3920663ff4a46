"""Sessions: the registry in Postgres, and expiry.

A session is one row of ``sessions`` keyed by ``(owner, session_id)``. Its ``thread_id`` is
a random UUID stored with that pair, so two owners using one ``session_id`` never share a
checkpointer thread. Nothing about a session is kept in memory. Its turn lease is
:class:`~runtime.sessions.lease.SessionLeases`', which :class:`SessionStore` extends.

**Expiry.** Sliding TTL: every turn moves ``expires_at`` to ``now() + ttl_seconds``. The
sweeper deletes expired sessions and every checkpoint row of their threads in one
transaction per batch; ``FOR UPDATE SKIP LOCKED`` lets several replicas sweep at once.
"""

from __future__ import annotations

import builtins
import uuid
from typing import TYPE_CHECKING, Any, Literal

from psycopg.types.json import Jsonb

from runtime.checkpoints import delete_threads
from runtime.db import (
    Page,
    Pool,
    Row,
    check_limit,
    check_offset_page,
    check_sort,
    connect,
    decode_cursor,
    encode_cursor,
    fetch_all,
    fetch_one,
    text,
    timestamp,
)
from runtime.errors import Conflict, InvalidInput, NotFound, SessionBusy
from runtime.ids import new_id, validate_id
from runtime.sessions import sql
from runtime.sessions.lease import SessionLeases

if TYPE_CHECKING:  # sessions never import agents at run time: agents import sessions.sql
    from runtime.agents import TemplateStore

from runtime.sessions.model import (
    Session,
    SessionSortKey,
    StateFilter,
    Status,
    SweepResult,
    check_metadata,
)

__all__ = ["SessionStore"]

# Tries of get_or_create's insert-or-read before it gives up on a racing create/delete.
_CREATE_ATTEMPTS = 3


def _not_found(session_id: str) -> NotFound:
    return NotFound(f"session {session_id!r} not found", session_id=session_id)


def _busy(session_id: str) -> SessionBusy:
    return SessionBusy(f"session {session_id!r} is running a turn", session_id=session_id)


def _search_params(
    owner: str,
    agent_id: str | None,
    metadata: dict[str, Any] | None,
    ids: builtins.list[str] | None,
    graph: str | None = None,
) -> dict[str, Any]:
    """The parameters of :func:`~runtime.sessions.sql.search_sql` and ``count_sql``."""
    return {
        "owner": owner,
        "agent": agent_id,
        "meta": Jsonb(metadata) if metadata else None,
        "ids": ids,
        "graph": graph,
    }


def _check_state(state: str | None) -> None:
    if state is not None and state not in sql.STATES:
        raise InvalidInput(
            "state must be idle, running, awaiting_approval, interrupted or paused",
            field="state",
            allowed=sorted(sql.STATES),
        )


class SessionStore(SessionLeases):
    """The session registry, leases and expiry, on one connection pool."""

    def __init__(
        self,
        pool: Pool,
        templates: TemplateStore,
        *,
        default_ttl_seconds: int,
        lease_timeout_seconds: float,
        liveness_seconds: float,
        database_timeout_seconds: float,
        lease_wait_seconds: float = 0.0,
        checkpoints_kept: int = 0,
        holder: str | None = None,
    ) -> None:
        super().__init__(
            pool,
            lease_timeout_seconds=lease_timeout_seconds,
            liveness_seconds=liveness_seconds,
            database_timeout_seconds=database_timeout_seconds,
            lease_wait_seconds=lease_wait_seconds,
            checkpoints_kept=checkpoints_kept,
            holder=holder,
        )
        self._templates = templates
        self.default_ttl_seconds = default_ttl_seconds

    # -- registry -------------------------------------------------------------------------

    async def get_or_create(
        self,
        owner: str,
        session_id: str | None,
        *,
        agent_id: str,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
    ) -> tuple[Session, bool]:
        """Return ``(session, created)``. A session bound to another agent is a ``Conflict``.

        An expired session that the sweeper has not reached yet is removed and created anew.
        """
        session_id = (
            new_id("ses") if session_id is None else validate_id(session_id, kind="session_id")
        )
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise InvalidInput("ttl_seconds must be positive", field="ttl_seconds")
        template = await self._templates.get(agent_id, owner=owner)  # its own, or a system one
        agent = (template.owner, agent_id)
        new = (owner, session_id, agent, name, description, Jsonb(check_metadata(metadata)))
        ttl = ttl_seconds or template.spec.session_ttl_seconds or self.default_ttl_seconds
        for _ in range(_CREATE_ATTEMPTS):
            row, created = await self._insert_or_read(*new, ttl)
            if row is None:
                continue  # deleted between the two statements: try the insert again
            if created:
                return Session.from_row(row), True
            if row["expired"]:
                await self._purge_expired(owner, session_id)
                continue
            if row["agent_id"] != agent_id:
                raise Conflict(
                    f"session {session_id!r} belongs to agent {row['agent_id']!r}",
                    session_id=session_id,
                    agent_id=row["agent_id"],
                )
            return Session.from_row(row), False
        raise Conflict(f"session {session_id!r} is being created and removed concurrently")

    async def _insert_or_read(
        self,
        owner: str,
        session_id: str,
        agent: tuple[str, str],
        name: str | None,
        description: str | None,
        metadata: Jsonb,
        ttl: int,
    ) -> tuple[Row | None, bool]:
        """``(new row, True)``, or ``(the existing row, expired or not, or None, False)``.

        ``agent`` is ``(agent_owner, agent_id)``."""
        thread_id = str(uuid.uuid4())
        params = (owner, session_id, thread_id, *agent, name, description, metadata, ttl, ttl)
        async with connect(self._pool) as conn:
            row = await fetch_one(conn, sql.INSERT_SESSION, params)
            if row is not None:
                return row, True
            return await fetch_one(conn, sql.SELECT_SESSION, (owner, session_id)), False

    async def get(self, owner: str, session_id: str) -> Session:
        """The session, or ``NotFound`` (also for an expired one)."""
        row = await fetch_one(self._pool, sql.SELECT_LIVE_SESSION, (owner, session_id))
        if row is None:
            raise _not_found(session_id)
        return Session.from_row(row)

    async def set_status(self, owner: str, session_id: str, status: Status) -> Session:
        """Activate or deactivate a session; an inactive session refuses turns."""
        row = await fetch_one(self._pool, sql.SET_STATUS, (status, owner, session_id))
        if row is None:
            raise _not_found(session_id)
        return Session.from_row(row)

    async def list(
        self,
        *,
        owner: str | None,
        agent_id: str | None = None,
        status: Status | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Session]:
        """Live sessions, newest first; ``owner=None`` lists every owner's (admin).

        ``metadata`` keeps sessions whose metadata contains every given key/value pair.
        """
        limit = check_limit(limit)
        after = decode_cursor("sessions", cursor, {"t": timestamp, "o": text, "s": text})
        if status is not None and status not in ("active", "inactive"):
            raise InvalidInput("status must be active or inactive", field="status")
        rows = await fetch_all(
            self._pool,
            sql.LIST_SESSIONS,
            {
                "owner": owner,
                "agent": agent_id,
                "status": status,
                "meta": Jsonb(metadata) if metadata else None,
                "t": after["t"] if after else None,
                "o": after["o"] if after else None,
                "s": after["s"] if after else None,
                "n": limit + 1,
            },
        )
        items = [Session.from_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(
                "sessions",
                {"t": last.created_at.isoformat(), "o": last.owner, "s": last.session_id},
            )
        return Page(items, next_cursor)

    async def count_active(self) -> int:
        """Live sessions with status active, across every owner."""
        row = await fetch_one(self._pool, sql.COUNT_ACTIVE)
        return int(row["n"]) if row else 0

    async def search(
        self,
        *,
        owner: str,
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        ids: builtins.list[str] | None = None,
        state: StateFilter | None = None,
        graph: str | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: SessionSortKey = "created_at",
        sort_order: Literal["asc", "desc"] = "desc",
    ) -> tuple[builtins.list[Session], bool]:
        """One offset page of the owner's live sessions and whether more follow.

        Args:
            state: only sessions in this :data:`~runtime.sessions.model.StateFilter`.
            graph: only sessions whose agent runs this graph.
            sort_by: one of :data:`~runtime.sessions.sql.SORT_KEYS` (``session_id``,
                ``created_at``, ``last_activity_at``, ``state``); ties by ``session_id``.
        """
        check_sort(sort_by, sort_order, sql.SORT_KEYS)
        check_offset_page(limit, offset)
        _check_state(state)
        rows = await fetch_all(
            self._pool,
            sql.search_sql(state, sort_by, descending=sort_order == "desc"),
            {
                **_search_params(owner, agent_id, metadata, ids, graph),
                "n": limit + 1,
                "offset": offset,
            },
        )
        return [Session.from_row(r) for r in rows[:limit]], len(rows) > limit

    async def count(
        self,
        *,
        owner: str,
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        state: StateFilter | None = None,
        graph: str | None = None,
    ) -> int:
        """How many of the owner's live sessions match (filters as in :meth:`search`)."""
        _check_state(state)
        params = _search_params(owner, agent_id, metadata, None, graph)
        row = await fetch_one(self._pool, sql.count_sql(state), params)
        return int(row["n"]) if row else 0

    async def bind_agent(self, owner: str, session_id: str, agent_id: str) -> Session:
        """Move a session that has no conversation yet to another agent.

        Raises:
            NotFound: no such session, or an agent the owner cannot see.
            Conflict: the session already has messages (or is running a turn).
        """
        template = await self._templates.get(agent_id, owner=owner)
        params = (template.owner, agent_id, owner, session_id)
        row = await fetch_one(self._pool, sql.BIND_AGENT, params)
        if row is not None:
            return Session.from_row(row)
        session = await self.get(owner, session_id)
        if session.agent_id == agent_id:
            return session
        raise Conflict(
            f"session {session_id!r} already belongs to agent {session.agent_id!r} and has "
            "messages (or is running a turn); it cannot move to another agent",
            session_id=session_id,
            agent_id=session.agent_id,
        )

    async def for_agent(
        self, owner: str, session_id: str, agent_id: str, *, create: bool = False
    ) -> Session:
        """The session, bound to ``agent_id``: created for it if missing and ``create``,
        moved to it if it has no conversation yet (see :meth:`bind_agent`).

        Raises:
            NotFound: no such session (and not ``create``), or an agent the owner cannot see.
            Conflict: the session belongs to another agent and already has messages.
        """
        try:
            session = await self.get(owner, session_id)
        except NotFound:
            if not create:
                raise
            session, _ = await self.get_or_create(owner, session_id, agent_id=agent_id)
        if session.agent_id != agent_id:
            session = await self.bind_agent(owner, session_id, agent_id)
        return session

    async def update(self, owner: str, session_id: str, **changes: Any) -> Session:
        """Change ``name``, ``description``, ``metadata`` (replaced whole) or ``ttl_seconds``.

        A new TTL also moves the expiry to ``now() + ttl_seconds``.
        """
        unknown = set(changes) - sql.UPDATABLE
        if unknown:
            raise InvalidInput(f"cannot change {sorted(unknown)}", fields=sorted(unknown))
        if "metadata" in changes:
            changes["metadata"] = Jsonb(check_metadata(changes["metadata"]))
        if "ttl_seconds" in changes and (
            changes["ttl_seconds"] is None or changes["ttl_seconds"] <= 0
        ):
            raise InvalidInput("ttl_seconds must be positive", field="ttl_seconds")
        if not changes:
            return await self.get(owner, session_id)
        row = await fetch_one(
            self._pool,
            sql.update_sql(changes),
            {**changes, "owner": owner, "sid": session_id},
        )
        if row is None:
            raise _not_found(session_id)
        return Session.from_row(row)

    async def clear(self, owner: str, session_id: str) -> Session:
        """Empty the conversation (every checkpoint of the thread), keeping the session.

        Refused with ``SessionBusy`` while a turn runs.
        """
        async with connect(self._pool) as conn, conn.transaction():
            row = await fetch_one(conn, sql.CLEAR, (owner, session_id))
            if row is None:
                await self.get(owner, session_id)  # NotFound if that is why
                raise _busy(session_id)
            await delete_threads(conn, [row["thread_id"]], keep_records=True)
        return Session.from_row(row)

    async def delete(self, owner: str, session_id: str) -> None:
        """Delete a session and every checkpoint of its thread; refused while a turn runs."""
        async with connect(self._pool) as conn, conn.transaction():
            row = await fetch_one(conn, sql.DELETE_SESSION, (owner, session_id))
            if row is None:
                if await fetch_one(conn, sql.SESSION_EXISTS, (owner, session_id)):
                    raise _busy(session_id)
                raise _not_found(session_id)
            await delete_threads(conn, [row["thread_id"]])

    # -- expiry ---------------------------------------------------------------------------

    async def _purge_expired(self, owner: str, session_id: str) -> None:
        async with connect(self._pool) as conn, conn.transaction():
            row = await fetch_one(conn, sql.PURGE_EXPIRED, (owner, session_id))
            if row is not None:
                await delete_threads(conn, [row["thread_id"]])

    async def sweep(
        self, *, batch_size: int = 1000, idle_seconds: float | None = None
    ) -> SweepResult:
        """Delete expired sessions (or, with ``idle_seconds``, those idle that long).

        Each batch is one transaction removing the sessions and every checkpoint row of their
        threads; sessions in a turn are skipped; concurrent sweepers skip each other's rows.
        """
        removed: builtins.list[tuple[str, str]] = []
        while True:
            async with connect(self._pool) as conn, conn.transaction():
                rows = await fetch_all(
                    conn, sql.SWEEP_BATCH, {"idle": idle_seconds, "n": batch_size}
                )
                await delete_threads(conn, [r["thread_id"] for r in rows])
            removed.extend((r["owner"], r["session_id"]) for r in rows)
            if len(rows) < batch_size:
                return SweepResult(sessions=removed)
