"""Holder liveness across a Postgres restart: no live holder is taken for dead at once.

A restart stops every heartbeat, so when Postgres comes back every beat is stale. The rule
(``HOLDER_ALIVE``) gives holders three bounds after the postmaster starts to beat again.
Here the holder (``tests/support/hold_turn.py``, a 60 s lease) is stopped with SIGSTOP
while Postgres is down, so it cannot beat again: right after the restart its lease is still
held although its beat is stale; it comes free once the grace is over; the holder, resumed,
is fenced.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.sessions.sql import LEASE_HELD
from tests.integration.test_crash import holder_process, wait_for_lease
from tests.support.cluster import single_node

pytestmark = pytest.mark.slow

SESSION = "grace-1"
# The stopped holder's SESSIONGRAPH_HEARTBEAT_TIMEOUT_SECONDS (twice the default 1.5): its
# lease must be read as still held after the restart, within three bounds of the
# postmaster's start, and a loaded machine's crash recovery and reconnection take part of it.
BOUND = 3.0


async def lease_state(url: str) -> dict[str, Any]:
    """Whether the lease is held by the rule, and how the holder's beat looks."""
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        cur = await conn.execute(
            f"SELECT {LEASE_HELD} AS held, "
            "(SELECT now() - r.beat_at > r.liveness FROM replicas r "
            " WHERE r.holder = s.lease_holder) AS beat_stale, "
            "extract(epoch FROM now() - pg_postmaster_start_time()) AS since_start "
            "FROM sessions s WHERE session_id = %s",
            (SESSION,),
        )
        row = await cur.fetchone()
        assert row is not None
        return row


@asynccontextmanager
async def holding(
    url: str, tmp_path: Path, agent_id: str, *, lease_timeout: float, **settings: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A holder process in a slow turn on SESSION with this lease timeout (and these
    ``SESSIONGRAPH_*`` settings): the process and its lease token, once it holds the lease."""
    env = {
        "HOLD_SESSION_ID": SESSION,
        "HOLD_AGENT_ID": agent_id,
        "HOLD_LEASE_TIMEOUT_SECONDS": str(lease_timeout),
        **settings,
    }
    async with holder_process(url, tmp_path / "hold_turn.log", **env) as proc:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.decode().strip() == "holding"
        yield proc, await wait_for_lease(url, SESSION)


class TestPostgresRestart:
    @pytest.mark.timeout(180)
    async def test_a_restart_gives_holders_time_to_beat_again(self, tmp_path: Path) -> None:
        """Stale beats right after a restart do not free a lease; after the grace they do."""
        with single_node() as node:
            url = node.url()
            beat = {"SESSIONGRAPH_HEARTBEAT_TIMEOUT_SECONDS": str(BOUND)}
            async with holding(url, tmp_path, "slow-grace", lease_timeout=60, **beat) as (proc, _):
                await asyncio.to_thread(node.stop, "immediate")
                await asyncio.sleep(BOUND + 0.5)  # every beat is now older than the bound
                proc.send_signal(signal.SIGSTOP)  # and the holder cannot beat again
                await asyncio.to_thread(node.start)
                after = await lease_state(url)
                assert after["beat_stale"] is True, after
                assert after["held"] is True, f"a restart made a holder look dead: {after}"
                deadline = time.monotonic() + 30
                while (state := await lease_state(url))["held"]:
                    assert time.monotonic() < deadline, state
                    await asyncio.sleep(0.1)
                # Free once three bounds have passed since Postgres started, not before.
                assert float(state["since_start"]) >= 3 * BOUND, state
                proc.send_signal(signal.SIGCONT)

    @pytest.mark.timeout(180)
    async def test_a_live_holder_keeps_renewing_across_a_restart(self, tmp_path: Path) -> None:
        """Renewals that fail while Postgres is down do not end the renewals: the live
        holder's lease (4 s) is still held well after the restart."""
        with single_node() as node:
            url = node.url()
            async with holding(url, tmp_path, "slow-renew", lease_timeout=4) as (proc, token):
                await asyncio.to_thread(node.stop, "immediate")
                await asyncio.sleep(2.0)  # at least one renewal fails meanwhile
                await asyncio.to_thread(node.start)
                await asyncio.sleep(8.0)  # two lease timeouts
                state = await lease_state(url)
                assert state["held"] is True, state
                assert await wait_for_lease(url, SESSION) == token
                assert proc.returncode is None
