"""Resumable ``/v1`` SSE turns: every event has an id, ``Content-Location`` names the turn's
stream, and ``GET /v1/sessions/{id}/turns/{turn_id}/stream`` with ``Last-Event-ID`` replays
what a client missed, then the rest live, from any replica. A client that drops mid-turn
does not stop it, unless it asked for ``on_disconnect=cancel`` (then the turn rolls back
whole). Two ``sessiongraph serve`` processes on one database; raw SSE over httpx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from runtime import Settings
from tests.integration.test_compat_resumable import Event, sse_events
from tests.integration.test_http_auth import bearer, create_key, own_db, serve
from tests.support.processes import clean_env, serve_processes

SSE = {"Accept": "text/event-stream"}
PACED = {"provider": "offline", "params": {"delay_seconds": 1}}
# Slow enough that the turn is still in its second model call when the server sees its
# client leave, however slowly a loaded machine gets there.
SLOWER = {"provider": "offline", "params": {"delay_seconds": 3}}


@pytest.fixture(scope="module")
def replicas(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Base URLs of two ready servers on the module's database."""
    logs = tmp_path_factory.mktemp("resumable")
    env = clean_env(DATABASE_URL=database_url, SESSIONGRAPH_SWEEP_INTERVAL_SECONDS="0")
    with serve_processes([Path(logs) / "a.log", Path(logs) / "b.log"], env) as servers:
        yield [server.url for server in servers]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


async def paced_agent(http: httpx.AsyncClient, model: dict[str, Any] = PACED) -> str:
    """An agent whose model takes a second per call (or as ``model`` says), with the
    calculator."""
    agent_id = uid("paced")
    body = {"id": agent_id, "name": "paced", "model": model, "tools": ["calculator"]}
    response = await http.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    return agent_id


async def rejoin(http: httpx.AsyncClient, location: str, last: str | None) -> list[Event]:
    """Every event of a ``GET`` of a turn's stream (``last``: the Last-Event-ID sent)."""
    headers = {} if last is None else {"Last-Event-ID": last}
    async with http.stream("GET", location, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return [e async for e in sse_events(response)]


async def start_and_drop(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], keep: int
) -> tuple[str, list[Event]]:
    """Stream a turn, read ``keep`` events, drop the connection; its Content-Location and
    the events read."""
    seen: list[Event] = []
    async with http.stream("POST", path, json=body, headers=SSE) as response:
        assert response.status_code == 200, await response.aread()
        location = response.headers["content-location"]
        async for event in sse_events(response):
            seen.append(event)
            if len(seen) == keep:
                break
    return location, seen


class TestRejoinAnotherReplica:
    async def test_drop_mid_turn_and_rejoin_on_the_other_replica(self, replicas: list[str]) -> None:
        """Events seen on replica A, then those after Last-Event-ID from replica B, are the
        whole stream exactly once, in order; the turn went on while no client listened."""
        async with (
            httpx.AsyncClient(base_url=replicas[0], timeout=30) as a,
            httpx.AsyncClient(base_url=replicas[1], timeout=30) as b,
        ):
            agent_id = await paced_agent(a)
            sid = uid("s")
            body = {"content": "what is 6 * 7?", "agent_id": agent_id}
            location, seen = await start_and_drop(a, f"/v1/sessions/{sid}/messages", body, 2)
            assert [e[1] for e in seen] == ["turn", "tool_call"]
            turn = seen[0][2]
            assert turn["session_id"] == sid
            assert location == f"/v1/sessions/{sid}/turns/{turn['turn_id']}/stream"

            rest = await rejoin(b, location, seen[-1][0])
            everything = await rejoin(b, location, "-1")
            assert seen + rest == everything
            assert [int(e[0]) for e in everything] == list(range(1, len(everything) + 1))
            assert everything[-1][1] == "done"
            assert everything[-1][2]["reply"] == "The result is 42."
            # No Last-Event-ID replays from the start too, on either replica.
            assert await rejoin(a, location, None) == everything
            session = (await b.get(f"/v1/sessions/{sid}")).json()
            assert session["turns"] == 1 and session["messages"] == 4

    async def test_resume_streams_are_resumable_too(self, replicas: list[str]) -> None:
        """A streamed resume names its own stream, replayable from the other replica."""
        async with (
            httpx.AsyncClient(base_url=replicas[0], timeout=30) as a,
            httpx.AsyncClient(base_url=replicas[1], timeout=30) as b,
        ):
            agent_id = uid("ask")
            spec = {
                "id": agent_id,
                "name": "ask",
                "tools": ["calculator"],
                "require_approval": ["calculator"],
            }
            assert (await a.post("/v1/agents", json=spec)).status_code == 201
            sid = uid("s")
            first = await a.post(
                f"/v1/sessions/{sid}/messages",
                json={"content": "what is 6 * 7?", "agent_id": agent_id},
            )
            assert first.json()["status"] == "awaiting_approval", first.text
            body = {"decisions": [{"action": "approve"}]}
            location, seen = await start_and_drop(a, f"/v1/sessions/{sid}/resume", body, 1)
            assert seen[0][1] == "turn"
            everything = await rejoin(b, location, "-1")
            assert everything[0] == seen[0] and everything[-1][1] == "done"


class TestOnDisconnect:
    async def test_cancel_rolls_the_turn_back(self, replicas: list[str]) -> None:
        """on_disconnect=cancel: a client that leaves mid-turn cancels it; nothing of it stays,
        and its stream ends with an error."""
        async with httpx.AsyncClient(base_url=replicas[0], timeout=30) as a:
            agent_id = await paced_agent(a, SLOWER)
            sid = uid("s")
            path = f"/v1/sessions/{sid}/messages?on_disconnect=cancel"
            body = {"content": "what is 6 * 7?", "agent_id": agent_id}
            location, _ = await start_and_drop(a, path, body, 2)
            everything = await rejoin(a, location, "-1")
            assert everything[-1][1] == "error"
            assert (await a.get(f"/v1/sessions/{sid}/messages")).json()["items"] == []
            assert (await a.get(f"/v1/sessions/{sid}")).json()["turns"] == 0


class TestOwners:
    async def test_another_owner_gets_404(self, settings: Settings, fresh_database: str) -> None:
        """A turn's stream is its owner's: another key's GET answers 404."""
        s = own_db(settings, fresh_database)
        _, alice = await create_key(s, "alice")
        _, bob = await create_key(s, "bob")
        async with serve(s) as http:
            sid = uid("s")
            response = await http.post(
                f"/v1/sessions/{sid}/messages",
                json={"content": "hello", "agent_id": "default"},
                headers={**SSE, **bearer(alice)},
            )
            assert response.status_code == 200, response.text
            location = response.headers["content-location"]
            mine = await http.get(location, headers=bearer(alice))
            assert mine.status_code == 200 and "event: done" in mine.text
            theirs = await http.get(location, headers=bearer(bob))
            assert theirs.status_code == 404, theirs.text
            assert theirs.json()["error"] == "not_found"
