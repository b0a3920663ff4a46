"""Safe retries across real ``sessiongraph serve`` replicas, with the client's answer lost.

Two replicas on one database; the client reaches replica A through a TCP proxy
(:mod:`tests.support.tcp_proxy`). The proxy holds A's answer until the turn has committed and
then resets the client's connection (the answer is never read), or resets it while the turn
is still running (a client killed mid-turn). The client retries with the same
``Idempotency-Key``, on A again or on replica B: it gets the committed turn's answer, the
history holds the message once, and a further retry answers the same again.

``test_idempotency.py`` covers the rest of the key's rules on one in-process server (a
client that timed out, a retry while the first runs, another body, SSE replay, agent chat,
WebSocket frames).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.support.checks import turn_running
from tests.support.processes import ServeProcess, clean_env, serve_processes
from tests.support.tcp_proxy import TcpProxy, running_proxy

# Slow enough that a turn seen running is still running when its history is read after the
# client was cut off, however slowly a loaded machine gets there.
SLOW_MODEL = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 3.0}}
AGENT_ID = "slow-retries"


@pytest.fixture(scope="module")
def replicas(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    list[ServeProcess]
]:  # fmt: skip
    """Replicas A and B on the module's database, with the slow agent."""
    folder = tmp_path_factory.mktemp("replicas")
    env = clean_env(
        DATABASE_URL=database_url,
        SESSIONGRAPH_LEASE_TIMEOUT_SECONDS="10",
        SESSIONGRAPH_SWEEP_INTERVAL_SECONDS="0",
    )
    with serve_processes([folder / "a.log", folder / "b.log"], env) as servers:
        body = {"id": AGENT_ID, "name": "slow", "model": SLOW_MODEL}
        created = httpx.post(f"{servers[0].url}/v1/agents", json=body, timeout=30)
        assert created.status_code == 201, created.text
        yield servers


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


async def history(url: str, session_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.get(f"/v1/sessions/{session_id}/messages")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def committed(url: str, session_id: str, timeout: float = 30) -> None:
    """Wait until the session's turn has committed (its answer is in the history)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            response = await http.get(f"/v1/sessions/{session_id}/messages")
        if response.status_code == 200 and len(response.json()["items"]) >= 2:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the turn never committed")


async def lost_turn(proxy: TcpProxy, url: str, body: dict[str, Any], key: str) -> None:
    """Send the turn through ``proxy``; it must fail on the client's side (never answered)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}", timeout=60) as http:
        with pytest.raises(httpx.TransportError):
            await http.post(url, json=body, headers={"Idempotency-Key": key})


async def retry(base_url: str, url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        response = await http.post(url, json=body, headers={"Idempotency-Key": key})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def assert_once(base_url: str, session_id: str, answer: dict[str, Any], text: str) -> None:
    """The history holds the message once, and the answer is the committed turn's."""
    items = await history(base_url, session_id)
    assert [m["content"] for m in items if m["role"] == "user"] == [text], items
    assert len(items) == 2, items
    assert answer["messages"][-1]["id"] == items[-1]["id"]
    assert answer["reply"] == items[-1]["content"]


def pick(replicas: list[ServeProcess], where: str) -> str:
    return replicas[0].url if where == "same replica" else replicas[1].url


class TestAnswerLost:
    @pytest.mark.parametrize("where", ["same replica", "other replica"])
    async def test_cut_after_the_commit_the_retry_gets_the_same_answer(
        self, replicas: list[ServeProcess], where: str
    ) -> None:
        """The answer is held until the turn commits, then the connection is reset: the
        keyed retry answers the committed turn; the message is in the history once."""
        a = replicas[0]
        session_id, key, text = uid("s"), uid("key"), "remember the number 7"
        url = f"/v1/sessions/{session_id}/messages"
        body = {"content": text, "agent_id": AGENT_ID}
        async with running_proxy("127.0.0.1", a.port) as proxy:
            proxy.hold_replies()
            first = asyncio.create_task(lost_turn(proxy, url, body, key))
            await committed(a.url, session_id)
            proxy.cut()
            await first
        answer = await retry(pick(replicas, where), url, body, key)
        await assert_once(a.url, session_id, answer, text)
        assert await retry(replicas[1].url, url, body, key) == answer
        assert await retry(a.url, url, body, key) == answer

    @pytest.mark.parametrize("where", ["same replica", "other replica"])
    async def test_retry_while_the_first_attempt_still_runs_waits_for_it(
        self, replicas: list[ServeProcess], where: str
    ) -> None:
        """The client is cut off mid-turn and retries at once: the retry waits for the first
        attempt (still running on A) and answers its result; the turn runs once."""
        a = replicas[0]
        session_id, key, text = uid("s"), uid("key"), "hello there"
        url = f"/v1/sessions/{session_id}/messages"
        body = {"content": text, "agent_id": AGENT_ID}
        async with running_proxy("127.0.0.1", a.port) as proxy:
            first = asyncio.create_task(lost_turn(proxy, url, body, key))
            async with httpx.AsyncClient(base_url=a.url, timeout=30) as http:
                await turn_running(http, session_id)  # A holds the lease, waits on the model
            proxy.cut()
            await first
        assert len(await history(a.url, session_id)) < 2, "the first attempt already ended"
        answer = await retry(pick(replicas, where), url, body, key)
        await assert_once(a.url, session_id, answer, text)
        assert await retry(replicas[1].url, url, body, key) == answer
