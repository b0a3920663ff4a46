"""Fencing: a turn holder paused past its heartbeat bound loses its session and writes nothing.

Two real ``sessiongraph serve`` processes on the module's database, with a lease timeout far
longer than any test may run (:data:`LEASE_TIMEOUT`): a session that comes free at all was
freed by its holder's stale heartbeat, never by the lease lapsing. Replica A runs a slow
turn; it is stopped with SIGSTOP; replica B takes the session once A's heartbeat is stale
and completes turns; A is resumed with SIGCONT: its turn answers 409 ``lease_lost``
(retryable), nothing it wrote is in the thread, and the history shows only B's turns. Run
with the default durability (``exit``: the turn's writes are replayed in the release) and
with per-step checkpoints (``async``: each write is fenced by the lease token).
``test_fenced_write_stopped.py`` stops A inside one of those fenced writes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from tests.integration.test_compat_resumable import Event, sse_events
from tests.support.checks import eventually
from tests.support.processes import ServeProcess, clean_env, serve_processes

pytestmark = pytest.mark.slow

SLOW = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 6}}
FAST = {"provider": "offline", "name": "deterministic", "params": {}}
SSE = {"Accept": "text/event-stream"}
# The replicas' lease timeout: an hour, far past any test's own timeout, so only a stale
# heartbeat can free a paused holder's session within a test.
LEASE_TIMEOUT = 3600
T = TypeVar("T")


@contextmanager
def two_replicas(
    database_url: str, folder: Path, durability: str, pooler: str = "none"
) -> Iterator[list[ServeProcess]]:
    """Two ready servers (A, B) with the given checkpoint durability and the hour-long lease;
    stopped (and resumed, if a test left one stopped) after."""
    env = clean_env(
        DATABASE_URL=database_url,
        SESSIONGRAPH_DATABASE_POOLER=pooler,
        SESSIONGRAPH_SWEEP_INTERVAL_SECONDS="0",
        SESSIONGRAPH_CHECKPOINT_DURABILITY=durability,
        SESSIONGRAPH_LEASE_TIMEOUT_SECONDS=str(LEASE_TIMEOUT),
    )
    with serve_processes([folder / "a.log", folder / "b.log"], env) as servers:
        try:
            yield servers
        finally:
            for server in servers:
                if server.proc.poll() is None:
                    os.kill(server.proc.pid, signal.SIGCONT)


@pytest.fixture(params=["exit", "async"])
def replicas(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[tuple[str, list[ServeProcess]]]:
    """Two ready servers with the given checkpoint durability; stopped (and resumed) after."""
    durability = str(request.param)
    with two_replicas(database_url, tmp_path, durability) as servers:
        yield durability, servers


async def session_row(database_url: str, session_id: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        cur = await conn.execute(
            "SELECT s.lease_token, s.lease_holder, s.committed_checkpoint_id, s.turns, "
            "(SELECT count(*) FROM checkpoints c WHERE c.thread_id = s.thread_id) AS written, "
            "(SELECT count(*) FROM checkpoints c WHERE c.thread_id = s.thread_id "
            " AND c.checkpoint_id > s.committed_checkpoint_id) AS uncommitted "
            "FROM sessions s WHERE s.session_id = %s",
            (session_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        return row


async def take_over(client: httpx.AsyncClient, session_id: str, content: str) -> dict[str, Any]:
    """Send a turn until the session is no longer busy; return its body."""
    deadline = time.monotonic() + 60
    while True:
        r = await client.post(f"/v1/sessions/{session_id}/messages", json={"content": content})
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            return body
        assert r.status_code == 409 and r.json()["error"] == "session_busy", r.text
        assert time.monotonic() < deadline, "the paused holder's session never came free"
        await asyncio.sleep(0.1)


async def slow_session(client: httpx.AsyncClient, session_id: str, agent_id: str) -> str:
    """A session of a new agent with the slow model (the agent's id)."""
    agent = {"id": agent_id, "name": "slow", "model": SLOW}
    assert (await client.post("/v1/agents", json=agent)).status_code == 201
    r = await client.put(f"/v1/sessions/{session_id}", json={"agent_id": agent_id})
    assert r.status_code == 201, r.text
    return agent_id


async def post_turn(client: httpx.AsyncClient, session_id: str) -> httpx.Response:
    """A's turn, answered as JSON."""
    url = f"/v1/sessions/{session_id}/messages"
    return await client.post(url, json={"content": "my name is Mallory"})


async def stream_turn(client: httpx.AsyncClient, session_id: str) -> tuple[str, list[Event]]:
    """A's turn, streamed (a resumable /v1 turn): its Content-Location and every event."""
    url = f"/v1/sessions/{session_id}/messages"
    body = {"content": "my name is Mallory"}
    async with client.stream("POST", url, json=body, headers=SSE) as response:
        assert response.status_code == 200, await response.aread()
        return response.headers["content-location"], [e async for e in sse_events(response)]


async def fenced_turn(
    servers: list[ServeProcess],
    database_url: str,
    sid: str,
    send: Callable[[httpx.AsyncClient, str], Awaitable[T]],
) -> tuple[T, float]:
    """A's slow turn (``send``), paused, taken over by B (two turns), resumed; what A
    answered and how long B waited for the session after the pause."""
    a, b = servers
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=60) as ca,
        httpx.AsyncClient(base_url=b.url, timeout=60) as cb,
    ):
        agent_id = await slow_session(ca, sid, f"slow-{sid}")
        turn_a = asyncio.create_task(send(ca, sid))

        async def held() -> bool:
            row = await session_row(database_url, sid)
            # With per-step checkpoints, A's input and first step are already written before
            # the pause: A is in its model call, not inside a fenced write (that case is
            # test_fenced_write_stopped's).
            written = durability_of(sid) == "exit" or row["written"] >= 2
            return row["lease_token"] is not None and written

        await eventually(held, "A's turn to hold the lease", 60)
        os.kill(a.proc.pid, signal.SIGSTOP)
        paused = time.monotonic()
        # A's model call ends while it is stopped: it resumes straight into its writes.
        patched = await cb.patch(f"/v1/agents/{agent_id}", json={"model": FAST})
        assert patched.status_code == 200, patched.text
        first = await take_over(cb, sid, "my name is Bob")
        waited = time.monotonic() - paused
        assert first["reply"] == "Nice to meet you, Bob."
        second = await take_over(cb, sid, "what is my name?")
        assert second["reply"] == "Your name is Bob."
        await asyncio.sleep(max(0.0, paused + 7 - time.monotonic()))
        os.kill(a.proc.pid, signal.SIGCONT)
        response = await asyncio.wait_for(turn_a, timeout=60)
    return response, waited


def durability_of(sid: str) -> str:
    """The durability a test's session id names (its last part)."""
    return sid.rsplit("-", 1)[-1]


async def history(url: str, session_id: str) -> list[tuple[str, str]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        r = await client.get(f"/v1/sessions/{session_id}/messages", params={"limit": 100})
        assert r.status_code == 200, r.text
        return [(m["role"], m["content"]) for m in r.json()["items"]]


class TestFencing:
    @pytest.mark.timeout(240)
    def test_a_paused_holder_is_fenced(
        self, replicas: tuple[str, list[ServeProcess]], database_url: str
    ) -> None:
        """B takes the paused holder's session and completes turns; resumed, A's turn is
        refused (409 lease_lost, retryable), writes nothing, and only B's turns remain."""
        durability, servers = replicas
        sid = f"fence-{durability}"
        response, waited = asyncio.run(fenced_turn(servers, database_url, sid, post_turn))
        # B served it at all, with A's lease an hour long: A's stale heartbeat freed it.
        print(f"fencing ({durability}): session served by B {waited:.2f} s after the pause")
        refused_then_healthy(servers, database_url, sid, response)

    @pytest.mark.timeout(240)
    def test_a_paused_holders_streamed_turn_is_fenced(
        self, replicas: tuple[str, list[ServeProcess]], database_url: str
    ) -> None:
        """The same with A's turn streamed (a recorded /v1 turn): its stream ends with an
        error event, lease_lost and retryable, and no done; the turn's run ended in error;
        its stream rejoined on B is the same events; only B's turns remain."""
        durability, servers = replicas
        sid = f"fence-sse-{durability}"
        (location, events), _ = asyncio.run(fenced_turn(servers, database_url, sid, stream_turn))
        names = [name for _, name, _ in events]
        assert names[0] == "turn" and names[-1] == "error" and "done" not in names, events
        error = events[-1][2]
        assert error["error"] == "lease_lost" and error["details"]["retryable"] is True, error
        only_b(servers, database_url, sid)

        async def rejoined() -> tuple[list[Event], dict[str, Any]]:
            async with httpx.AsyncClient(base_url=servers[1].url, timeout=30) as cb:
                headers = {"Last-Event-ID": "-1"}
                async with cb.stream("GET", location, headers=headers) as response:
                    assert response.status_code == 200, await response.aread()
                    again = [e async for e in sse_events(response)]
                turn_id = events[0][2]["turn_id"]
                run = await cb.get(f"/threads/{sid}/runs/{turn_id}")
                assert run.status_code == 200, run.text
                return again, run.json()

        again, run = asyncio.run(rejoined())
        assert again == events
        assert run["status"] == "error", run
        for server in servers:
            assert "Traceback" not in server.log(), server.log()[-3000:]


def refused_then_healthy(
    servers: list[ServeProcess], database_url: str, sid: str, response: httpx.Response
) -> None:
    """A's fenced turn answered 409 lease_lost (retryable) and wrote nothing; only B's turns
    remain; A is healthy (its pool lends no dead connection): its next turn runs on B's
    history; neither replica logged a traceback."""
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"] == "lease_lost" and body["details"]["retryable"] is True, body
    only_b(servers, database_url, sid)

    async def again() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=servers[0].url, timeout=30) as ca:
            return await take_over(ca, sid, "what is my name?")

    assert asyncio.run(again())["reply"] == "Your name is Bob."
    for server in servers:
        assert "Traceback" not in server.log(), server.log()[-3000:]


def only_b(servers: list[ServeProcess], database_url: str, sid: str) -> None:
    """Both replicas show only B's two turns, and none of A's checkpoints landed."""
    expected = [
        ("user", "my name is Bob"),
        ("assistant", "Nice to meet you, Bob."),
        ("user", "what is my name?"),
        ("assistant", "Your name is Bob."),
    ]
    for server in servers:
        assert asyncio.run(history(server.url, sid)) == expected
    row = asyncio.run(session_row(database_url, sid))
    assert row["lease_token"] is None and row["turns"] == 2, row
    assert row["uncommitted"] == 0, f"the fenced holder's checkpoints landed: {row}"
