"""Two real server processes (replicas) on one database, driven over HTTP.

Both are ``sessiongraph serve`` (``python -m api.cli serve``) on their own loopback port
and the module's database, started together (so their start-up migrations race too). A
session is just rows in Postgres: any replica may run its next turn, every replica reads
the same history, and the per-session lease keeps two replicas from running turns on one
session at once (the loser answers 409 ``session_busy``; the history never forks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest

from tests.support.processes import ServeProcess, clean_env, serve_processes

pytestmark = pytest.mark.slow

ROUNDS = 6
SLOW_MODEL = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 0.5}}


@pytest.fixture(scope="module")
def replicas(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Base URLs of two ready servers on the module's database; both stop cleanly after."""
    logs = tmp_path_factory.mktemp("replicas")
    env = clean_env(DATABASE_URL=database_url, SESSIONGRAPH_SWEEP_INTERVAL_SECONDS="0")
    paths = [Path(logs) / "a.log", Path(logs) / "b.log"]
    with serve_processes(paths, env) as servers:
        with psycopg.connect(database_url) as conn:  # one heartbeat row per ready replica
            assert conn.execute("SELECT count(*) FROM replicas").fetchone() == (2,)
        yield [server.url for server in servers]
        codes = [(server, server.stop()) for server in servers]
    bad = [(server, code) for server, code in codes if code != 0]
    assert not bad, "\n".join(_exit_report(server, code) for server, code in bad)
    # Nothing went wrong unseen: no unhandled error was logged by either replica.
    for server, code in codes:
        assert "Traceback" not in server.log(), _exit_report(server, code)
    # Both beat while they served, and a clean stop deleted each one's heartbeat row.
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM replicas").fetchone() == (0,)


def _exit_report(server: ServeProcess, code: int) -> str:
    return f"serve on :{server.port} exited {code}:\n{server.log()}"


@asynccontextmanager
async def clients(urls: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One keep-alive client per replica, its connection already open."""
    made = [httpx.AsyncClient(base_url=url, timeout=30) for url in urls]
    try:
        for client in made:
            (await client.get("/healthz")).raise_for_status()
        yield made
    finally:
        for client in made:
            await client.aclose()


async def history(client: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/sessions/{session_id}/messages", params={"limit": 500})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    items: list[dict[str, Any]] = body["items"]
    return items


async def session_of(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_alternating(messages: list[dict[str, Any]]) -> None:
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant"] * (len(messages) // 2), roles
    assert len(messages) % 2 == 0


async def test_alternating_turns_share_one_conversation(replicas: list[str]) -> None:
    """Turns alternate A, B, A, ...: each replica sees the other's turns; reads agree."""
    session_id = f"rep-{uuid4().hex[:8]}"
    turns = [
        ("my name is Alice", "Nice to meet you, Alice."),
        ("what is my name?", "Your name is Alice."),
        ("my city is Paris", "Got it: your city is Paris."),
        ("what's my city?", "Your city is Paris."),
        # Non-system messages so far, the current one included: 4 turns x 2 + 1.
        ("how many messages", "This conversation has 9 messages."),
        ("what is my name?", "Your name is Alice."),
    ]
    async with clients(replicas) as (a, b):
        created = await a.put(f"/v1/sessions/{session_id}", json={})
        assert created.status_code == 201, created.text
        again = await b.put(f"/v1/sessions/{session_id}", json={})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == session_id

        for i, (content, expected) in enumerate(turns):
            client = (a, b)[i % 2]
            response = await client.post(
                f"/v1/sessions/{session_id}/messages", json={"content": content}
            )
            assert response.status_code == 200, (i, response.text)
            result = response.json()
            assert result["reply"] == expected, (i, content, result)
            assert [m["role"] for m in result["messages"]] == ["user", "assistant"]

        from_a = await history(a, session_id)
        from_b = await history(b, session_id)
        assert from_a == from_b
        assert len(from_a) == 12
        assert_alternating(from_a)
        assert [m["content"] for m in from_a[0::2]] == [c for c, _ in turns]
        assert [m["content"] for m in from_a[1::2]] == [r for _, r in turns]

        for client in (a, b):
            session = await session_of(client, session_id)
            assert session["turns"] == len(turns), session
            assert session["messages"] == 2 * len(turns), session


async def test_simultaneous_sends_through_both_replicas_never_fork(replicas: list[str]) -> None:
    """Each round posts to one session through A and B at once: one turn runs, one is busy."""
    agent_id = f"slow-{uuid4().hex[:8]}"
    session_id = f"race-{uuid4().hex[:8]}"
    async with clients(replicas) as (a, b):
        created = await a.post(
            "/v1/agents", json={"id": agent_id, "name": "slow", "model": SLOW_MODEL}
        )
        assert created.status_code == 201, created.text
        assert created.json()["model"] == SLOW_MODEL
        opened = await b.put(f"/v1/sessions/{session_id}", json={"agent_id": agent_id})
        assert opened.status_code == 201, opened.text

        accepted: list[str] = []  # contents of the turns that ran, in the order they ran
        busy = 0
        for round_ in range(ROUNDS):
            contents = [f"round {round_} via A", f"round {round_} via B"]
            responses = await asyncio.gather(
                *(
                    client.post(f"/v1/sessions/{session_id}/messages", json={"content": content})
                    for client, content in zip((a, b), contents, strict=True)
                )
            )
            codes = sorted(r.status_code for r in responses)
            assert codes in ([200, 409], [200, 200]), [(r.status_code, r.text) for r in responses]
            ok = [(c, r.json()) for c, r in zip(contents, responses, strict=True) if r.is_success]
            for response in responses:
                if response.status_code == 409:
                    busy += 1
                    assert response.json()["error"] == "session_busy", response.text
            # Both 200: the two turns ran one after the other; order them by completion.
            ok.sort(key=lambda pair: pair[1]["messages"][-1]["created_at"])
            for content, result in ok:
                assert result["reply"] == f"You said: {content}", result
                assert [m["role"] for m in result["messages"]] == ["user", "assistant"]
                accepted.append(content)

        assert busy >= 1, "the two replicas never contended for the session"
        from_a = await history(a, session_id)
        from_b = await history(b, session_id)
        assert from_a == from_b
        assert len(from_a) == 2 * len(accepted)
        assert_alternating(from_a)
        # Every turn is whole: its reply follows its own message, with nothing in between.
        users = [m["content"] for m in from_a[0::2]]
        replies = [m["content"] for m in from_a[1::2]]
        assert replies == [f"You said: {content}" for content in users]
        assert sorted(users) == sorted(accepted)
        assert users == accepted

        for client in (a, b):
            session = await session_of(client, session_id)
            assert session["turns"] == len(accepted), session
            assert session["messages"] == 2 * len(accepted), session
