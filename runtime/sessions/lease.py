"""The per-session turn lease: one turn at a time per session, across every process.

A turn takes the lease by an ``UPDATE ... WHERE LEASE_FREE`` (no connection is held during
the model call), naming its holder, this process (:mod:`runtime.sessions.heartbeat`);
renews it while it runs, and frees it in the same statement that bumps the counters. A
process that dies mid-turn frees the session as soon as its heartbeat is stale (about
1.5 s); a holder alive but stuck, when its lease lapses. The next turn rolls back what the
dead one wrote. A holder that was only paused and comes back is fenced: its release and
its checkpoint writes are conditioned on its lease token (``RELEASE``, :meth:`fencing`), so
nothing it writes after losing the lease commits, and its caller gets ``LeaseLost``. A holder
paused inside one of those writes does not keep the session either: the server ends the
write's transaction once it has sat idle for the heartbeat bound (``FENCE`` sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from runtime.checkpoints import (
    Write,
    fenced_writes,
    prune_thread,
    replay_writes,
    rollback_thread,
)
from runtime.db import (
    Pool,
    Row,
    all_or_nothing,
    connect,
    database_error,
    execute,
    fetch_one,
    refusal,
)
from runtime.errors import (
    AwaitingApproval,
    LeaseLost,
    NotFound,
    NothingToResume,
    SessionBusy,
    SessionExpired,
    SessionInactive,
)
from runtime.sessions import sql
from runtime.sessions.idempotency import KeyedResult, find_keyed, record_keyed
from runtime.sessions.model import Lease, ReleaseStep, TurnCounters

__all__ = ["SessionLeases"]

log = logging.getLogger(__name__)


def _refusal(why: Row | None, session_id: str, *, resume: bool) -> Exception | None:
    """Why :data:`~runtime.sessions.sql.ACQUIRE` took nothing, as the error to raise; None
    when the session is merely busy (another turn holds the lease)."""
    if why is None:
        return NotFound(f"session {session_id!r} not found", session_id=session_id)
    if why["expired"]:
        return SessionExpired(f"session {session_id!r} has expired", session_id=session_id)
    if why["agent_missing"]:
        return NotFound(f"the agent of session {session_id!r} was deleted", session_id=session_id)
    if why["status"] != "active":
        return SessionInactive(
            f"session {session_id!r} is inactive; activate it to send messages",
            session_id=session_id,
        )
    if why["awaiting_approval"] and not resume:
        return AwaitingApproval(
            f"session {session_id!r} is waiting for a decision on tool calls; "
            "resume it with approve, reject or edit decisions first",
            session_id=session_id,
            pending_approvals=why["pending_approvals"] or [],
        )
    if resume and not why["awaiting_approval"]:
        return NothingToResume(
            f"session {session_id!r} is not waiting for any approval", session_id=session_id
        )
    return None


def _milliseconds(seconds: float) -> str:
    """A Postgres timeout setting's value for ``seconds`` (whole milliseconds, at least 1)."""
    return str(max(1, math.ceil(seconds * 1000)))


class SessionLeases:
    """Taking, renewing and giving back sessions' turn leases, on one connection pool."""

    def __init__(
        self,
        pool: Pool,
        *,
        lease_timeout_seconds: float,
        liveness_seconds: float,
        database_timeout_seconds: float,
        lease_wait_seconds: float = 0.0,
        checkpoints_kept: int = 0,
        holder: str | None = None,
    ) -> None:
        self._pool = pool
        # The name leases give their holder: this process's heartbeat row (None: no
        # heartbeat, so only the lease timeout frees a lease this process leaves behind).
        self.holder = holder
        self.lease_timeout_seconds = lease_timeout_seconds
        # The bounds of a fenced write's transaction on the server (see sql.FENCE): idle
        # for as long as a silent holder is taken for dead (the heartbeat timeout), open
        # for as long as the pool lets any use of a connection last (the database timeout).
        self.fence_bounds = {
            "idle": _milliseconds(liveness_seconds),
            "whole": _milliseconds(database_timeout_seconds),
        }
        self.lease_wait_seconds = lease_wait_seconds
        # Checkpoints kept per thread after each turn (0: all).
        self.checkpoints_kept = checkpoints_kept
        # Rollbacks waiting for the database to come back (abort_when_back).
        self._aborting: set[asyncio.Task[None]] = set()

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
            lease = await self._try_acquire(owner, session_id, token, resume=resume)
            if lease is not None:
                return lease
            if loop.time() >= deadline:
                raise SessionBusy(
                    f"session {session_id!r} is running another turn; retry when it ends",
                    session_id=session_id,
                )
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0.0)))
            delay = min(delay * 2, 0.5)

    async def _try_acquire(
        self, owner: str, session_id: str, token: str, *, resume: bool
    ) -> Lease | None:
        """One attempt: the lease, or None while another turn holds it.

        Raises what :meth:`acquire` raises, except ``SessionBusy``.
        """
        params = {
            "token": token,
            "holder": self.holder,
            "timeout": self.lease_timeout_seconds,
            "owner": owner,
            "sid": session_id,
            "resume": resume,
        }
        async with connect(self._pool) as conn:
            row = await fetch_one(conn, sql.ACQUIRE, params)
            if row is None:
                why = await fetch_one(conn, sql.EXPLAIN_REFUSAL, (owner, session_id))
                refusal = _refusal(why, session_id, resume=resume)
                if refusal is not None:
                    raise refusal
                return None
            committed = row["committed_checkpoint_id"]
            if row["taken_over"] or row["latest_checkpoint_id"] != committed:
                # A previous turn died mid-way (its process was killed or paused, or it
                # failed and could not clean up): drop what it wrote before going on.
                log.warning("rolling back an unfinished turn on %s", session_id)
                async with conn.transaction():
                    await rollback_thread(conn, row["thread_id"], committed)
        return Lease(
            owner=owner,
            session_id=session_id,
            thread_id=row["thread_id"],
            agent_id=row["agent_id"],
            agent_version=row["version"],
            agent_owner=row["owner"],
            token=token,
            agent_row=row,
            committed_checkpoint_id=committed,
            pending_approvals=row["pending_approvals"],
            at_breakpoint=row["at_breakpoint"],
            session_metadata=row["session_metadata"] or {},
        )

    @contextmanager
    def fencing(self, lease: Lease) -> Iterator[None]:
        """Within the block, every checkpoint write the saver sends (per-step durability, a
        state update) commits only while ``lease`` is still held by its token
        (:data:`~runtime.sessions.sql.FENCE`); once another turn has taken the session it
        raises ``LeaseLost`` and writes nothing. Each write's transaction is bounded on the
        server (:attr:`fence_bounds`): a holder paused inside one (past the heartbeat bound)
        has it ended under it, and, resumed, gets ``LeaseLost`` if the session was taken
        meanwhile."""

        def lost() -> LeaseLost:
            lease.lost = True
            return LeaseLost(
                f"the lease on session {lease.session_id!r} was taken by another turn",
                session_id=lease.session_id,
            )

        params = {"thread_id": lease.thread_id, "token": lease.token, **self.fence_bounds}
        with fenced_writes(sql.FENCE, params, lost):
            yield

    async def keyed_result(
        self, owner: str, session_id: str, key: str, request_hash: str
    ) -> dict[str, Any] | None:
        """The result of the turn that committed with idempotency ``key``, if any.

        Raises:
            InvalidInput: the key was used with a different request.
        """
        return await find_keyed(self._pool, owner, session_id, key, request_hash)

    async def renew(self, lease: Lease) -> bool:
        """Push the lease's expiry forward; ``False`` when it has been lost."""
        touched = await execute(
            self._pool,
            sql.RENEW,
            (self.lease_timeout_seconds, lease.owner, lease.session_id, lease.token),
        )
        if touched == 0:
            lease.lost = True
        return not lease.lost

    def abort_when_back(self, lease: Lease) -> None:
        """Roll back a failed turn whose rollback the database could not take (an outage):
        try again every half second, in the background, until it is done or the lease has
        lapsed, so the session is free once Postgres is back, not only when the lease lapses."""
        task = asyncio.create_task(self._abort_until_lapse(lease))
        self._aborting.add(task)
        task.add_done_callback(self._aborting.discard)

    async def _abort_until_lapse(self, lease: Lease) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_timeout_seconds
        while not lease.lost and loop.time() < deadline:
            await asyncio.sleep(0.5)
            try:
                await self.abort(lease)
                return
            except Exception as exc:
                if database_error(exc) is None:
                    log.exception("could not roll back the turn on %s", lease.session_id)
                    return

    async def abort(self, lease: Lease) -> None:
        """End a failed turn: roll its writes back to the last completed turn, free the lease.

        The session is left exactly as it was before the turn, so the client can resend.
        """
        async with connect(self._pool) as conn, conn.transaction():
            row = await fetch_one(conn, sql.ABORT, (lease.owner, lease.session_id, lease.token))
            if row is None:
                lease.lost = True  # someone else holds it now; their acquire rolls back
                return
            await rollback_thread(conn, row["thread_id"], row["committed_checkpoint_id"])

    async def release(
        self,
        lease: Lease,
        counters: TurnCounters | None = None,
        *,
        pending_approvals: list[dict[str, Any]] | None = None,
        writes: Sequence[Write] = (),
        keyed: KeyedResult | None = None,
        breakpoint: bool | None = None,
        step: ReleaseStep | None = None,
    ) -> None:
        """End a completed turn: commit its checkpoint, add its counters, slide the TTL.

        ``pending_approvals`` marks a turn paused for a human decision; ``breakpoint``
        whether it stopped at a static breakpoint (None: as the session was). ``writes`` are the
        turn's checkpoint writes, deferred by the saver (:func:`deferring_writes`): they
        commit in the same transaction, or not at all when the lease was lost. So do
        ``keyed``, the result kept under the turn's idempotency key, and ``step`` (its run's
        record of it), which may also refuse the commit.

        Raises:
            LeaseLost: the lease had lapsed and been taken by another turn.
            whatever ``step.refused`` gives when its statement refused: nothing committed.
        """
        c = counters or TurnCounters(turns=0)
        async with connect(self._pool) as conn:
            try:
                # One round trip, one transaction, which a refusing statement aborts whole.
                async with all_or_nothing(conn):
                    await replay_writes(conn, writes)
                    await self._release(conn, lease, c, pending_approvals, breakpoint)
                    if keyed is not None:
                        await record_keyed(conn, lease.owner, lease.session_id, keyed)
                    stepped = await step.send(conn) if step is not None else None
            except psycopg.Error as exc:
                refused = self._refused(lease, refusal(exc), step)
                if refused is None:
                    raise
                raise refused from None
            if step is not None and stepped is not None:
                await step.check(stepped)

    @staticmethod
    def _refused(lease: Lease, reason: str | None, step: ReleaseStep | None) -> Exception | None:
        """What a release refused with ``reason`` raises (None: not a refusal)."""
        if reason == sql.LEASE_LOST:
            lease.lost = True
            return LeaseLost(
                f"the lease on session {lease.session_id!r} lapsed before the turn ended",
                session_id=lease.session_id,
            )
        return step.refused(reason) if step is not None and reason is not None else None

    async def _release(
        self,
        conn: AsyncConnection[Row],
        lease: Lease,
        c: TurnCounters,
        pending_approvals: list[dict[str, Any]] | None,
        breakpoint: bool | None,
    ) -> None:
        # Sent, not read: it fails the pipeline when the lease is lost. Retention's prune
        # rides in the same round trip and the same transaction (one WAL flush).
        await conn.execute(
            sql.RELEASE,
            {
                "awaiting": bool(pending_approvals),
                "pending": Jsonb(pending_approvals) if pending_approvals else None,
                "breakpoint": breakpoint,
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
                conn, lease.thread_id, kept=self.checkpoints_kept, lease_held=sql.LEASE_HELD
            )

    @asynccontextmanager
    async def renewing(self, lease: Lease, task: asyncio.Task[Any]) -> AsyncIterator[None]:
        """Renew ``lease`` every third of its timeout while the block runs.

        If a renewal finds the lease lost, ``task`` (the turn) is cancelled, so a turn never
        keeps writing to a thread another holder has taken. A renewal that cannot reach the
        database is tried again at the next third (the lease has two thirds of slack; if it
        lapses meanwhile, the turn's writes are fenced) instead of ending the renewals.
        """

        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(self.lease_timeout_seconds / 3)
                try:
                    renewed = await self.renew(lease)
                except Exception as exc:
                    if database_error(exc) is None:
                        raise
                    log.warning("could not renew the lease on %s: %s", lease.session_id, exc)
                    continue
                if not renewed:
                    task.cancel()
                    return

        renewer = asyncio.create_task(renew_forever())
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
