"""Safe retries: an Idempotency-Key makes a repeated turn return the first one's result."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import uuid4

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.checks import turn_running

SLOW_MODEL = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 1.0}}


def uid(prefix: str = "s") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


async def slow_agent(http: httpx.AsyncClient) -> str:
    agent_id = uid("slow")
    response = await http.post(
        "/v1/agents", json={"id": agent_id, "name": "slow", "model": SLOW_MODEL}
    )
    assert response.status_code == 201, response.text
    return agent_id


async def history(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/sessions/{session_id}/messages")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def user_messages(items: list[dict[str, Any]], text: str) -> int:
    return sum(1 for m in items if m["role"] == "user" and m["content"] == text)


async def wait_committed(http: httpx.AsyncClient, session_id: str, count: int) -> None:
    for _ in range(200):
        response = await http.get(f"/v1/sessions/{session_id}/messages")
        if response.status_code == 200 and len(response.json()["items"]) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the turn never committed")


class TestIdempotencyKey:
    async def test_retry_after_a_dropped_connection_gets_the_same_answer(
        self, http: httpx.AsyncClient, server_url: str
    ) -> None:
        """A client that gave up before the answer retries with its key: same answer, one turn."""
        agent_id = await slow_agent(http)
        session_id = uid()
        url = f"/v1/sessions/{session_id}/messages"
        body = {"content": "remember the number 7", "agent_id": agent_id}
        headers = {"Idempotency-Key": "retry-1"}
        async with httpx.AsyncClient(base_url=server_url, timeout=0.3) as impatient:
            with pytest.raises(httpx.TimeoutException):
                await impatient.post(url, json=body, headers=headers)
        # The turn went on without its client and committed.
        await wait_committed(http, session_id, 2)
        retry = await http.post(url, json=body, headers=headers)
        assert retry.status_code == 200, retry.text
        items = await history(http, session_id)
        assert user_messages(items, body["content"]) == 1
        assert len(items) == 2
        assert retry.json()["messages"][-1]["id"] == items[-1]["id"]
        again = await http.post(url, json=body, headers=headers)
        assert again.json() == retry.json()

    async def test_retry_while_the_first_runs_waits_for_it(self, http: httpx.AsyncClient) -> None:
        """A retry sent while the first attempt still runs waits and returns its result."""
        agent_id = await slow_agent(http)
        session_id = uid()
        url = f"/v1/sessions/{session_id}/messages"
        body = {"content": "hello", "agent_id": agent_id}
        headers = {"Idempotency-Key": "retry-2"}
        first = asyncio.create_task(http.post(url, json=body, headers=headers))
        await turn_running(http, session_id)
        second = await http.post(url, json=body, headers=headers)
        assert second.status_code == 200, second.text
        assert (await first).json() == second.json()
        assert user_messages(await history(http, session_id), "hello") == 1

    async def test_same_key_different_body_is_422(self, http: httpx.AsyncClient) -> None:
        """The same key with another request is refused and runs nothing."""
        agent_id = await slow_agent(http)
        session_id = uid()
        url = f"/v1/sessions/{session_id}/messages"
        headers = {"Idempotency-Key": "retry-3"}
        ok = await http.post(url, json={"content": "a", "agent_id": agent_id}, headers=headers)
        assert ok.status_code == 200, ok.text
        other = await http.post(url, json={"content": "b", "agent_id": agent_id}, headers=headers)
        assert other.status_code == 422, other.text
        assert other.json()["details"]["field"] == "idempotency_key"
        assert len(await history(http, session_id)) == 2
        bad = await http.post(url, json={"content": "c"}, headers={"Idempotency-Key": "a b"})
        assert bad.status_code == 422

    async def test_new_key_runs_a_new_turn_and_streams_replay(
        self, http: httpx.AsyncClient
    ) -> None:
        """Another key is another turn; a streamed retry replays the kept result as events."""
        agent_id = await slow_agent(http)
        session_id = uid()
        url = f"/v1/sessions/{session_id}/messages"
        body = {"content": "x", "agent_id": agent_id}
        first = await http.post(url, json=body, headers={"Idempotency-Key": "k1"})
        await http.post(url, json=body, headers={"Idempotency-Key": "k2"})
        assert user_messages(await history(http, session_id), "x") == 2
        headers = {"Idempotency-Key": "k1", "Accept": "text/event-stream"}
        async with http.stream("POST", url, json=body, headers=headers) as response:
            text = (await response.aread()).decode()
        done = [line for line in text.splitlines() if line.startswith("data:")][-1]
        replayed = json.loads(done[5:])
        assert replayed["reply"] == first.json()["reply"]
        assert [m["id"] for m in replayed["messages"]] == [
            m["id"] for m in first.json()["messages"]
        ]
        assert user_messages(await history(http, session_id), "x") == 2

    async def test_agent_chat_without_session_and_websocket_frames(
        self, http: httpx.AsyncClient, server_url: str
    ) -> None:
        """Agent chat without a session id retries into the same session; so do WS frames."""
        agent_id = await slow_agent(http)
        headers = {"Idempotency-Key": uid("key")}
        body = {"content": "hi"}
        first = await http.post(f"/v1/agents/{agent_id}/chat", json=body, headers=headers)
        second = await http.post(f"/v1/agents/{agent_id}/chat", json=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json() == second.json()
        assert len(await history(http, first.json()["session_id"])) == 2
        session_id = uid()
        ws_url = server_url.replace("http", "ws") + f"/v1/sessions/{session_id}/ws"
        frame = json.dumps({"content": "yo", "idempotency_key": "w1"})
        results = []
        async with connect(f"{ws_url}?agent_id={agent_id}") as ws:
            json.loads(await ws.recv())  # the session
            for _ in range(2):
                await ws.send(frame)
                while (event := json.loads(await ws.recv()))["type"] not in ("done", "error"):
                    pass
                results.append(event)
        assert results[0] == results[1]
        assert results[0]["type"] == "done", results[0]
        assert user_messages(await history(http, session_id), "yo") == 1
