"""Runs: turns started through the LangGraph Server API (and ``/v1`` streamed turns, whose
streams are recorded: :meth:`RunManager.start_turn`), recorded in Postgres.

A run is one turn (:class:`~runtime.turns.runner.TurnRunner`) with an id and a row in ``runs``, so
any replica can list, read, join, cancel or delete it. The turn itself is unchanged: it takes
the session's lease, runs the guarded graph, and commits or rolls back its checkpoints.

- **Multitask strategies.** ``reject`` refuses a run while another run (or a native turn)
  holds the thread: ``SessionBusy``. ``enqueue`` waits, in order of creation, for the
  thread to be free, up to ``enqueue_wait_seconds``. ``rollback`` and ``interrupt`` cancel
  the run(s) in flight on the thread and then wait like ``enqueue``; the cancelled run ends
  ``interrupted``. A turn here is all or nothing, so ``interrupt`` keeps no partial steps
  of the run it stops: both roll it back to the thread's last committed checkpoint.
- **Where runs execute.** In a task of the process that accepted them; live events are
  delivered to subscribers in that process. Other replicas read the row: ``join`` polls it
  until the run ends, ``cancel`` sets ``cancel_requested``, which the owning process polls
  for (every ``poll_seconds``) and acts on.
- **Cancel.** A running run's turn is cancelled (rolled back whole); it ends ``interrupted``.
- **Statuses.** ``pending`` (queued) → ``running`` → ``success`` (also when the turn paused
  for approval: the *thread* is then interrupted), ``error`` or ``interrupted`` (cancelled).
- **A replica that dies.** A run names its holder, this process (its heartbeat); once that
  is dead, its pending or running runs are orphans: no longer busy for any check, and ended
  by their next reader (within about 2 s of a SIGKILL): ``error`` ``replica_lost``
  (retryable; a keyed retry runs again) unless the turn had committed. A turn commits only
  with its run (:mod:`runtime.runs.orphans`); the next turn on the session rolls it back.

The types are in :mod:`runtime.runs.model`, the rows in :mod:`runtime.runs.rows` (idempotency
keys: :mod:`runtime.runs.keys`), their statements in :mod:`runtime.runs.sql`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from runtime.db import Pool
from runtime.errors import InvalidInput, SessionBusy, SessiongraphError, error_dict
from runtime.runs import sql
from runtime.runs.events import Recorded, RunEventLog
from runtime.runs.keys import find_keyed_run
from runtime.runs.local import LocalRuns
from runtime.runs.model import (
    MULTITASK_STRATEGIES,
    NATIVE_KWARGS,
    EventRecorder,
    LiveRun,
    Run,
    RunHandle,
    RunRequest,
    RunStatus,
)
from runtime.runs.orphans import RunEnd
from runtime.runs.rows import (
    delete_ended,
    delete_row,
    has_ended,
    inflight,
    insert_run,
    list_runs,
    queued_before,
    request_cancel,
    select_run,
    set_status,
    wait_ended,
)
from runtime.sessions import SessionStore
from runtime.turns import TurnEvent, TurnRequest, TurnRunner

__all__ = ["RunManager"]


Action = Callable[[], Awaitable[None]]


async def _stopping(action: Action, stop: Action) -> None:
    """``action``; if a turn in flight refuses it, ``stop`` the runs, then ``action`` again."""
    try:
        await action()
    except SessionBusy:
        await stop()
        await action()


log = logging.getLogger(__name__)


class RunManager:
    """Creates, executes, lists and cancels runs (see the module docstring)."""

    def __init__(
        self,
        pool: Pool,
        sessions: SessionStore,
        turns: TurnRunner,
        *,
        enqueue_wait_seconds: float = 600.0,
        poll_seconds: float = 0.5,
        events_retention_seconds: float = 600.0,
    ) -> None:
        self._pool = pool
        self._sessions = sessions
        # Runs name this process's heartbeat as their holder (None: no heartbeat).
        self._holder = sessions.holder
        self._turns = turns
        self.enqueue_wait_seconds = enqueue_wait_seconds
        self.poll_seconds = poll_seconds
        self._local = LocalRuns(pool, poll_seconds)
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Resumable runs' streams (stream_resumable), replayable from any replica.
        self.events = RunEventLog(pool, retention_seconds=events_retention_seconds)

    # -- create and execute -----------------------------------------------------------------

    async def create(self, request: RunRequest, *, subscribe: bool = False) -> RunHandle:
        """Create a run and start it, or queue it behind the thread's current run.

        With ``subscribe``, the handle yields the run's events from its first one. A request
        with an idempotency key that an earlier one created a run with gets that run instead
        (``handle.repeated``; its events are not subscribed to): nothing runs twice.

        Raises:
            SessionBusy: ``reject`` while the thread runs something.
            InvalidInput: an unsupported multitask strategy, a bad turn request, or an
                idempotency key used before with another request.
            NotFound, Conflict...: whatever stops the turn from starting right away (an
                unknown session, a message while approval is pending, ...).
        """
        strategy = request.multitask_strategy
        self._check_accepting(strategy)
        thread_key = (
            request.thread_key
            or (await self._sessions.get(request.owner, request.session_id)).thread_id
        )
        kept = await self.keyed(
            request.owner, request.session_id, request.idempotency_key, request.request_hash
        )
        if kept is not None:
            return RunHandle(kept, thread_key, repeated=True)
        run_id = request.turn.run_id or str(uuid.uuid4())
        end = RunEnd(run_id, final=request.recorder is None)
        turn = replace(request.turn, run_id=run_id, run_end=end)
        await self._make_room(request)
        run, new = await insert_run(self._pool, request, run_id, "pending", self._holder)
        if not new:
            return RunHandle(run, thread_key, repeated=True)
        live = LiveRun(run, end)
        queue = live.subscribe() if subscribe else None
        handle = RunHandle(run, thread_key, queue)
        queued = strategy != "reject" and await queued_before(
            self._pool, run, self.enqueue_wait_seconds
        )
        if not queued:
            try:
                events, task = await self._turns.start(request.owner, request.session_id, turn)
            except SessionBusy:
                if strategy == "reject":
                    await delete_row(self._pool, run_id)
                    raise
                queued = True
            except BaseException:
                await delete_row(self._pool, run_id)
                raise
        self._track(live, request)
        if queued:
            live.task = asyncio.create_task(self._wait_then_run(live, request, turn))
        else:
            live.turn = task
            live.run = await set_status(self._pool, run_id, "running") or run
            handle.run = live.run
            live.task = asyncio.create_task(self._pump(live, request, events))
        return handle

    async def keyed(
        self, owner: str, session_id: str, key: str | None, request_hash: str | None
    ) -> Run | None:
        """The run created on the thread with this idempotency key, if any (a 422 when the
        key came with another request): see :mod:`runtime.runs.keys`."""
        return await find_keyed_run(self._pool, owner, session_id, key, request_hash)

    async def start_turn(
        self, owner: str, session_id: str, turn: TurnRequest, recorder: EventRecorder
    ) -> Run:
        """Start a native turn (``/v1``) as a run whose stream is recorded for replay.

        The turn takes its lease as any turn does (the same refusals, bounded wait and
        session creation, raised here); its row follows, before the graph runs (the turn
        commits with it), so any replica can follow its stream (:meth:`follow`) and cancel
        it. Returns the run, running.
        """
        self._check_accepting()
        run_id = str(uuid.uuid4())
        end = RunEnd(run_id, final=False)
        turn = replace(turn, run_id=run_id, run_end=end)
        made: list[tuple[Run, RunRequest]] = []

        async def insert(agent_id: str | None) -> None:
            if agent_id is None:  # a kept result replayed: no lease, no graph
                agent_id = (await self._sessions.get(owner, session_id)).agent_id
            request = RunRequest(
                owner, session_id, agent_id, turn, kwargs=NATIVE_KWARGS, recorder=recorder
            )
            run, _ = await insert_run(self._pool, request, run_id, "running", self._holder)
            made.append((run, request))

        events, task = await self._turns.start(owner, session_id, turn, ready=insert)
        [(run, request)] = made
        live = LiveRun(run, end)
        live.turn = task
        self._track(live, request)
        live.task = asyncio.create_task(self._pump(live, request, events))
        return run

    def _check_accepting(self, strategy: str | None = None) -> None:
        """Refuse runs while closing, and multitask strategies this server cannot honour."""
        if self._closing:
            raise SessionBusy("the server is shutting down; retry on another replica")
        if strategy is not None and strategy not in MULTITASK_STRATEGIES:
            raise InvalidInput(
                f"multitask_strategy {strategy!r} is not supported",
                field="multitask_strategy",
                supported=list(MULTITASK_STRATEGIES),
            )

    def _track(self, live: LiveRun, request: RunRequest) -> None:
        """Follow a new run here: live, its recorded stream opened with its first events, and
        cancels requested from other replicas polled for."""
        run_id = live.run.run_id
        self._local.add(live)
        if request.recorder is not None:
            self.events.open(run_id)
            self.events.append(run_id, request.recorder.first(live.run))

    async def _make_room(self, request: RunRequest) -> None:
        """``reject``: refuse while the thread runs something; ``rollback``: cancel that. Never
        the first attempt of this request (same key), however they race: its row precedes its
        lease, so it is looked for once the thread is seen busy; the cancel spares it."""
        owner, session_id, key = request.owner, request.session_id, request.idempotency_key
        if request.multitask_strategy == "reject" and await inflight(
            self._pool, owner, session_id, self.enqueue_wait_seconds
        ):
            if await self.keyed(owner, session_id, key, request.request_hash):
                return  # the first attempt: insert_run finds it and nothing runs twice
            raise SessionBusy(
                f"thread {session_id!r} is already running a task; wait for it to "
                "finish or choose another multitask strategy",
                session_id=session_id,
            )
        if request.multitask_strategy in ("rollback", "interrupt"):
            await self._local.cancel_requested(sql.REQUEST_CANCEL_OTHERS, owner, session_id, key)

    async def _wait_then_run(self, live: LiveRun, request: RunRequest, turn: TurnRequest) -> None:
        """A queued run: wait for its turn on the thread, then run it."""
        run = live.run
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.enqueue_wait_seconds
        delay = 0.05
        try:
            while True:
                if live.cancelled:
                    raise asyncio.CancelledError
                if not await queued_before(self._pool, run, self.enqueue_wait_seconds):
                    try:
                        events, task = await self._turns.start(
                            request.owner, request.session_id, turn
                        )
                        break
                    except SessionBusy:
                        pass
                if loop.time() >= deadline:
                    raise SessionBusy(
                        f"thread {request.session_id!r} stayed busy for "
                        f"{self.enqueue_wait_seconds:g} s; the queued run gave up",
                        session_id=request.session_id,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.poll_seconds)
        except (Exception, asyncio.CancelledError) as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            if not isinstance(exc, SessiongraphError | asyncio.CancelledError):
                log.error("queued run failed", exc_info=exc)
            error = error_dict(exc, cancelled="the run was cancelled", failed="the run failed")
            await asyncio.shield(
                self._finish(
                    live,
                    request,
                    "interrupted" if cancelled else "error",
                    None if cancelled else error,
                    TurnEvent("error", error),
                )
            )
            return
        live.turn = task
        if live.cancelled:
            task.cancel()
        await set_status(self._pool, run.run_id, "running")
        await self._pump(live, request, events)

    async def _pump(
        self, live: LiveRun, request: RunRequest, events: AsyncIterator[TurnEvent]
    ) -> None:
        """Forward the turn's events to subscribers; record how the run ended.

        The last event (``done`` or ``error``) goes out once the run's row says how it
        ended, so a client that saw the end of the stream reads the final status.
        """
        status: RunStatus = "success"
        error: dict[str, Any] | None = None
        last = TurnEvent("error", error_dict(Exception(), failed="the run stopped"))
        try:
            async for event in events:
                if event.type in ("done", "error"):
                    last = event
                    if event.type == "error":
                        status = "interrupted" if live.cancelled else "error"
                        error = None if live.cancelled else dict(event.data)
                    continue
                self._record(request, live, event)
                live.publish(event)
        except BaseException:
            status, error = "error", dict(last.data)
            raise
        finally:
            await asyncio.shield(self._finish(live, request, status, error, last))

    async def _finish(
        self,
        live: LiveRun,
        request: RunRequest,
        status: RunStatus,
        error: dict[str, Any] | None,
        last: TurnEvent,
    ) -> None:
        try:
            self._record(request, live, last)
            await self.events.flush(live.run.run_id)
            committed = live.end.run if live.end is not None else None
            if committed is not None and committed.done:
                live.run = committed  # it ended with its turn's commit
            else:
                live.run = await set_status(self._pool, live.run.run_id, status, error) or live.run
            await self.events.close(live.run.run_id)
            if request.temporary:
                with contextlib.suppress(SessiongraphError):
                    await self._sessions.delete(request.owner, request.session_id)
        except Exception:
            log.exception("could not record the end of run %s", live.run.run_id)
        finally:
            self._local.discard(live.run.run_id)
            live.publish(last)
            live.ended.set()

    # -- read, join, cancel, delete -----------------------------------------------------------

    async def get(self, owner: str, session_id: str, run_id: str) -> Run:
        """The run, or ``NotFound``."""
        return await select_run(self._pool, owner, session_id, run_id)

    async def list(
        self,
        owner: str,
        session_id: str,
        *,
        limit: int = 10,
        offset: int = 0,
        status: str | None = None,
    ) -> Sequence[Run]:
        """The thread's runs, newest first (``InvalidInput``: an unknown status)."""
        return await list_runs(self._pool, owner, session_id, limit, offset, status)

    def follow(self, run: Run, after: int | None) -> AsyncIterator[Recorded]:
        """A recorded run's events numbered above ``after`` (None: from now on), then live
        ones until it ends, from whichever replica runs it."""
        return self.events.follow(run.run_id, after, partial(has_ended, self._pool, run))

    def live_events(self, run_id: str) -> AsyncIterator[TurnEvent] | None:
        """Events of a run executing in this process from now on (None: not here)."""
        live = self._local.get(run_id)
        if live is None:
            return None
        return RunHandle(live.run, "", live.subscribe()).events()

    async def join(self, owner: str, session_id: str, run_id: str) -> Run:
        """Wait for the run to end (in this process or any other) and return it."""
        run = await self.get(owner, session_id, run_id)
        while not run.done:
            live = self._local.get(run_id)
            if live is not None:
                await live.ended.wait()
            else:
                await asyncio.sleep(self.poll_seconds)
            run = await self.get(owner, session_id, run_id)
        return run

    async def cancel(self, owner: str, session_id: str, run_id: str) -> Run:
        """Cancel a pending or running run; a running turn rolls back. A run that has
        already ended is left alone (as LangGraph's server does) and returned as it is.

        Raises:
            NotFound: no such run.
        """
        run = await request_cancel(self._pool, owner, session_id, run_id)
        if run is None:
            return await self.get(owner, session_id, run_id)
        self._local.cancel(run_id)
        return run

    async def stop_thread(self, owner: str, session_id: str) -> None:
        """Cancel the thread's pending and running runs and wait for them to end (before the
        thread is deleted)."""
        await self._stopped(sql.REQUEST_CANCEL_INFLIGHT, owner, session_id)

    async def stop_agent(self, agent_owner: str, agent_id: str) -> None:
        """Cancel the pending and running runs on every thread of an agent (its owner's id)
        and wait for them to end (before the agent is deleted)."""
        await self._stopped(sql.REQUEST_CANCEL_AGENT, agent_owner, agent_id)

    async def delete_thread(self, owner: str, session_id: str) -> None:
        """Delete a thread, cancelling its runs first if it is running some (LangGraph's
        semantics; the native API refuses instead)."""
        await _stopping(
            partial(self._sessions.delete, owner, session_id),
            partial(self.stop_thread, owner, session_id),
        )

    async def delete_agent(self, agent_owner: str, agent_id: str, delete: Action) -> None:
        """Run ``delete`` (the agent's, with its threads), cancelling the runs on its threads
        first if it is refused because some are running."""
        await _stopping(delete, partial(self.stop_agent, agent_owner, agent_id))

    async def _stopped(self, request_cancels: str, *params: Any) -> None:
        """Cancel the runs ``request_cancels`` names (``LocalRuns.cancel_requested``) and wait,
        up to the enqueue wait, until none is underway."""
        run_ids = await self._local.cancel_requested(request_cancels, *params)
        poll = min(self.poll_seconds, 0.1)
        await wait_ended(self._pool, run_ids, self.enqueue_wait_seconds, poll)

    def cancel_soon(self, owner: str, session_id: str, run_id: str) -> None:
        """:meth:`cancel` in a task of its own, for callers being cancelled themselves (a
        stream whose client went away); an ended run is left alone."""
        task = asyncio.create_task(self.cancel(owner, session_id, run_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def delete(self, owner: str, session_id: str, run_id: str) -> None:
        """Delete an ended run's record.

        Raises:
            NotFound: no such run.
            Conflict: the run is still pending or running (cancel it first).
        """
        await delete_ended(self._pool, owner, session_id, run_id)

    async def close(self, timeout: float) -> None:
        """Stop taking runs; end queued ones; wait up to ``timeout`` for running ones."""
        self._closing = True
        for live in self._local.all():
            if live.turn is None:
                live.cancelled = True
        tasks = [live.task for live in self._local.all() if live.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        await self._local.close()

    # -- internals ----------------------------------------------------------------------------

    def _record(self, request: RunRequest, live: LiveRun, event: TurnEvent) -> None:
        if request.recorder is not None:
            self.events.append(live.run.run_id, request.recorder.translate(event))
