"""Every HTTP resource over real HTTP: a uvicorn server, its real lifespan, a real Postgres.

Auth is off (no API keys, loopback host), so every caller is owner ``local`` with the admin
role. The module's tests share one database: every test uses ids of its own.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import httpx

from api.app import create_app
from runtime import Settings
from tests.support.server import running_server

ERROR_KEYS = {"error", "message", "details"}


def uid(prefix: str) -> str:
    """A per-test id."""
    return f"{prefix}-{uuid4().hex[:8]}"


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an error response's status, code and body shape; return its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body


async def create_agent(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"id": uid("agt"), "name": "Test agent", **fields}
    response = await http.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def put_session(
    http: httpx.AsyncClient, session_id: str, expect: int = 201, **body: Any
) -> dict[str, Any]:
    response = await http.put(f"/v1/sessions/{session_id}", json=body)
    assert response.status_code == expect, response.text
    return response.json()


async def send(http: httpx.AsyncClient, session_id: str, content: str, **extra: Any) -> Any:
    response = await http.post(
        f"/v1/sessions/{session_id}/messages", json={"content": content, **extra}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def walk(http: httpx.AsyncClient, url: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged list, following next_cursor to the end."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await http.get(url, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= params.get("limit", 50)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination never ended")


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class TestAgents:
    async def test_create_echoes_fields_at_version_1(self, http: httpx.AsyncClient) -> None:
        """POST /v1/agents answers 201 with the given fields, the owner and version 1."""
        agent_id = uid("agt")
        response = await http.post(
            "/v1/agents",
            json={
                "id": agent_id,
                "name": "Support bot",
                "description": "Answers questions",
                "system_prompt": "Be brief.",
                "model": "offline:deterministic",
                "tools": ["calculator"],
                "session_ttl_seconds": 3600,
            },
        )
        assert response.status_code == 201, response.text
        agent = response.json()
        assert agent["id"] == agent_id
        assert agent["owner"] == "local"
        assert agent["version"] == 1
        assert agent["name"] == "Support bot"
        assert agent["description"] == "Answers questions"
        assert agent["system_prompt"] == "Be brief."
        assert agent["model"] == {"provider": "offline", "name": "deterministic", "params": {}}
        assert agent["tools"] == ["calculator"]
        assert agent["graph"] == "react"
        assert agent["session_ttl_seconds"] == 3600
        assert when(agent["created_at"]) and when(agent["updated_at"])

    async def test_duplicate_id_is_409(self, http: httpx.AsyncClient) -> None:
        """Creating an agent with an id already taken answers 409 conflict."""
        agent = await create_agent(http)
        response = await http.post("/v1/agents", json={"id": agent["id"], "name": "Again"})
        body = error(response, 409, "conflict")
        assert body["details"]["agent_id"] == agent["id"]

    async def test_unknown_tool_is_422(self, http: httpx.AsyncClient) -> None:
        """An unknown tool name is refused with 422 invalid_input and nothing is stored."""
        agent_id = uid("agt")
        response = await http.post(
            "/v1/agents", json={"id": agent_id, "name": "x", "tools": ["no_such_tool"]}
        )
        error(response, 422, "invalid_input")
        error(await http.get(f"/v1/agents/{agent_id}"), 404, "not_found")

    async def test_list_includes_default_and_own_and_filters_by_name(
        self, http: httpx.AsyncClient
    ) -> None:
        """The list shows the system agent and one's own; ?name= filters by substring."""
        marker = uuid4().hex[:8]
        agent = await create_agent(http, name=f"Findme {marker}")
        ids = {a["id"] for a in await walk(http, "/v1/agents")}
        assert {"default", agent["id"]} <= ids
        response = await http.get("/v1/agents", params={"name": marker})
        assert response.status_code == 200
        assert [a["id"] for a in response.json()["items"]] == [agent["id"]]
        default = next(a for a in await walk(http, "/v1/agents") if a["id"] == "default")
        assert default["owner"] == "system"

    async def test_pagination_walks_every_agent_once(self, http: httpx.AsyncClient) -> None:
        """limit=1 pages through every agent via next_cursor, without duplicates."""
        created = {(await create_agent(http))["id"] for _ in range(3)}
        everything = [a["id"] for a in await walk(http, "/v1/agents", limit=500)]
        paged = [a["id"] for a in await walk(http, "/v1/agents", limit=1)]
        assert len(paged) == len(set(paged))
        assert paged == everything
        assert created | {"default"} <= set(paged)

    async def test_garbage_cursor_is_422(self, http: httpx.AsyncClient) -> None:
        """A cursor the list never issued answers 422 invalid_input."""
        response = await http.get("/v1/agents", params={"cursor": "not-a-cursor!!"})
        error(response, 422, "invalid_input")

    async def test_get_and_unknown(self, http: httpx.AsyncClient) -> None:
        """GET returns the agent; an unknown id answers 404 not_found."""
        agent = await create_agent(http)
        response = await http.get(f"/v1/agents/{agent['id']}")
        assert response.status_code == 200
        assert response.json() == agent
        missing = uid("missing")
        body = error(await http.get(f"/v1/agents/{missing}"), 404, "not_found")
        assert body["details"]["agent_id"] == missing
        default = await http.get("/v1/agents/default")
        assert default.status_code == 200 and default.json()["owner"] == "system"

    async def test_patch_bumps_version_and_changes_only_given_fields(
        self, http: httpx.AsyncClient
    ) -> None:
        """PATCH changes the given fields, keeps the rest and bumps the version."""
        agent = await create_agent(http, description="before", tools=["calculator"])
        response = await http.patch(
            f"/v1/agents/{agent['id']}", json={"description": "after", "tools": []}
        )
        assert response.status_code == 200, response.text
        patched = response.json()
        assert patched["version"] == 2
        assert patched["description"] == "after" and patched["tools"] == []
        for key in ("id", "name", "system_prompt", "model", "budgets", "created_at"):
            assert patched[key] == agent[key]
        again = (await http.get(f"/v1/agents/{agent['id']}")).json()
        assert again == patched

    async def test_patch_unknown_field_is_422(self, http: httpx.AsyncClient) -> None:
        """PATCH with a field agents do not have answers 422 and changes nothing."""
        agent = await create_agent(http)
        response = await http.patch(f"/v1/agents/{agent['id']}", json={"colour": "blue"})
        error(response, 422, "invalid_input")
        assert (await http.get(f"/v1/agents/{agent['id']}")).json()["version"] == 1

    async def test_delete_without_sessions(self, http: httpx.AsyncClient) -> None:
        """DELETE of an agent without sessions answers 204, then the agent is gone."""
        agent = await create_agent(http)
        response = await http.delete(f"/v1/agents/{agent['id']}")
        assert response.status_code == 204 and response.content == b""
        error(await http.get(f"/v1/agents/{agent['id']}"), 404, "not_found")

    async def test_delete_with_live_session_needs_force(self, http: httpx.AsyncClient) -> None:
        """DELETE is 409 while a session is live; ?force=true deletes agent and session."""
        agent = await create_agent(http)
        session_id = uid("s")
        await put_session(http, session_id, agent_id=agent["id"])
        body = error(await http.delete(f"/v1/agents/{agent['id']}"), 409, "conflict")
        assert body["details"]["live_sessions"] == 1
        assert (await http.get(f"/v1/sessions/{session_id}")).status_code == 200
        response = await http.delete(f"/v1/agents/{agent['id']}", params={"force": "true"})
        assert response.status_code == 204
        error(await http.get(f"/v1/sessions/{session_id}"), 404, "not_found")
        error(await http.get(f"/v1/agents/{agent['id']}"), 404, "not_found")


class TestAgentVersions:
    async def test_versions_are_kept_and_an_older_one_made_current(
        self, http: httpx.AsyncClient
    ) -> None:
        """Every version is listed, newest first; an older one can be made current again and
        the next change is numbered after every kept one."""
        agent_id = uid("agt")
        created = await http.post(
            "/v1/agents", json={"id": agent_id, "name": "v", "system_prompt": "One."}
        )
        assert created.status_code == 201, created.text
        await http.patch(f"/v1/agents/{agent_id}", json={"system_prompt": "Two."})
        versions = (await http.get(f"/v1/agents/{agent_id}/versions")).json()
        assert [(v["version"], v["system_prompt"]) for v in versions] == [(2, "Two."), (1, "One.")]
        current = await http.post(f"/v1/agents/{agent_id}/versions/1/current")
        assert current.status_code == 200, current.text
        assert (current.json()["version"], current.json()["system_prompt"]) == (1, "One.")
        again = await http.patch(f"/v1/agents/{agent_id}", json={"system_prompt": "Three."})
        assert again.json()["version"] == 3
        error(await http.post(f"/v1/agents/{agent_id}/versions/7/current"), 404, "not_found")


class TestSessions:
    async def test_put_creates_then_returns_existing(self, http: httpx.AsyncClient) -> None:
        """PUT answers 201 with a new session, then 200 with the same one."""
        session_id = uid("s")
        created = await put_session(http, session_id, name="first", metadata={"k": "v"})
        assert created["id"] == session_id and created["agent_id"] == "default"
        assert created["owner"] == "local" and created["status"] == "active"
        assert created["name"] == "first" and created["metadata"] == {"k": "v"}
        assert created["turns"] == 0 and created["messages"] == 0
        existing = await put_session(http, session_id, expect=200)
        assert existing["created_at"] == created["created_at"]
        assert existing["name"] == "first"

    async def test_put_with_another_agent_is_409(self, http: httpx.AsyncClient) -> None:
        """PUT naming another agent than the session's answers 409 conflict."""
        agent = await create_agent(http)
        session_id = uid("s")
        await put_session(http, session_id)
        response = await http.put(f"/v1/sessions/{session_id}", json={"agent_id": agent["id"]})
        body = error(response, 409, "conflict")
        assert body["details"]["agent_id"] == "default"

    async def test_invalid_session_ids_are_422(self, http: httpx.AsyncClient) -> None:
        """Session ids outside the allowed pattern or length answer 422."""
        for bad in (quote("bad id!", safe=""), "x" * 200, "-leading-dash"):
            response = await http.put(f"/v1/sessions/{bad}", json={})
            error(response, 422, "invalid_input")

    async def test_metadata_over_16_kib_is_413(self, http: httpx.AsyncClient) -> None:
        """Metadata over 16 KiB answers 413 payload_too_large and creates nothing."""
        session_id = uid("s")
        response = await http.put(
            f"/v1/sessions/{session_id}", json={"metadata": {"blob": "x" * 17_000}}
        )
        error(response, 413, "payload_too_large")
        error(await http.get(f"/v1/sessions/{session_id}"), 404, "not_found")

    async def test_list_filters(self, http: httpx.AsyncClient) -> None:
        """The list filters by agent_id, by status and by metadata key:value."""
        agent = await create_agent(http)
        a, b = uid("s-a"), uid("s-b")
        tag = uuid4().hex[:8]
        await put_session(http, a, agent_id=agent["id"], metadata={"domain": "a.com", "t": tag})
        await put_session(http, b, agent_id=agent["id"], metadata={"domain": "b.com", "t": tag})
        by_agent = await walk(http, "/v1/sessions", agent_id=agent["id"])
        assert [s["id"] for s in by_agent] == [b, a]  # newest first
        by_meta = await walk(http, "/v1/sessions", metadata=[f"t:{tag}", "domain:a.com"])
        assert [s["id"] for s in by_meta] == [a]
        assert (await http.post(f"/v1/sessions/{b}/deactivate")).status_code == 200
        inactive = await walk(http, "/v1/sessions", agent_id=agent["id"], status="inactive")
        active = await walk(http, "/v1/sessions", agent_id=agent["id"], status="active")
        assert [s["id"] for s in inactive] == [b]
        assert [s["id"] for s in active] == [a]
        bad = await http.get("/v1/sessions", params={"metadata": "no-colon"})
        error(bad, 422, "invalid_input")

    async def test_list_pagination(self, http: httpx.AsyncClient) -> None:
        """limit=1 pages through sessions newest first, each once."""
        agent = await create_agent(http)
        ids = [uid("s") for _ in range(3)]
        for session_id in ids:
            await put_session(http, session_id, agent_id=agent["id"])
        paged = await walk(http, "/v1/sessions", agent_id=agent["id"], limit=1)
        assert [s["id"] for s in paged] == ids[::-1]

    async def test_get(self, http: httpx.AsyncClient) -> None:
        """GET returns the session as PUT created it; an unknown one answers 404."""
        session_id = uid("s")
        created = await put_session(http, session_id, description="d")
        response = await http.get(f"/v1/sessions/{session_id}")
        assert response.status_code == 200 and response.json() == created
        error(await http.get(f"/v1/sessions/{uid('missing')}"), 404, "not_found")

    async def test_patch(self, http: httpx.AsyncClient) -> None:
        """PATCH renames, replaces metadata whole, and a new TTL moves expires_at."""
        session_id = uid("s")
        created = await put_session(http, session_id, name="old", metadata={"a": 1, "b": 2})
        response = await http.patch(
            f"/v1/sessions/{session_id}",
            json={"name": "new", "metadata": {"c": 3}, "ttl_seconds": 60},
        )
        assert response.status_code == 200, response.text
        patched = response.json()
        assert patched["name"] == "new" and patched["metadata"] == {"c": 3}
        assert patched["ttl_seconds"] == 60
        expires = when(patched["expires_at"])
        assert expires < when(created["expires_at"])
        assert expires - when(patched["last_activity_at"]) < timedelta(seconds=120)
        assert (await http.get(f"/v1/sessions/{session_id}")).json() == patched
        bad = await http.patch(f"/v1/sessions/{session_id}", json={"agent_id": "x"})
        error(bad, 422, "invalid_input")

    async def test_delete(self, http: httpx.AsyncClient) -> None:
        """DELETE answers 204; then the session and its messages answer 404."""
        session_id = uid("s")
        await put_session(http, session_id)
        await send(http, session_id, "hello")
        response = await http.delete(f"/v1/sessions/{session_id}")
        assert response.status_code == 204 and response.content == b""
        error(await http.get(f"/v1/sessions/{session_id}"), 404, "not_found")
        error(await http.get(f"/v1/sessions/{session_id}/messages"), 404, "not_found")
        error(await http.delete(f"/v1/sessions/{session_id}"), 404, "not_found")

    async def test_deactivate_and_activate(self, http: httpx.AsyncClient) -> None:
        """An inactive session refuses turns with 409 session_inactive until activated."""
        session_id = uid("s")
        await put_session(http, session_id)
        response = await http.post(f"/v1/sessions/{session_id}/deactivate")
        assert response.status_code == 200 and response.json()["status"] == "inactive"
        refused = await http.post(f"/v1/sessions/{session_id}/messages", json={"content": "hi"})
        error(refused, 409, "session_inactive")
        response = await http.post(f"/v1/sessions/{session_id}/activate")
        assert response.status_code == 200 and response.json()["status"] == "active"
        turn = await send(http, session_id, "hi")
        assert turn["reply"] == "You said: hi"
        missing = uid("missing")
        error(await http.post(f"/v1/sessions/{missing}/activate"), 404, "not_found")


class TestMessages:
    async def test_json_turn(self, http: httpx.AsyncClient) -> None:
        """A turn answers the reply, the user and assistant messages, usage and latency."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "hello there")
        assert turn["session_id"] == session_id
        assert turn["reply"] == "You said: hello there"
        assert [m["role"] for m in turn["messages"]] == ["user", "assistant"]
        assert turn["messages"][0]["content"] == "hello there"
        assert turn["messages"][1]["content"] == turn["reply"]
        for message in turn["messages"]:
            assert when(message["created_at"])
        usage = turn["usage"]
        assert set(usage) == {"input_tokens", "output_tokens", "total_tokens"}
        assert all(isinstance(v, int) for v in usage.values())
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
        assert isinstance(turn["latency_ms"], float | int) and turn["latency_ms"] > 0
        assert turn["warnings"] == []
        session = (await http.get(f"/v1/sessions/{session_id}")).json()
        assert session["turns"] == 1 and session["messages"] == 2

    async def test_calculator_turn(self, http: httpx.AsyncClient) -> None:
        """Arithmetic runs the calculator: an assistant tool call, a tool result, the answer."""
        session_id = uid("s")
        await put_session(http, session_id)
        turn = await send(http, session_id, "what is 2+3?")
        assert turn["reply"] == "The result is 5."
        roles = [m["role"] for m in turn["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant"]
        call = turn["messages"][1]["tool_calls"][0]
        assert call["name"] == "calculator" and call["args"] == {"expression": "2+3"}
        tool = turn["messages"][2]
        assert tool["tool_call_id"] == call["id"] and tool["name"] == "calculator"
        assert tool["content"].strip() == "5"

    async def test_agent_id_creates_missing_session(self, http: httpx.AsyncClient) -> None:
        """POST with agent_id to a session that does not exist creates it."""
        session_id = uid("s")
        turn = await send(http, session_id, "hi", agent_id="default")
        assert turn["session_id"] == session_id
        response = await http.get(f"/v1/sessions/{session_id}")
        assert response.status_code == 200
        assert response.json()["agent_id"] == "default" and response.json()["turns"] == 1

    async def test_unknown_session_without_agent_is_404(self, http: httpx.AsyncClient) -> None:
        """POST to a session that does not exist, without agent_id, answers 404."""
        session_id = uid("missing")
        response = await http.post(f"/v1/sessions/{session_id}/messages", json={"content": "hi"})
        error(response, 404, "not_found")
        error(await http.get(f"/v1/sessions/{session_id}"), 404, "not_found")

    async def test_bad_bodies(self, http: httpx.AsyncClient) -> None:
        """Empty, too long, too big and non-JSON bodies are refused and leave no trace."""
        session_id = uid("s")
        await put_session(http, session_id)
        url = f"/v1/sessions/{session_id}/messages"
        error(await http.post(url, json={"content": ""}), 422, "invalid_input")
        body = error(await http.post(url, json={"content": "x" * 32_001}), 413, "payload_too_large")
        assert body["details"]["limit"] == 32_000
        huge = await http.post(url, json={"content": "x" * (1024 * 1024 + 10)})
        assert error(huge, 413, "payload_too_large")["details"]["limit"] == 1024 * 1024
        assert huge.headers.get("x-request-id")

        async def chunks() -> Any:
            for _ in range(11):
                yield b"x" * 100_000

        streamed = await http.post(url, content=chunks(), headers={"Content-Type": "text/plain"})
        error(streamed, 413, "payload_too_large")
        not_json = await http.post(
            url, content=b"this is not json", headers={"Content-Type": "application/json"}
        )
        error(not_json, 422, "invalid_input")
        session = (await http.get(f"/v1/sessions/{session_id}")).json()
        assert session["turns"] == 0 and session["messages"] == 0
        assert (await http.get(url)).json() == {"items": [], "next_cursor": None}

    async def test_history_paging_both_orders(self, http: httpx.AsyncClient) -> None:
        """History pages cover all 6 messages of 3 turns once, in asc and desc order."""
        session_id = uid("s")
        await put_session(http, session_id)
        for word in ("one", "two", "three"):
            await send(http, session_id, f"say {word}")
        url = f"/v1/sessions/{session_id}/messages"
        full = await walk(http, url, limit=500)
        assert len(full) == 6
        assert [m["role"] for m in full] == ["user", "assistant"] * 3
        assert [m["content"] for m in full[::2]] == ["say one", "say two", "say three"]
        for message in full:
            assert {"role", "content", "created_at"} <= set(message)
            assert when(message["created_at"])
        ids = [m["id"] for m in full]
        assert len(set(ids)) == 6
        for limit in (1, 2, 4):
            asc = await walk(http, url, order="asc", limit=limit)
            desc = await walk(http, url, order="desc", limit=limit)
            assert [m["id"] for m in asc] == ids
            assert [m["id"] for m in desc] == ids[::-1]
        first = (await http.get(url, params={"order": "desc", "limit": 2})).json()
        assert [m["content"] for m in first["items"]] == ["You said: say three", "say three"]
        assert first["next_cursor"] is not None
        error(await http.get(url, params={"order": "sideways"}), 422, "invalid_input")
        error(await http.get(url, params={"cursor": "garbage"}), 422, "invalid_input")

    async def test_history_tool_items(self, http: httpx.AsyncClient) -> None:
        """Tool messages in the history carry tool_call_id and the tool's name."""
        session_id = uid("s")
        await put_session(http, session_id)
        await send(http, session_id, "what is 6*7?")
        items = (await http.get(f"/v1/sessions/{session_id}/messages")).json()["items"]
        assert [m["role"] for m in items] == ["user", "assistant", "tool", "assistant"]
        tool = items[2]
        assert tool["name"] == "calculator"
        assert tool["tool_call_id"] == items[1]["tool_calls"][0]["id"]
        assert all(when(m["created_at"]) for m in items)
        assert items[3]["content"] == "The result is 42."

    async def test_clear_history(self, http: httpx.AsyncClient) -> None:
        """DELETE messages empties the history, keeps the session, and turns go on."""
        session_id = uid("s")
        await put_session(http, session_id)
        await send(http, session_id, "my name is Carol")
        await send(http, session_id, "hello")
        url = f"/v1/sessions/{session_id}/messages"
        response = await http.delete(url)
        assert response.status_code == 204 and response.content == b""
        assert (await http.get(url)).json() == {"items": [], "next_cursor": None}
        session = await http.get(f"/v1/sessions/{session_id}")
        assert session.status_code == 200 and session.json()["messages"] == 0
        turn = await send(http, session_id, "what is my name?")
        assert "Carol" not in turn["reply"]
        items = (await http.get(url)).json()["items"]
        assert [m["role"] for m in items] == ["user", "assistant"]


class TestAgentChat:
    async def test_new_session_then_memory(self, http: httpx.AsyncClient) -> None:
        """Chat without session_id starts a session; reusing its id remembers the user."""
        response = await http.post("/v1/agents/default/chat", json={"content": "my name is Alice"})
        assert response.status_code == 200, response.text
        first = response.json()
        session_id = first["session_id"]
        assert session_id.startswith("ses_") and "Alice" in first["reply"]
        response = await http.post(
            "/v1/agents/default/chat",
            json={"content": "what is my name?", "session_id": session_id},
        )
        assert response.status_code == 200, response.text
        second = response.json()
        assert second["session_id"] == session_id and "Alice" in second["reply"]
        session = (await http.get(f"/v1/sessions/{session_id}")).json()
        assert session["agent_id"] == "default" and session["turns"] == 2

    async def test_unknown_agent_is_404(self, http: httpx.AsyncClient) -> None:
        """Chat with an agent that does not exist answers 404."""
        response = await http.post(f"/v1/agents/{uid('missing')}/chat", json={"content": "hi"})
        error(response, 404, "not_found")


class TestSeedScenario:
    async def test_two_users_on_two_domains_are_isolated(self, http: httpx.AsyncClient) -> None:
        """One agent, two users on two sites: neither session sees the other's memory."""
        tag = uuid4().hex[:8]
        agent = await create_agent(http, name="Website assistant")
        alice, bob = f"alice-{tag}", f"bob-{tag}"
        site_a = f"site-a-{tag}.example"
        await put_session(
            http, alice, agent_id=agent["id"], metadata={"domain": site_a, "user": "alice"}
        )
        await put_session(
            http, bob, agent_id=agent["id"], metadata={"domain": "site-b.example", "user": "bob"}
        )
        assert "Alice" in (await send(http, alice, "my name is Alice"))["reply"]
        bob_reply = (await send(http, bob, "what is my name?"))["reply"]
        assert "Alice" not in bob_reply and "don't know" in bob_reply
        assert "Alice" in (await send(http, alice, "what is my name?"))["reply"]
        listed = await walk(http, "/v1/sessions", metadata=f"domain:{site_a}")
        assert [s["id"] for s in listed] == [alice]
        both = await walk(http, "/v1/sessions", agent_id=agent["id"])
        assert {s["id"] for s in both} == {alice, bob}


class TestAdmin:
    async def test_stats(self, http: httpx.AsyncClient) -> None:
        """Stats count an agent's turns, sessions and latency."""
        agent = await create_agent(http)
        session_id = uid("s")
        await put_session(http, session_id, agent_id=agent["id"])
        await send(http, session_id, "one")
        await send(http, session_id, "two")
        response = await http.get("/v1/admin/stats")
        assert response.status_code == 200
        rows = {r["agent_id"]: r for r in response.json()["items"]}
        row = rows[agent["id"]]
        assert row["turns"] == 2 and row["messages"] == 4
        assert row["sessions_total"] >= 1 and row["sessions_active"] >= 1
        assert row["tokens_in"] > 0 and row["tokens_out"] > 0
        assert isinstance(row["latency_ms_mean"], float) and row["latency_ms_mean"] > 0
        assert isinstance(row["latency_ms_p95"], float) and row["latency_ms_p95"] > 0
        assert "default" in rows
        one = await http.get("/v1/admin/stats", params={"agent_id": agent["id"]})
        assert one.status_code == 200 and one.json()["items"] == [row]

    async def test_admin_sessions(self, http: httpx.AsyncClient) -> None:
        """The admin session list shows sessions of every owner, with filters."""
        agent = await create_agent(http)
        session_id = uid("s")
        await put_session(http, session_id, agent_id=agent["id"], metadata={"x": "y"})
        listed = await walk(http, "/v1/admin/sessions", agent_id=agent["id"])
        assert [(s["id"], s["owner"]) for s in listed] == [(session_id, "local")]
        everything = await walk(http, "/v1/admin/sessions", limit=500)
        assert session_id in {s["id"] for s in everything}
        filtered = await walk(
            http, "/v1/admin/sessions", agent_id=agent["id"], metadata="x:z", status="active"
        )
        assert filtered == []

    async def test_sweep_idle(self, http: httpx.AsyncClient) -> None:
        """A sweep with max_idle_hours removes a session idle that long."""
        session_id = uid("s")
        await put_session(http, session_id)
        await asyncio.sleep(0.5)
        response = await http.post("/v1/admin/sweep", json={"max_idle_hours": 0.0001})
        assert response.status_code == 200, response.text
        body = response.json()
        assert {"owner": "local", "session_id": session_id} in body["sessions"]
        assert body["removed"] == len(body["sessions"]) >= 1
        error(await http.get(f"/v1/sessions/{session_id}"), 404, "not_found")

    async def test_sweep_without_body(self, http: httpx.AsyncClient) -> None:
        """A sweep without a body removes only expired sessions, leaving live ones."""
        session_id = uid("s")
        await put_session(http, session_id)
        response = await http.post("/v1/admin/sweep")
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"removed", "sessions"} and body["removed"] == len(body["sessions"])
        assert session_id not in {s["session_id"] for s in body["sessions"]}
        assert (await http.get(f"/v1/sessions/{session_id}")).status_code == 200
        bad = await http.post("/v1/admin/sweep", json={"max_idle_hours": -1})
        error(bad, 422, "invalid_input")


class TestOperations:
    async def test_health_and_readiness(self, http: httpx.AsyncClient) -> None:
        """/healthz and /readyz answer 200."""
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"

    async def test_metrics(self, http: httpx.AsyncClient) -> None:
        """/metrics is Prometheus text counting ok turns and active sessions."""
        session_id = uid("s")
        await put_session(http, session_id)
        await send(http, session_id, "hello")
        response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        turns = re.search(r'^sessiongraph_turns_total\{outcome="ok"\} (\S+)$', text, re.M)
        assert turns and float(turns.group(1)) >= 1
        active = re.search(r"^sessiongraph_active_sessions (\S+)$", text, re.M)
        assert active and float(active.group(1)) >= 1
        assert "sessiongraph_turn_latency_seconds_bucket" in text

    async def test_request_ids(self, http: httpx.AsyncClient) -> None:
        """Every response has X-Request-ID; a well-formed incoming one is echoed."""
        for response in (
            await http.get("/healthz"),
            await http.get("/v1/agents"),
            await http.get("/nope"),
            await http.get(f"/v1/sessions/{uid('missing')}"),
        ):
            assert response.headers.get("x-request-id")
        echoed = await http.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        replaced = await http.get("/healthz", headers={"X-Request-ID": "bad id\t!"})
        assert replaced.headers["x-request-id"] not in ("", "bad id\t!")

    async def test_unknown_route_and_wrong_method(self, http: httpx.AsyncClient) -> None:
        """An unknown route is a JSON 404; a wrong method is a JSON 405."""
        error(await http.get("/v1/nothing-here"), 404, "not_found")
        wrong = await http.delete("/v1/agents")
        error(wrong, 405, "method_not_allowed")
        assert "POST" in wrong.headers["allow"]
        error(await http.put("/healthz"), 405, "method_not_allowed")


class TestCors:
    async def test_preflight(self, settings: Settings) -> None:
        """A listed origin's preflight is allowed; another origin gets no allow-origin."""
        s = settings.model_copy(update={"cors_origins": ["https://app.example"]})
        async with (
            running_server(create_app(s)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            headers = {"Access-Control-Request-Method": "POST"}
            allowed = await client.options(
                "/v1/sessions", headers={**headers, "Origin": "https://app.example"}
            )
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://app.example"
            assert "POST" in allowed.headers["access-control-allow-methods"]
            assert allowed.headers.get("x-request-id")
            refused = await client.options(
                "/v1/sessions", headers={**headers, "Origin": "https://evil.example"}
            )
            assert "access-control-allow-origin" not in refused.headers
            simple = await client.get("/healthz", headers={"Origin": "https://app.example"})
            assert simple.headers["access-control-allow-origin"] == "https://app.example"
            assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


class TestOpenApi:
    async def test_every_path_is_listed(self, http: httpx.AsyncClient) -> None:
        """/openapi.json lists every HTTP path of the service."""
        response = await http.get("/openapi.json")
        assert response.status_code == 200
        paths = set(response.json()["paths"])
        expected = {
            "/v1/agents",
            "/v1/agents/{agent_id}",
            "/v1/agents/{agent_id}/chat",
            "/v1/sessions",
            "/v1/sessions/{session_id}",
            "/v1/sessions/{session_id}/messages",
            "/v1/sessions/{session_id}/activate",
            "/v1/sessions/{session_id}/deactivate",
            "/v1/admin/stats",
            "/v1/admin/sessions",
            "/v1/admin/sweep",
            "/healthz",
            "/readyz",
            "/metrics",
        }
        assert expected <= paths, expected - paths


class TestTools:
    async def test_tools_are_listed_with_their_guards(self, http: httpx.AsyncClient) -> None:
        """GET /v1/tools lists the registry: writes, roles, approval and model-facing args."""
        r = await http.get("/v1/tools")
        assert r.status_code == 200
        tools = {t["name"]: t for t in r.json()["items"]}
        assert set(tools) == {"calculator", "current_time", "read_notes", "save_note"}
        assert tools["calculator"]["writes"] is False
        assert tools["save_note"]["writes"] is True
        assert tools["save_note"]["idempotent"] is False  # its effect is in session state
        assert list(tools["save_note"]["args_schema"]["properties"]) == ["text"]  # no injected
        assert tools["read_notes"]["args_schema"]["properties"] == {}
        assert all(t["roles"] == [] and not t["requires_approval"] for t in tools.values())
        assert all(t["source"] == "builtin" for t in tools.values())


class TestApprovalList:
    async def test_require_approval_must_name_the_agents_tools(
        self, http: httpx.AsyncClient
    ) -> None:
        """require_approval naming a tool the agent lacks is a 422, on create and on PATCH."""
        body = {"name": "n", "tools": ["calculator"], "require_approval": ["save_note"]}
        r = await http.post("/v1/agents", json=body)
        assert r.status_code == 422 and r.json()["error"] == "invalid_input"
        r = await http.post("/v1/agents", json={"name": "n", "tools": ["calculator"]})
        agent_id = r.json()["id"]
        r = await http.patch(f"/v1/agents/{agent_id}", json={"require_approval": ["save_note"]})
        assert r.status_code == 422
        assert "does not have" in r.json()["message"]
        assert (await http.get(f"/v1/agents/{agent_id}")).json()["version"] == 1
