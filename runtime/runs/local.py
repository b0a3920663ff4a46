"""The runs executing (or queued) in this process, and the cancels other replicas ask for them.

A cancel from another replica sets ``cancel_requested`` on the run's row; while this process
has runs, a task polls their rows for it every ``poll_seconds`` and cancels them here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from runtime.db import Pool
from runtime.runs import sql
from runtime.runs.model import LiveRun
from runtime.runs.rows import ids_of

__all__ = ["LocalRuns"]

log = logging.getLogger(__name__)


class LocalRuns:
    """This process's runs by id (see the module docstring)."""

    def __init__(self, pool: Pool, poll_seconds: float) -> None:
        self._pool = pool
        self.poll_seconds = poll_seconds
        self._runs: dict[str, LiveRun] = {}
        self._poller: asyncio.Task[None] | None = None

    def add(self, live: LiveRun) -> None:
        """Keep a new run here, and poll for cancels requested for it."""
        self._runs[live.run.run_id] = live
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_cancels(), name="sessiongraph-runs")

    def get(self, run_id: str) -> LiveRun | None:
        """The run, if it executes (or waits) here."""
        return self._runs.get(run_id)

    def discard(self, run_id: str) -> None:
        """Forget a run that has ended."""
        self._runs.pop(run_id, None)

    def all(self) -> list[LiveRun]:
        """Every run here."""
        return list(self._runs.values())

    def cancel(self, run_id: str) -> bool:
        """Cancel the run if it is here (its turn rolls back); whether it was."""
        live = self._runs.get(run_id)
        if live is None:
            return False
        live.cancelled = True
        # A queued run notices the flag within poll_seconds; cancelling its task instead
        # could land between taking the lease and starting the turn.
        if live.turn is not None:
            live.turn.cancel()
        return True

    async def cancel_requested(self, request_cancels: str, *params: Any) -> Sequence[str]:
        """Request a cancel of the runs a statement names (``sql.REQUEST_CANCEL_...``: other
        replicas poll for it), cancel those running here; their ids."""
        run_ids = await ids_of(self._pool, request_cancels, *params)
        for run_id in run_ids:
            self.cancel(run_id)
        return run_ids

    async def close(self) -> None:
        """Stop polling."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _poll_cancels(self) -> None:
        """Act on cancels requested from other replicas for runs in this process."""
        while self._runs:
            await asyncio.sleep(self.poll_seconds)
            ids = [run_id for run_id, live in self._runs.items() if not live.cancelled]
            if not ids:
                continue
            try:
                requested = await ids_of(self._pool, sql.CANCELS_REQUESTED, ids)
            except Exception:
                log.warning("could not poll for run cancels", exc_info=True)
                continue
            for run_id in requested:
                self.cancel(run_id)
