"""The heartbeat: a row per process, beaten from a thread, named by the leases it takes.

Run directly and through a transaction-mode pgbouncer (the beat uses no session state).
"""

from __future__ import annotations

import time

import psycopg
import pytest

from runtime import Runtime, Settings

BEHIND_PGBOUNCER = True


def beat_of(database_url: str, holder: str) -> tuple[float, float]:
    """(seconds since the epoch of the holder's last beat, seconds since it)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM beat_at), extract(epoch FROM now() - beat_at) "
            "FROM replicas WHERE holder = %s",
            (holder,),
        ).fetchone()
    assert row is not None, f"no row for {holder}"
    return float(row[0]), float(row[1])


class TestHeartbeat:
    async def test_a_busy_event_loop_does_not_stop_the_beat(
        self, runtime: Runtime, database_url: str
    ) -> None:
        """The runtime's row advances while its event loop is blocked for longer than the
        heartbeat bound."""
        holder = runtime.sessions.holder
        assert holder is not None
        before, _ = beat_of(database_url, holder)
        # Blocks the loop the runtime runs on (the reads around it too: nothing runs on the
        # loop from the first read to the second), not the heartbeat's thread.
        time.sleep(runtime.settings.heartbeat_timeout_seconds + 0.5)
        after, _ = beat_of(database_url, holder)
        assert after > before, (before, after)

    async def test_a_lease_names_its_holder(self, runtime: Runtime, database_url: str) -> None:
        """A turn's lease carries the process's holder name; the release clears it."""
        await runtime.session("beat-1")
        lease = await runtime.sessions.acquire("local", "beat-1")
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT lease_holder FROM sessions WHERE session_id = 'beat-1'"
            ).fetchone()
        assert row == (runtime.sessions.holder,)
        assert (await runtime.sessions.get("local", "beat-1")).busy
        await runtime.sessions.release(lease)
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT lease_holder FROM sessions WHERE session_id = 'beat-1'"
            ).fetchone()
        assert row == (None,)

    @pytest.mark.timeout(60)
    async def test_a_clean_stop_deletes_the_row(
        self, settings: Settings, database_url: str
    ) -> None:
        """Closing the runtime deletes its row (its leases are free at once)."""
        async with Runtime.open(settings) as rt:
            holder = rt.sessions.holder
            assert holder is not None
            beat_of(database_url, holder)
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM replicas WHERE holder = %s", (holder,))
            assert row.fetchone() == (0,)
