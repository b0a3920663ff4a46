"""Database faults through a real TCP proxy between the server and Postgres.

The app runs through its real lifespan on a real uvicorn, its ``DATABASE_URL`` pointing at a
:class:`~tests.support.tcp_proxy.TcpProxy` in front of the test database. The proxy cuts
every connection (and resets new ones) or stalls (accepts, forwards nothing). Every request
that needs the database then answers 503 ``database_unavailable`` with ``Retry-After`` and
``details.retryable``, never a bare 500 and never a hang (the stalled proxy never answers
and the client's own timeout is a minute: a 503 at all is the server's bound at work; the
time each took is printed); a turn cut off mid-way leaves its session as it was; and once
the proxy passes traffic again, no request fails after 1 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest

from api.app import create_app
from runtime import Settings
from tests.support.checks import status_within, turn_running
from tests.support.server import running_server
from tests.support.tcp_proxy import TcpProxy, database_proxy

DATABASE_TIMEOUT = 2.0
POOL_TIMEOUT = 2.0
LEASE_TIMEOUT = 3.0
# An hour, far past any test's timeout: a session that comes free sooner was freed by its
# turn's rollback (or its holder's stale heartbeat), never by the lease lapsing.
LONG_LEASE = 3600.0
SLOW_MODEL = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 1.5}}
RECOVERY_SECONDS = 1.0  # the bound: no failure once Postgres has been back this long
RECOVERY_WINDOW = 4.0  # how long requests are driven after the restore


@dataclass
class Rig:
    """The app behind the proxy, and a client for it."""

    proxy: TcpProxy
    http: httpx.AsyncClient


@pytest.fixture
async def rig(settings: Settings) -> AsyncIterator[Rig]:
    async with proxied_app(settings, LEASE_TIMEOUT) as app_rig:
        yield app_rig


@pytest.fixture
async def long_lease_rig(settings: Settings) -> AsyncIterator[Rig]:
    """The rig with the hour-long lease: a session freed at all was freed by its rollback."""
    async with proxied_app(settings, LONG_LEASE) as app_rig:
        yield app_rig


@asynccontextmanager
async def proxied_app(settings: Settings, lease_timeout: float) -> AsyncIterator[Rig]:
    async with database_proxy(settings.database_url or "") as (proxy, url):
        proxied = settings.model_copy(
            update={
                "database_url": url,
                "database_timeout_seconds": DATABASE_TIMEOUT,
                "pool_timeout_seconds": POOL_TIMEOUT,
                "lease_timeout_seconds": lease_timeout,
                "pool_min_size": 2,
                "pool_max_size": 6,
            }
        )
        async with (
            running_server(create_app(proxied)) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=60) as http,
        ):
            yield Rig(proxy, http)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


async def slow_agent(http: httpx.AsyncClient) -> str:
    agent_id = uid("slow")
    body = {"id": agent_id, "name": "slow", "model": SLOW_MODEL}
    assert (await http.post("/v1/agents", json=body)).status_code == 201
    return agent_id


async def one_slow_turn(http: httpx.AsyncClient) -> tuple[str, str, list[dict[str, Any]]]:
    """A new session of a slow agent with one turn: its id, its messages URL, its history."""
    agent_id = await slow_agent(http)
    session_id = uid("s")
    url = f"/v1/sessions/{session_id}/messages"
    first = await http.post(url, json={"content": "one", "agent_id": agent_id})
    assert first.status_code == 200, first.text
    return session_id, url, await messages(http, session_id)


async def conversation(http: httpx.AsyncClient) -> tuple[str, str, list[dict[str, Any]]]:
    """A session with one committed turn, its thread id and its history."""
    session_id = uid("s")
    body = {"content": "note 1", "agent_id": "default"}
    turn = await http.post(f"/v1/sessions/{session_id}/messages", json=body)
    assert turn.status_code == 200, turn.text
    thread = await http.post("/threads", json={"metadata": {"k": "v"}})
    assert thread.status_code == 200, thread.text
    return session_id, thread.json()["thread_id"], await messages(http, session_id)


async def messages(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/sessions/{session_id}/messages")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def messages_once_back(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    """The session's messages, read once the server answers them again after the proxy was
    restored: a 503 is still allowed right after the restore (``assert_recovered`` is where
    the recovery's bound is checked), and a loaded machine may take a while to reconnect."""
    url = f"/v1/sessions/{session_id}/messages"
    response = await status_within(http, "GET", url, 200, 30)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def database_requests(session_id: str, thread_id: str) -> list[tuple[str, str, Any]]:
    """(method, path, JSON body) of requests that each need the database."""
    return [
        ("POST", f"/v1/sessions/{session_id}/messages", {"content": "during"}),
        ("PUT", f"/v1/sessions/{uid('new')}", {}),
        ("GET", f"/v1/sessions/{session_id}/messages", None),
        ("GET", f"/v1/sessions/{session_id}", None),
        ("GET", "/v1/sessions", None),
        ("GET", "/v1/agents", None),
        ("POST", "/threads/search", {"limit": 5}),
        ("GET", f"/threads/{thread_id}/state", None),
        ("POST", f"/threads/{thread_id}/history", {"limit": 2}),
        ("POST", f"/threads/{thread_id}/runs/wait", {"assistant_id": "default", "input": {}}),
    ]


def assert_unavailable(response: httpx.Response, what: str) -> None:
    """A 503 database_unavailable a client knows to retry, and when."""
    assert response.status_code == 503, (what, response.status_code, response.text)
    body = response.json()
    assert body["error"] == "database_unavailable", (what, body)
    assert body["details"]["retryable"] is True, (what, body)
    assert int(response.headers["retry-after"]) > 0, (what, response.headers)


async def timed(http: httpx.AsyncClient, method: str, path: str, body: Any) -> tuple[
    httpx.Response, float
]:  # fmt: skip
    started = time.monotonic()
    response = await http.request(method, path, json=body)
    return response, time.monotonic() - started


async def drive_recovery(rig: Rig, session_id: str) -> list[tuple[float, str, int, str]]:
    """Restore the proxy and send requests in a loop for :data:`RECOVERY_WINDOW` seconds;
    return (seconds after the restore when sent, what, status, body) of each."""
    seen: list[tuple[float, str, int, str]] = []
    turns_url = f"/v1/sessions/{uid('after')}/messages"
    rig.proxy.restore()
    restored = time.monotonic()

    async def loop(name: str, method: str, path: str, body: Any) -> None:
        while (sent := time.monotonic() - restored) < RECOVERY_WINDOW:
            response = await rig.http.request(method, path, json=body)
            seen.append((sent, name, response.status_code, response.text[:300]))
            await asyncio.sleep(0.05)

    await asyncio.gather(
        loop("history", "GET", f"/v1/sessions/{session_id}/messages", None),
        loop("list", "GET", "/v1/sessions", None),
        loop("get-or-create", "PUT", f"/v1/sessions/{session_id}", {}),
        loop("turns", "POST", turns_url, {"content": "hi", "agent_id": "default"}),
        loop("threads", "POST", "/threads/search", {"limit": 2}),
    )
    return seen


def assert_recovered(seen: list[tuple[float, str, int, str]]) -> None:
    """Nothing sent 1 s or more after the restore failed; nothing at all was a bare 500."""
    assert all(status < 500 or status == 503 for _, _, status, _ in seen), seen
    late = [(t, name, status, body) for t, name, status, body in seen if t >= RECOVERY_SECONDS]
    assert late, "no request was sent after the first second"
    failed = [entry for entry in late if entry[2] >= 400]
    assert not failed, failed


class TestCut:
    async def test_every_database_request_answers_503_and_recovers_within_1_s(
        self, rig: Rig
    ) -> None:
        """Cut: 503 with Retry-After on every route, /readyz not ready; restored: all 200."""
        session_id, thread_id, before = await conversation(rig.http)
        rig.proxy.cut()
        for method, path, body in database_requests(session_id, thread_id):
            response, _ = await timed(rig.http, method, path, body)
            assert_unavailable(response, f"{method} {path}")
        ready = await rig.http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        assert (await rig.http.get("/healthz")).status_code == 200
        assert_recovered(await drive_recovery(rig, session_id))
        assert (await rig.http.get("/readyz")).status_code == 200
        assert await messages(rig.http, session_id) == before

    async def test_a_turn_cut_off_mid_way_is_rolled_back_whole(self, rig: Rig) -> None:
        """Cut during the model call: 503 retryable, no half-written session, turns go on."""
        session_id, url, before = await one_slow_turn(rig.http)
        turn = asyncio.create_task(rig.http.post(url, json={"content": "two"}))
        await turn_running(rig.http, session_id)  # the turn holds its lease, waits on the model
        rig.proxy.cut()
        assert_unavailable(await turn, "the turn in flight")
        rig.proxy.restore()
        assert await messages_once_back(rig.http, session_id) == before
        # Its lease lapses (the turn could not give it back), then the next turn runs.
        deadline = time.monotonic() + LEASE_TIMEOUT + 10
        while (again := await rig.http.post(url, json={"content": "two"})).status_code == 409:
            assert time.monotonic() < deadline, again.text
            await asyncio.sleep(0.2)
        assert again.status_code == 200, again.text
        after = await messages(rig.http, session_id)
        assert after[: len(before)] == before
        assert [m["content"] for m in after if m["role"] == "user"] == ["one", "two"]

    async def test_a_turn_cut_off_frees_its_session_once_postgres_is_back(
        self, long_lease_rig: Rig
    ) -> None:
        """The cut turn could not roll back while Postgres was away; once it is back the
        session takes turns again, its lease an hour long. (Here the holder's
        heartbeat, cut too, went stale, so the next turn may take over; after a Postgres
        restart, whose guard keeps holders alive, the rollback retried in the background
        frees it: ``SessionLeases.abort_when_back``.)"""
        rig = long_lease_rig
        session_id, url, before = await one_slow_turn(rig.http)
        turn = asyncio.create_task(rig.http.post(url, json={"content": "two"}))
        await turn_running(rig.http, session_id)
        rig.proxy.cut()
        assert_unavailable(await turn, "the turn in flight")
        rig.proxy.restore()
        restored = time.monotonic()
        deadline = restored + 60
        while (again := await rig.http.post(url, json={"content": "two"})).status_code != 200:
            assert again.status_code in (409, 503), again.text
            assert time.monotonic() < deadline, f"the session never came free: {again.text}"
            await asyncio.sleep(0.2)
        print(f"the cut turn's session took turns {time.monotonic() - restored:.2f} s after")
        after = await messages(rig.http, session_id)
        assert after[: len(before)] == before
        assert [m["content"] for m in after if m["role"] == "user"] == ["one", "two"]


class TestStall:
    async def test_stalled_requests_answer_503_and_recover_within_1_s(self, rig: Rig) -> None:
        """Stalled: each request answers 503 (the server's bound, not the client's timeout);
        restored: all 200."""
        session_id, thread_id, before = await conversation(rig.http)
        rig.proxy.stall()
        requests = database_requests(session_id, thread_id)
        answers = await asyncio.gather(*(timed(rig.http, m, p, b) for m, p, b in requests))
        for (method, path, _), (response, seconds) in zip(requests, answers, strict=True):
            assert_unavailable(response, f"{method} {path}")
            print(f"stalled: {method} {path} answered 503 in {seconds:.2f} s")
        ready, seconds = await timed(rig.http, "GET", "/readyz", None)
        assert ready.status_code == 503
        print(f"stalled: GET /readyz answered 503 in {seconds:.2f} s")
        assert_recovered(await drive_recovery(rig, session_id))
        assert await messages(rig.http, session_id) == before

    async def test_a_turn_stalled_at_its_commit_is_rolled_back_whole(self, rig: Rig) -> None:
        """Stalled during the model call, the turn's commit never arrives: 503, rolled back."""
        session_id, url, before = await one_slow_turn(rig.http)
        turn = asyncio.create_task(timed(rig.http, "POST", url, {"content": "two"}))
        await turn_running(rig.http, session_id)
        rig.proxy.stall()
        response, seconds = await turn
        assert_unavailable(response, "the stalled turn")
        print(f"stalled: the turn answered 503 in {seconds:.2f} s (its model's delay first)")
        rig.proxy.restore()
        await asyncio.sleep(0.5)  # what the stall held, if anything, goes on meanwhile
        assert await messages_once_back(rig.http, session_id) == before
