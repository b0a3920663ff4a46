"""Sessions: the registry in Postgres, the per-session turn lease, and expiry.

A session is one row of ``sessions`` keyed by ``(owner, session_id)``. Its ``thread_id`` is
a random UUID stored with that pair, so two owners using one ``session_id`` never share a
checkpointer thread. Nothing about a session is kept in memory.

**Lease.** One turn at a time per session, across every process: a turn takes the lease by
an ``UPDATE ... WHERE lease is free or lapsed`` (no connection is held during the model
call), renews it while it runs, and frees it in the same statement that bumps the
counters. A process that dies mid-turn frees the session when its lease lapses.

**Expiry.** Sliding TTL: every turn moves ``expires_at`` to ``now() + ttl_seconds``. The
sweeper deletes expired sessions and every checkpoint row of their threads in one
transaction per batch; ``FOR UPDATE SKIP LOCKED`` lets several replicas sweep at once.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from runtime.agents import AgentTemplate, TemplateStore, template_from_row
from runtime.checkpoints import (
    LATEST_CHECKPOINT,
    Write,
    delete_threads,
    prune_thread,
    replay_writes,
    rollback_thread,
)
from runtime.db import (
    Page,
    Pool,
    check_limit,
    decode_cursor,
    encode_cursor,
    text,
    timestamp,
)
from runtime.errors import (
    AwaitingApproval,
    Conflict,
    InvalidInput,
    LeaseLost,
    NotFound,
    NothingToResume,
    PayloadTooLarge,
    SessionBusy,
    SessionExpired,
    SessionInactive,
)
from runtime.ids import new_id, validate_id
from runtime.sessions.sql import LEASE_HELD

__all__ = [
    "MAX_METADATA_BYTES",
    "Lease",
    "Session",
    "SessionStore",
    "THREAD_SORT_KEYS",
    "SweepResult",
    "ThreadStatus",
    "TurnCounters",
]

log = logging.getLogger(__name__)

MAX_METADATA_BYTES = 16 * 1024
Status = Literal["active", "inactive"]


@dataclass(frozen=True)
class Session:
    """A session's metadata and counters (its messages live in the checkpointer)."""

    owner: str
    session_id: str
    thread_id: str
    agent_id: str
    name: str | None
    description: str | None
    metadata: dict[str, Any]
    status: Status
    ttl_seconds: int
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    turns: int
    messages: int
    tokens_in: int
    tokens_out: int
    model_latency_ms: int
    # The checkpoint of the last completed turn: what history shows while a turn runs.
    committed_checkpoint_id: str | None = None
    # Paused on tool calls that need a human decision (listed in pending_approvals).
    awaiting_approval: bool = False
    pending_approvals: list[dict[str, Any]] | None = None
    # When the turn lease lapses; None while no turn holds it.
    lease_expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Session:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def busy(self) -> bool:
        """Whether a turn held the lease when this row was read."""
        return self.lease_expires_at is not None and self.lease_expires_at > datetime.now(UTC)


@dataclass
class TurnCounters:
    """What one turn adds to its session's counters."""

    turns: int = 1
    messages: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    model_latency_ms: int = 0
    latency_ms: float = 0.0


@dataclass
class Lease:
    """The right to run one turn on a session, held until :meth:`SessionStore.release`."""

    owner: str
    session_id: str
    thread_id: str
    agent_id: str
    agent_version: int
    token: str
    agent_row: dict[str, Any] = field(repr=False)
    committed_checkpoint_id: str | None = None
    pending_approvals: list[dict[str, Any]] | None = None
    lost: bool = False

    def template(self) -> AgentTemplate:
        """The template version this turn runs (parsed only on a graph-cache miss)."""
        return template_from_row(self.agent_row)


@dataclass(frozen=True)
class SweepResult:
    """What a sweep removed."""

    sessions: list[tuple[str, str]]  # (owner, session_id)
    thread_ids: list[str]

    @property
    def count(self) -> int:
        return len(self.sessions)


def _check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    metadata = dict(metadata or {})
    size = len(json.dumps(metadata, separators=(",", ":"), default=str).encode())
    if size > MAX_METADATA_BYTES:
        raise PayloadTooLarge(
            f"metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}",
            field="metadata",
            limit=MAX_METADATA_BYTES,
        )
    return metadata


ThreadStatus = Literal["idle", "busy", "interrupted", "error"]

_LEASED = "(lease_token IS NOT NULL AND lease_expires_at >= now())"
_THREAD_STATUS_SQL: dict[str, str] = {
    "busy": _LEASED,
    "interrupted": f"(awaiting_approval AND NOT {_LEASED})",
    "idle": f"(NOT awaiting_approval AND NOT {_LEASED})",
    "error": "false",
}
# The LangGraph thread sort keys and the columns they sort on.
THREAD_SORT_KEYS: dict[str, str] = {
    "thread_id": "session_id",
    "created_at": "created_at",
    "updated_at": "last_activity_at",
    "state_updated_at": "last_activity_at",
    "status": f"(CASE WHEN {_LEASED} THEN 1 WHEN awaiting_approval THEN 2 ELSE 0 END)",
}


def _search_filter(
    owner: str,
    agent_id: str | None,
    metadata: dict[str, Any] | None,
    ids: builtins.list[str] | None,
    thread_status: str | None,
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (and its parameters) of a thread search or count."""
    if thread_status is not None and thread_status not in _THREAD_STATUS_SQL:
        raise InvalidInput(
            "status must be idle, busy, interrupted or error",
            field="status",
            allowed=sorted(_THREAD_STATUS_SQL),
        )
    where = (
        "owner = %(owner)s AND expires_at > now() "
        "AND (%(agent)s::text IS NULL OR agent_id = %(agent)s) "
        "AND (%(meta)s::jsonb IS NULL OR metadata @> %(meta)s::jsonb) "
        "AND (%(ids)s::text[] IS NULL OR session_id = ANY(%(ids)s::text[]))"
    )
    if thread_status is not None:
        where += f" AND {_THREAD_STATUS_SQL[thread_status]}"
    params = {
        "owner": owner,
        "agent": agent_id,
        "meta": Jsonb(metadata) if metadata else None,
        "ids": ids,
    }
    return where, params


class SessionStore:
    """The session registry, leases and expiry, on one connection pool."""

    def __init__(
        self,
        pool: Pool,
        templates: TemplateStore,
        *,
        default_ttl_seconds: int,
        lease_timeout_seconds: float,
        lease_wait_seconds: float = 0.0,
        checkpoints_kept: int = 0,
    ) -> None:
        self._pool = pool
        # Checkpoints kept per thread after each turn (0: all).
        self.checkpoints_kept = checkpoints_kept
        self._templates = templates
        self.default_ttl_seconds = default_ttl_seconds
        self.lease_timeout_seconds = lease_timeout_seconds
        self.lease_wait_seconds = lease_wait_seconds

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
        metadata = _check_metadata(metadata)
        template = await self._templates.get(agent_id, owner=owner)
        ttl = ttl_seconds or template.spec.session_ttl_seconds or self.default_ttl_seconds
        for _ in range(3):
            async with self._pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "INSERT INTO sessions (owner, session_id, thread_id, agent_id, name, "
                        "description, metadata, ttl_seconds, expires_at) VALUES "
                        "(%s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s)) "
                        "ON CONFLICT (owner, session_id) DO NOTHING RETURNING *",
                        (
                            owner,
                            session_id,
                            str(uuid.uuid4()),
                            agent_id,
                            name,
                            description,
                            Jsonb(metadata),
                            ttl,
                            ttl,
                        ),
                    )
                ).fetchone()
                if row is not None:
                    return Session.from_row(row), True
                row = await (
                    await conn.execute(
                        "SELECT *, expires_at <= now() AS expired FROM sessions "
                        "WHERE owner = %s AND session_id = %s",
                        (owner, session_id),
                    )
                ).fetchone()
            if row is None:
                continue  # deleted between the two statements: try the insert again
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

    async def get(self, owner: str, session_id: str) -> Session:
        """The session, or ``NotFound`` (also for an expired one)."""
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT * FROM sessions WHERE owner = %s AND session_id = %s "
                    "AND expires_at > now()",
                    (owner, session_id),
                )
            ).fetchone()
        if row is None:
            raise NotFound(f"session {session_id!r} not found", session_id=session_id)
        return Session.from_row(row)

    async def set_status(self, owner: str, session_id: str, status: Status) -> Session:
        """Activate or deactivate a session; an inactive session refuses turns."""
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    "UPDATE sessions SET status = %s WHERE owner = %s AND session_id = %s "
                    "AND expires_at > now() RETURNING *",
                    (status, owner, session_id),
                )
            ).fetchone()
        if row is None:
            raise NotFound(f"session {session_id!r} not found", session_id=session_id)
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
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM sessions WHERE expires_at > now() "
                    "AND (%(owner)s::text IS NULL OR owner = %(owner)s) "
                    "AND (%(agent)s::text IS NULL OR agent_id = %(agent)s) "
                    "AND (%(status)s::text IS NULL OR status = %(status)s) "
                    "AND (%(meta)s::jsonb IS NULL OR metadata @> %(meta)s::jsonb) "
                    "AND (%(t)s::timestamptz IS NULL "
                    " OR (created_at, owner, session_id) < (%(t)s, %(o)s, %(s)s)) "
                    "ORDER BY created_at DESC, owner DESC, session_id DESC LIMIT %(n)s",
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
            ).fetchall()
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
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM sessions "
                    "WHERE status = 'active' AND expires_at > now()"
                )
            ).fetchone()
        return int(row["n"]) if row else 0

    async def search(
        self,
        *,
        owner: str,
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        ids: builtins.list[str] | None = None,
        thread_status: ThreadStatus | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: Literal["asc", "desc"] = "desc",
    ) -> tuple[builtins.list[Session], bool]:
        """One offset page of the owner's live sessions and whether more follow.

        The LangGraph thread search: ``thread_status`` is ``idle``, ``busy`` (a turn holds
        the lease), ``interrupted`` (awaiting approval) or ``error`` (never recorded, so
        nothing matches); ``sort_by`` one of :data:`THREAD_SORT_KEYS`.
        """
        if sort_by not in THREAD_SORT_KEYS:
            raise InvalidInput(
                f"cannot sort by {sort_by!r}", field="sort_by", allowed=sorted(THREAD_SORT_KEYS)
            )
        if sort_order not in ("asc", "desc"):
            raise InvalidInput("sort_order must be asc or desc", field="sort_order")
        if limit < 1 or limit > 1000 or offset < 0:
            raise InvalidInput("limit must be 1-1000 and offset not negative", field="limit")
        where, params = _search_filter(owner, agent_id, metadata, ids, thread_status)
        order = f"{THREAD_SORT_KEYS[sort_by]} {sort_order.upper()}, session_id {sort_order.upper()}"
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT * FROM sessions WHERE {where} ORDER BY {order} "
                    "LIMIT %(n)s OFFSET %(offset)s",
                    {**params, "n": limit + 1, "offset": offset},
                )
            ).fetchall()
        return [Session.from_row(r) for r in rows[:limit]], len(rows) > limit

    async def count(
        self,
        *,
        owner: str,
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        thread_status: ThreadStatus | None = None,
    ) -> int:
        """How many of the owner's live sessions match (filters as in :meth:`search`)."""
        where, params = _search_filter(owner, agent_id, metadata, None, thread_status)
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(f"SELECT count(*) AS n FROM sessions WHERE {where}", params)
            ).fetchone()
        return int(row["n"]) if row else 0

    async def bind_agent(self, owner: str, session_id: str, agent_id: str) -> Session:
        """Move a session that has no conversation yet to another agent.

        Raises:
            NotFound: no such session, or an agent the owner cannot see.
            Conflict: the session already has messages (or is running a turn).
        """
        await self._templates.get(agent_id, owner=owner)
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    "UPDATE sessions SET agent_id = %s WHERE owner = %s AND session_id = %s "
                    "AND expires_at > now() AND committed_checkpoint_id IS NULL "
                    "AND (lease_token IS NULL OR lease_expires_at < now()) RETURNING *",
                    (agent_id, owner, session_id),
                )
            ).fetchone()
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

    async def update(self, owner: str, session_id: str, **changes: Any) -> Session:
        """Change ``name``, ``description``, ``metadata`` (replaced whole) or ``ttl_seconds``.

        A new TTL also moves the expiry to ``now() + ttl_seconds``.
        """
        allowed = {"name", "description", "metadata", "ttl_seconds"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"cannot change {sorted(unknown)}", fields=sorted(unknown))
        if "metadata" in changes:
            changes["metadata"] = Jsonb(_check_metadata(changes["metadata"]))
        if "ttl_seconds" in changes and (
            changes["ttl_seconds"] is None or changes["ttl_seconds"] <= 0
        ):
            raise InvalidInput("ttl_seconds must be positive", field="ttl_seconds")
        sets = [f"{name} = %({name})s" for name in sorted(changes)]
        if "ttl_seconds" in changes:
            sets.append("expires_at = now() + make_interval(secs => %(ttl_seconds)s)")
        if not sets:
            return await self.get(owner, session_id)
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"UPDATE sessions SET {', '.join(sets)} "
                    "WHERE owner = %(owner)s AND session_id = %(sid)s AND expires_at > now() "
                    "RETURNING *",
                    {**changes, "owner": owner, "sid": session_id},
                )
            ).fetchone()
        if row is None:
            raise NotFound(f"session {session_id!r} not found", session_id=session_id)
        return Session.from_row(row)

    async def clear(self, owner: str, session_id: str) -> Session:
        """Empty the conversation (every checkpoint of the thread), keeping the session.

        Refused with ``SessionBusy`` while a turn runs.
        """
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "UPDATE sessions SET committed_checkpoint_id = NULL, messages = 0, "
                    "awaiting_approval = false, pending_approvals = NULL "
                    "WHERE owner = %s AND session_id = %s AND expires_at > now() "
                    "AND (lease_token IS NULL OR lease_expires_at < now()) RETURNING *",
                    (owner, session_id),
                )
            ).fetchone()
            if row is None:
                await self.get(owner, session_id)  # NotFound if that is why
                raise SessionBusy(
                    f"session {session_id!r} is running a turn", session_id=session_id
                )
            await delete_threads(conn, [row["thread_id"]], keep_records=True)
        return Session.from_row(row)

    async def delete(self, owner: str, session_id: str) -> None:
        """Delete a session and every checkpoint of its thread; refused while a turn runs."""
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "DELETE FROM sessions WHERE owner = %s AND session_id = %s "
                    "AND (lease_token IS NULL OR lease_expires_at < now()) RETURNING thread_id",
                    (owner, session_id),
                )
            ).fetchone()
            if row is None:
                exists = await (
                    await conn.execute(
                        "SELECT 1 FROM sessions WHERE owner = %s AND session_id = %s",
                        (owner, session_id),
                    )
                ).fetchone()
                if exists:
                    raise SessionBusy(
                        f"session {session_id!r} is running a turn", session_id=session_id
                    )
                raise NotFound(f"session {session_id!r} not found", session_id=session_id)
            await delete_threads(conn, [row["thread_id"]])

    async def _purge_expired(self, owner: str, session_id: str) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "DELETE FROM sessions WHERE owner = %s AND session_id = %s "
                    "AND expires_at <= now() "
                    "AND (lease_token IS NULL OR lease_expires_at < now()) RETURNING thread_id",
                    (owner, session_id),
                )
            ).fetchone()
            if row is not None:
                await delete_threads(conn, [row["thread_id"]])

    # -- lease ----------------------------------------------------------------------------

    async def acquire(self, owner: str, session_id: str, *, resume: bool = False) -> Lease:
        """Take the session's turn lease, waiting up to ``lease_wait_seconds`` if busy.

        A session paused for approval takes only a resume (``resume=True``), and a resume
        only a paused session.

        Raises:
            NotFound / SessionExpired: no live session for this owner.
            SessionInactive: the session is deactivated.
            AwaitingApproval: a new message while tool calls await a human decision.
            NothingToResume: a resume while nothing awaits a decision.
            SessionBusy: another turn holds the lease past the wait bound.
        """
        token = secrets.token_hex(12)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_wait_seconds
        delay = 0.02
        while True:
            async with self._pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "UPDATE sessions s SET lease_token = %(token)s, "
                        "lease_expires_at = now() + make_interval(secs => %(timeout)s) "
                        "FROM agents a "
                        "WHERE s.owner = %(owner)s AND s.session_id = %(sid)s "
                        "AND a.agent_id = s.agent_id AND s.status = 'active' "
                        "AND s.expires_at > now() AND s.awaiting_approval = %(resume)s "
                        "AND (s.lease_token IS NULL OR s.lease_expires_at < now()) "
                        "RETURNING s.thread_id, s.committed_checkpoint_id, s.pending_approvals, "
                        f"({LATEST_CHECKPOINT}) AS latest_checkpoint_id, "
                        "a.agent_id, a.owner, a.version, a.spec, a.created_at, a.updated_at",
                        {
                            "token": token,
                            "timeout": self.lease_timeout_seconds,
                            "owner": owner,
                            "sid": session_id,
                            "resume": resume,
                        },
                    )
                ).fetchone()
                if row is not None:
                    committed = row["committed_checkpoint_id"]
                    if row["latest_checkpoint_id"] != committed:
                        # A previous turn died mid-way (its process was killed, or it failed
                        # and could not clean up): drop what it wrote before going on.
                        log.warning("rolling back an unfinished turn on %s", session_id)
                        async with conn.transaction():
                            await rollback_thread(conn, row["thread_id"], committed)
                    return Lease(
                        owner=owner,
                        session_id=session_id,
                        thread_id=row["thread_id"],
                        agent_id=row["agent_id"],
                        agent_version=row["version"],
                        token=token,
                        agent_row=row,
                        committed_checkpoint_id=committed,
                        pending_approvals=row["pending_approvals"],
                    )
                why = await (
                    await conn.execute(
                        "SELECT s.status, s.expires_at <= now() AS expired, "
                        "s.awaiting_approval, s.pending_approvals, "
                        "a.agent_id IS NULL AS agent_missing "
                        "FROM sessions s LEFT JOIN agents a ON a.agent_id = s.agent_id "
                        "WHERE s.owner = %s AND s.session_id = %s",
                        (owner, session_id),
                    )
                ).fetchone()
            if why is None:
                raise NotFound(f"session {session_id!r} not found", session_id=session_id)
            if why["expired"]:
                raise SessionExpired(f"session {session_id!r} has expired", session_id=session_id)
            if why["agent_missing"]:
                raise NotFound(
                    f"the agent of session {session_id!r} was deleted", session_id=session_id
                )
            if why["status"] != "active":
                raise SessionInactive(
                    f"session {session_id!r} is inactive; activate it to send messages",
                    session_id=session_id,
                )
            if why["awaiting_approval"] and not resume:
                raise AwaitingApproval(
                    f"session {session_id!r} is waiting for a decision on tool calls; "
                    "resume it with approve, reject or edit decisions first",
                    session_id=session_id,
                    pending_approvals=why["pending_approvals"] or [],
                )
            if resume and not why["awaiting_approval"]:
                raise NothingToResume(
                    f"session {session_id!r} is not waiting for any approval",
                    session_id=session_id,
                )
            if loop.time() >= deadline:
                raise SessionBusy(
                    f"session {session_id!r} is running another turn; retry when it ends",
                    session_id=session_id,
                )
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0.0)))
            delay = min(delay * 2, 0.5)

    async def renew(self, lease: Lease) -> bool:
        """Push the lease's expiry forward; ``False`` when it has been lost."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE sessions SET lease_expires_at = now() + make_interval(secs => %s) "
                "WHERE owner = %s AND session_id = %s AND lease_token = %s",
                (self.lease_timeout_seconds, lease.owner, lease.session_id, lease.token),
            )
        if cur.rowcount == 0:
            lease.lost = True
        return not lease.lost

    async def abort(self, lease: Lease) -> None:
        """End a failed turn: roll its writes back to the last completed turn, free the lease.

        The session is left exactly as it was before the turn, so the client can resend.
        """
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "UPDATE sessions SET lease_token = NULL, lease_expires_at = NULL "
                    "WHERE owner = %s AND session_id = %s AND lease_token = %s "
                    "RETURNING thread_id, committed_checkpoint_id",
                    (lease.owner, lease.session_id, lease.token),
                )
            ).fetchone()
            if row is None:
                lease.lost = True  # someone else holds it now; their acquire rolls back
                return
            await rollback_thread(conn, row["thread_id"], row["committed_checkpoint_id"])

    async def release(
        self,
        lease: Lease,
        counters: TurnCounters | None = None,
        *,
        pending_approvals: builtins.list[dict[str, Any]] | None = None,
        writes: Sequence[Write] = (),
    ) -> None:
        """End a completed turn: commit its checkpoint, add its counters, slide the TTL.

        ``pending_approvals`` marks a turn paused for a human decision. ``writes`` are the
        turn's checkpoint writes, deferred by the saver (:func:`deferring_writes`): they
        commit in the same transaction, or not at all when the lease was lost.

        Raises:
            LeaseLost: the lease had lapsed and been taken by another turn.
        """
        c = counters or TurnCounters(turns=0)
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.pipeline():
                await replay_writes(conn, writes)
                cur = await self._release(conn, lease, c, pending_approvals)
                row = await cur.fetchone()
            if not row or not row["n"]:
                lease.lost = True
                # Raised inside the transaction: the turn's checkpoint writes roll back.
                raise LeaseLost(
                    f"the lease on session {lease.session_id!r} lapsed before the turn ended",
                    session_id=lease.session_id,
                )

    async def _release(
        self,
        conn: AsyncConnection[Any],
        lease: Lease,
        c: TurnCounters,
        pending_approvals: builtins.list[dict[str, Any]] | None,
    ) -> Any:
        # One statement: free the lease, bump the counters, commit the checkpoint, and
        # (for a real turn) log it for the per-agent statistics. Retention's prune rides
        # in the same round trip and the same transaction (one WAL flush).
        cur = await conn.execute(
            "WITH s AS (UPDATE sessions s SET lease_token = NULL, lease_expires_at = NULL, "
            "turns = turns + %(turns)s, messages = messages + %(messages)s, "
            "tokens_in = tokens_in + %(tin)s, tokens_out = tokens_out + %(tout)s, "
            "model_latency_ms = model_latency_ms + %(lat)s, last_activity_at = now(), "
            "awaiting_approval = %(awaiting)s, pending_approvals = %(pending)s, "
            "expires_at = now() + make_interval(secs => ttl_seconds), "
            f"committed_checkpoint_id = ({LATEST_CHECKPOINT}) "
            "WHERE owner = %(owner)s AND session_id = %(sid)s AND lease_token = %(token)s "
            "RETURNING agent_id, owner), "
            "log AS (INSERT INTO turn_log "
            "(agent_id, owner, latency_ms, messages, tokens_in, tokens_out) "
            "SELECT agent_id, owner, %(latency)s, %(messages)s, %(tin)s, %(tout)s FROM s "
            "WHERE %(turns)s > 0) "
            "SELECT count(*) AS n FROM s",
            {
                "awaiting": bool(pending_approvals),
                "pending": Jsonb(pending_approvals) if pending_approvals else None,
                "latency": c.latency_ms,
                "turns": c.turns,
                "messages": c.messages,
                "tin": c.tokens_in,
                "tout": c.tokens_out,
                "lat": c.model_latency_ms,
                "owner": lease.owner,
                "sid": lease.session_id,
                "token": lease.token,
            },
        )
        if self.checkpoints_kept:
            await prune_thread(
                conn, lease.thread_id, kept=self.checkpoints_kept, lease_held=LEASE_HELD
            )
        return cur

    @asynccontextmanager
    async def renewing(self, lease: Lease, task: asyncio.Task[Any]) -> AsyncIterator[None]:
        """Renew ``lease`` every third of its timeout while the block runs.

        If a renewal finds the lease lost, ``task`` (the turn) is cancelled, so a turn never
        keeps writing to a thread another holder has taken.
        """

        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(self.lease_timeout_seconds / 3)
                if not await self.renew(lease):
                    task.cancel()
                    return

        renewer = asyncio.create_task(renew_forever())
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    # -- expiry ---------------------------------------------------------------------------

    async def sweep(
        self, *, batch_size: int = 1000, idle_seconds: float | None = None
    ) -> SweepResult:
        """Delete expired sessions (or, with ``idle_seconds``, those idle that long).

        Each batch is one transaction removing the sessions and every checkpoint row of their
        threads; sessions in a turn are skipped; concurrent sweepers skip each other's rows.
        """
        removed: list[tuple[str, str]] = []
        threads: list[str] = []
        while True:
            async with self._pool.connection() as conn, conn.transaction():
                rows = await (
                    await conn.execute(
                        "DELETE FROM sessions WHERE (owner, session_id) IN ("
                        " SELECT owner, session_id FROM sessions WHERE "
                        " (CASE WHEN %(idle)s::float8 IS NULL THEN expires_at <= now() "
                        "  ELSE last_activity_at <= now() - make_interval(secs => %(idle)s) END)"
                        " AND (lease_token IS NULL OR lease_expires_at < now())"
                        " ORDER BY expires_at LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
                        "RETURNING owner, session_id, thread_id",
                        {"idle": idle_seconds, "n": batch_size},
                    )
                ).fetchall()
                batch = [r["thread_id"] for r in rows]
                await delete_threads(conn, batch)
            removed.extend((r["owner"], r["session_id"]) for r in rows)
            threads.extend(batch)
            if len(rows) < batch_size:
                return SweepResult(sessions=removed, thread_ids=threads)
