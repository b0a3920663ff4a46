"""Resumable run streams: a run's events, numbered and kept in Postgres, replayable from any
replica (LangGraph's ``stream_resumable``).

- **Recording.** The process running the run appends each event (a name and JSON-ready data,
  in whatever vocabulary the run's :class:`~runtime.runs.model.EventRecorder` speaks) with
  the next sequence number, 1, 2, ... Followers in the same process get it at once, from
  memory; a flusher writes the new events to ``run_events`` every ``flush_seconds`` (one
  batch, one round trip, one commit), so a
  token-by-token stream costs a few inserts per second, not one per token. When the run ends,
  the last events are written before the run's end is recorded, the end marker after it.
- **Following.** :meth:`RunEventLog.follow` yields the events after a given number: from
  memory when the run records here, else from Postgres, polled every ``poll_seconds`` until
  the end marker (or until the run has ended and nothing more comes: a replica that died
  mid-run wrote no marker). A client that drops and comes back with ``Last-Event-ID`` gets
  every event exactly once, in order, whichever replica it reaches.
- **Retention.** Events are deleted with their run (and thread), and otherwise once they are
  ``retention_seconds`` old and their run has ended (checked when a recording closes, at
  most every tenth of the retention: a thousand streams ending at once prune once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from psycopg.types.json import Jsonb

from runtime.db import Pool, all_or_nothing, execute, fetch_all, fetch_one
from runtime.runs import sql

__all__ = ["END_MARKER", "Recorded", "RunEventLog"]

log = logging.getLogger(__name__)

Recorded = tuple[int, str, Any]
"""One recorded event: its sequence number (from 1), name and JSON-ready data."""

END_MARKER = "__end__"  # the last row of a recording that ended (never yielded)


class _Recording:
    """A run recording in this process."""

    def __init__(self) -> None:
        self.events: list[Recorded] = []
        self.flushed = 0  # how many of ``events`` are in Postgres
        self.closing = False  # no more events: the flusher writes the rest and stops
        # A future, not an Event: waiting on it with a timeout needs no task of its own.
        self.close_requested: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended = False  # the end marker is written
        self.changed = asyncio.Event()  # replaced (after being set) on every change
        self.flusher: asyncio.Task[None] | None = None

    def wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class RunEventLog:
    """Records runs' events and replays them (see the module docstring)."""

    def __init__(
        self,
        pool: Pool,
        *,
        retention_seconds: float = 600.0,
        poll_seconds: float = 0.1,
        flush_seconds: float = 0.05,
    ) -> None:
        self._pool = pool
        self.retention_seconds = retention_seconds
        self.poll_seconds = poll_seconds
        self.flush_seconds = flush_seconds
        self._local: dict[str, _Recording] = {}
        self._pruned_at = float("-inf")  # loop time of this process's last prune

    def open(self, run_id: str) -> None:
        """Start recording the run (its events go to Postgres from now on)."""
        recording = _Recording()
        self._local[run_id] = recording
        recording.flusher = asyncio.create_task(self._flush_until_end(run_id, recording))

    def append(self, run_id: str, events: list[tuple[str, Any]]) -> None:
        """Record events of a run that records here (others are ignored)."""
        recording = self._local.get(run_id)
        if recording is None or recording.closing or not events:
            return
        for name, data in events:
            recording.events.append((len(recording.events) + 1, name, data))
        recording.wake()

    async def flush(self, run_id: str) -> None:
        """No more events: write what is left (before the run's end is recorded)."""
        recording = self._local.get(run_id)
        if recording is None:
            return
        recording.closing = True
        if not recording.close_requested.done():
            recording.close_requested.set_result(None)
        recording.wake()
        if recording.flusher is not None:
            try:
                await recording.flusher
            except Exception:
                log.warning("could not record events of run %s", run_id, exc_info=True)

    async def close(self, run_id: str) -> None:
        """End the stream (after the run's end is recorded, so a client that saw the end
        reads the final status): write the end marker; prune old events."""
        recording = self._local.get(run_id)
        if recording is None:
            return
        try:
            end = (run_id, len(recording.events) + 1, END_MARKER, None)
            await execute(self._pool, sql.INSERT_RUN_EVENT, end)
            now = asyncio.get_running_loop().time()
            if now - self._pruned_at >= self.retention_seconds / 10:
                self._pruned_at = now
                await execute(self._pool, sql.PRUNE_RUN_EVENTS, (self.retention_seconds,))
        except Exception:
            log.warning("could not record the end of run %s's stream", run_id, exc_info=True)
        finally:
            recording.ended = True
            recording.wake()
            self._local.pop(run_id, None)

    async def follow(
        self, run_id: str, after: int | None, run_done: Callable[[], Awaitable[bool]]
    ) -> AsyncIterator[Recorded]:
        """The run's events numbered above ``after`` (None: from now on), then live ones
        until its end. ``run_done`` says whether the run has ended (for a replica that died
        without writing the end marker)."""
        recording = self._local.get(run_id)
        if recording is not None:
            async for item in self._follow_local(recording, after):
                yield item
            return
        if after is None:
            row = await fetch_one(self._pool, sql.LAST_RUN_EVENT, (run_id,))
            after = int(row["seq"]) if row and row["seq"] is not None else 0
        async for item in self._follow_stored(run_id, after, run_done):
            yield item

    async def _follow_local(
        self, recording: _Recording, after: int | None
    ) -> AsyncIterator[Recorded]:
        index = len(recording.events) if after is None else max(after, 0)
        while True:
            changed = recording.changed
            while index < len(recording.events):
                yield recording.events[index]
                index += 1
            if recording.ended:
                return
            await changed.wait()

    async def _follow_stored(
        self, run_id: str, after: int, run_done: Callable[[], Awaitable[bool]]
    ) -> AsyncIterator[Recorded]:
        done = False
        while True:
            rows = await fetch_all(self._pool, sql.RUN_EVENTS_AFTER, (run_id, after))
            for row in rows:
                if row["event"] == END_MARKER:
                    return
                after = row["seq"]
                yield after, row["event"], row["data"]
            if not rows:
                if done:
                    return  # ended with no end marker: its replica died mid-run
                # One more read after the run is seen ended catches its last flush.
                done = await run_done()
                if not done:
                    await asyncio.sleep(self.poll_seconds)

    async def _flush_until_end(self, run_id: str, recording: _Recording) -> None:
        """Write new events every ``flush_seconds``; once closing, the rest, then stop."""
        while True:
            if not recording.closing and recording.flushed == len(recording.events):
                await recording.changed.wait()
            if not recording.closing:  # gather a batch, unless the run ends meanwhile
                await asyncio.wait((recording.close_requested,), timeout=self.flush_seconds)
            closing = recording.closing
            rows = recording.events[recording.flushed :]
            if rows:
                params = [(run_id, seq, name, Jsonb(data)) for seq, name, data in rows]
                try:
                    # One round trip, one transaction: all the batch or none of it.
                    async with self._pool.connection() as conn, all_or_nothing(conn):
                        async with conn.cursor() as cur:
                            await cur.executemany(sql.INSERT_RUN_EVENT, params)
                except Exception:
                    if closing:
                        raise
                    log.warning("could not record events of run %s", run_id, exc_info=True)
                    continue
                recording.flushed += len(rows)
            if closing:
                return
