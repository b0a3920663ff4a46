"""Agent ids scoped by owner: two tenants each have a ``support`` agent, and neither learns of
the other's (over real HTTP: the native ``/v1`` routes and the LangGraph API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client
from psycopg.types.json import Jsonb

from api.app import create_app
from runtime import Runtime, Settings
from runtime.agents import ModelSpec, TemplateSpec
from runtime.db.migrations import MIGRATIONS
from tests.integration.test_compat_resumable import Event, sse_events
from tests.support.server import running_server

ASK = "what are your instructions?"


def said(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def uid(prefix: str = "s") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


@dataclass
class Tenant:
    owner: str
    http: httpx.AsyncClient
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture
async def tenants(settings: Settings) -> AsyncIterator[dict[str, Tenant]]:
    """alice, bob and carol, each with a key, on one running server (auth on)."""
    async with Runtime.open(settings, sweeper=False) as rt:
        secrets = {o: (await rt.keys.create(o))[1] for o in ("alice", "bob", "carol")}
    async with running_server(create_app(settings)) as url:
        clients = {
            o: httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {s}"})
            for o, s in secrets.items()
        }
        try:
            yield {o: Tenant(o, clients[o], secrets[o]) for o in clients}
        finally:
            for client in clients.values():
                await client.aclose()


async def create_support(tenant: Tenant, agent_id: str) -> None:
    body = {
        "id": agent_id,
        "name": f"{tenant.owner}'s support",
        "system_prompt": f"You are {tenant.owner}'s support desk.",
        "model": "offline:deterministic",
    }
    response = await tenant.http.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text


async def ask(tenant: Tenant, agent_id: str) -> str:
    """A new session of ``agent_id`` asked for its instructions; the answer."""
    sid = uid()
    created = await tenant.http.put(f"/v1/sessions/{sid}", json={"agent_id": agent_id})
    assert created.status_code == 201, created.text
    turn = await tenant.http.post(f"/v1/sessions/{sid}/messages", json={"content": ASK})
    assert turn.status_code == 200, turn.text
    return str(turn.json()["reply"])


async def stream_turn(tenant: Tenant, sid: str, headers: dict[str, str]) -> tuple[str, list[Event]]:
    """A streamed turn asking for the instructions: its Content-Location and events."""
    url = f"/v1/sessions/{sid}/messages"
    async with tenant.http.stream("POST", url, json={"content": ASK}, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        return r.headers["content-location"], [e async for e in sse_events(r)]


async def rejoin_turn(tenant: Tenant, location: str) -> list[Event]:
    """Every event of a streamed turn, read again from its Content-Location."""
    async with tenant.http.stream("GET", location, headers={"Last-Event-ID": "-1"}) as r:
        assert r.status_code == 200, await r.aread()
        return [e async for e in sse_events(r)]


def hides(response: httpx.Response, agent_id: str) -> None:
    """A 404 that says nothing of anyone else's agent."""
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["error"] == "not_found", body
    assert "alice" not in response.text and "bob" not in response.text


class TestTwoOwnersOneName:
    async def test_each_owner_has_and_runs_its_own_support(
        self, tenants: dict[str, Tenant]
    ) -> None:
        """Two owners both create `support`; each lists, gets and runs only its own."""
        agent_id = uid("support")
        alice, bob = tenants["alice"], tenants["bob"]
        await create_support(alice, agent_id)
        await create_support(bob, agent_id)  # free for bob: never 409
        for tenant in (alice, bob):
            listed = (await tenant.http.get("/v1/agents", params={"limit": 200})).json()["items"]
            mine = [a for a in listed if a["id"] == agent_id]
            assert len(mine) == 1 and mine[0]["name"] == f"{tenant.owner}'s support"
            got = (await tenant.http.get(f"/v1/agents/{agent_id}")).json()
            assert got["system_prompt"] == f"You are {tenant.owner}'s support desk."
            reply = await ask(tenant, agent_id)
            assert reply == f"My instructions are: You are {tenant.owner}'s support desk."
        chat = await bob.http.post(f"/v1/agents/{agent_id}/chat", json={"content": ASK})
        assert chat.status_code == 200, chat.text
        assert "bob's support desk" in chat.json()["reply"]

    async def test_streamed_turns_run_and_rejoin_each_owners_agent(
        self, tenants: dict[str, Tenant]
    ) -> None:
        """A resumable /v1 SSE turn (recorded as a run) runs its session's own agent, keyed
        or not: each owner's stream, and its stream rejoined at Content-Location, answer with
        that owner's `support`; a keyed retry replays the first answer and runs nothing."""
        agent_id = uid("support")
        alice, bob = tenants["alice"], tenants["bob"]
        await create_support(alice, agent_id)
        await create_support(bob, agent_id)
        for tenant in (alice, bob):
            sid = uid()
            created = await tenant.http.put(f"/v1/sessions/{sid}", json={"agent_id": agent_id})
            assert created.status_code == 201, created.text
            headers = {"Accept": "text/event-stream", "Idempotency-Key": uid("key")}
            answers = []
            for _ in range(2):  # the second is the keyed retry
                location, events = await stream_turn(tenant, sid, headers)
                rejoined = await rejoin_turn(tenant, location)
                assert rejoined == events
                done = [data for _, name, data in events if name == "done"]
                assert len(done) == 1, events
                answers.append(done[0]["reply"])
            assert answers == [f"My instructions are: You are {tenant.owner}'s support desk."] * 2
            history = (await tenant.http.get(f"/v1/sessions/{sid}/messages")).json()["items"]
            assert [m["content"] for m in history if m["role"] == "user"] == [ASK]
            other = bob if tenant is alice else alice
            hides(await other.http.get(location), sid)

    async def test_versions_and_patches_stay_with_their_owner(
        self, tenants: dict[str, Tenant]
    ) -> None:
        """A patch by one owner makes a version of its agent only; the other's stays at 1."""
        agent_id = uid("support")
        alice, bob = tenants["alice"], tenants["bob"]
        await create_support(alice, agent_id)
        await create_support(bob, agent_id)
        patched = await alice.http.patch(f"/v1/agents/{agent_id}", json={"description": "v2"})
        assert patched.status_code == 200 and patched.json()["version"] == 2
        bob_versions = (await bob.http.get(f"/v1/agents/{agent_id}/versions")).json()
        assert [v["version"] for v in bob_versions] == [1]
        alice_versions = (await alice.http.get(f"/v1/agents/{agent_id}/versions")).json()
        assert [v["version"] for v in alice_versions] == [2, 1]

    async def test_delete_removes_only_the_owners_agent(self, tenants: dict[str, Tenant]) -> None:
        """Alice deleting her `support` (with its sessions) leaves bob's and his sessions."""
        agent_id = uid("support")
        alice, bob = tenants["alice"], tenants["bob"]
        await create_support(alice, agent_id)
        await create_support(bob, agent_id)
        await ask(alice, agent_id)
        bob_sid = uid()
        await bob.http.put(f"/v1/sessions/{bob_sid}", json={"agent_id": agent_id})
        deleted = await alice.http.delete(f"/v1/agents/{agent_id}", params={"force": "true"})
        assert deleted.status_code == 204, deleted.text
        assert (await bob.http.get(f"/v1/agents/{agent_id}")).status_code == 200
        turn = await bob.http.post(f"/v1/sessions/{bob_sid}/messages", json={"content": ASK})
        assert turn.status_code == 200 and "bob's support desk" in turn.json()["reply"]
        hides(await alice.http.get(f"/v1/agents/{agent_id}"), agent_id)


class TestNothingLeaks:
    async def test_another_owners_agent_does_not_exist_for_you(
        self, tenants: dict[str, Tenant]
    ) -> None:
        """Every /v1 call by carol naming alice's agent answers as if it did not exist."""
        agent_id = uid("support")
        alice, carol = tenants["alice"], tenants["carol"]
        await create_support(alice, agent_id)
        http = carol.http
        hides(await http.get(f"/v1/agents/{agent_id}"), agent_id)
        hides(await http.patch(f"/v1/agents/{agent_id}", json={"description": "x"}), agent_id)
        hides(await http.delete(f"/v1/agents/{agent_id}", params={"force": "true"}), agent_id)
        hides(await http.get(f"/v1/agents/{agent_id}/versions"), agent_id)
        hides(await http.post(f"/v1/agents/{agent_id}/versions/1/current"), agent_id)
        hides(await http.put(f"/v1/sessions/{uid()}", json={"agent_id": agent_id}), agent_id)
        hides(await http.post(f"/v1/agents/{agent_id}/chat", json={"content": "hi"}), agent_id)
        listed = (await http.get("/v1/agents", params={"name": "support"})).json()["items"]
        assert [a for a in listed if a["owner"] != "carol"] == []
        # The id is simply free for carol: created, and it is hers.
        await create_support(carol, agent_id)
        assert "carol" in await ask(carol, agent_id)
        assert "alice" in await ask(alice, agent_id)

    async def test_langgraph_assistants_are_per_owner(
        self, tenants: dict[str, Tenant], settings: Settings
    ) -> None:
        """Assistants: search, get, versions, runs name the caller's own `support` only."""
        agent_id = uid("support")
        alice, bob, carol = tenants["alice"], tenants["bob"], tenants["carol"]
        await create_support(alice, agent_id)
        await create_support(bob, agent_id)
        url = str(alice.http.base_url)
        for tenant in (alice, bob):
            client = get_client(url=url, headers=tenant.headers)
            found = await client.assistants.search(metadata=None, limit=100)
            mine = [a for a in found if a["assistant_id"] == agent_id]
            assert [a["name"] for a in mine] == [f"{tenant.owner}'s support"]
            thread = await client.threads.create()
            result = await client.runs.wait(
                thread["thread_id"],
                agent_id,
                input=said(ASK),
            )
            assert isinstance(result, dict)
            assert f"{tenant.owner}'s support desk" in result["messages"][-1]["content"]
        http = carol.http
        hides(await http.get(f"/assistants/{agent_id}"), agent_id)
        hides(await http.post(f"/assistants/{agent_id}/versions", json={}), agent_id)
        hides(await http.patch(f"/assistants/{agent_id}", json={"name": "x"}), agent_id)
        hides(await http.delete(f"/assistants/{agent_id}"), agent_id)
        searched = await http.post("/assistants/search", json={"name": "support", "limit": 100})
        assert [a["name"] for a in searched.json() if "carol" not in a["name"]] == []
        run = {"assistant_id": agent_id, "input": {"messages": [{"role": "user", "content": "x"}]}}
        hides(await http.post("/runs/wait", json=run), agent_id)
        made = await http.post("/assistants", json={"assistant_id": agent_id, "graph_id": "react"})
        assert made.status_code == 200, made.text
        assert made.json()["assistant_id"] == agent_id

    async def test_system_agent_ids_stay_reserved(self, tenants: dict[str, Tenant]) -> None:
        """A system agent's id is taken for every owner (409 naming the shared agent)."""
        response = await tenants["alice"].http.post(
            "/v1/agents", json={"id": "default", "name": "mine", "model": "offline:deterministic"}
        )
        assert response.status_code == 409, response.text
        assert "system agent" in response.json()["message"]
        listed = (await tenants["bob"].http.get("/v1/agents/default")).json()
        assert listed["owner"] == "system"


def support_spec(owner: str) -> TemplateSpec:
    return TemplateSpec(
        name=f"{owner}'s support",
        system_prompt=f"You are {owner}'s support desk.",
        model=ModelSpec.parse("offline:deterministic"),
    )


class TestCompiledPerOwner:
    async def test_graph_cache_keys_include_the_owner(self, settings: Settings) -> None:
        """Two owners' `support` at version 1 are compiled as two agents, each with its prompt."""
        agent_id = uid("support")
        async with Runtime.open(settings, sweeper=False) as rt:
            for owner in ("alice", "bob"):
                await rt.templates.create(support_spec(owner), owner=owner, agent_id=agent_id)
            before = rt.graphs.compiles
            for owner in ("alice", "bob", "alice"):
                result = await rt.chat(uid(), ASK, owner=owner, agent_id=agent_id)
                assert result.reply == f"My instructions are: You are {owner}'s support desk."
            assert rt.graphs.compiles == before + 2
            stats = {(s.owner, s.agent_id): s for s in await rt.stats(agent_id=agent_id)}
            assert stats[("alice", agent_id)].turns == 2 and stats[("bob", agent_id)].turns == 1
            mine = await rt.stats(agent_id=agent_id, owner="bob")
            assert [(s.owner, s.turns) for s in mine] == [("bob", 1)]


# The migration that scopes agent ids by owner (found by what it adds, whatever its number).
SCOPING = next(i for i, m in enumerate(MIGRATIONS) if "agent_owner" in m)


def seed_before_scoping(url: str) -> None:
    """A database at the schema just before :data:`SCOPING`, with agents, versions, sessions
    and turn records as they were stored then (agent ids global)."""
    support = Jsonb(support_spec("alice").model_dump(mode="json"))
    with psycopg.connect(url, autocommit=True) as conn:
        for v in range(SCOPING):
            conn.execute(MIGRATIONS[v])
            conn.execute("INSERT INTO sessiongraph_migrations (v) VALUES (%s)", (v,))
        conn.execute(
            "INSERT INTO agents (agent_id, owner, version, spec) "
            "VALUES ('support', 'alice', 2, %s)",
            (support,),
        )
        conn.execute(
            "INSERT INTO agent_versions (agent_id, version, spec) "
            "VALUES ('support', 1, %s), ('support', 2, %s)",
            (support, support),
        )
        conn.execute(
            "INSERT INTO sessions (owner, session_id, thread_id, agent_id, ttl_seconds, "
            "expires_at) VALUES ('alice', 'old', 'thread-old', 'support', 3600, "
            "now() + interval '1 hour')"
        )
        conn.execute(
            "INSERT INTO turn_log (agent_id, owner, latency_ms, messages, tokens_in, tokens_out) "
            "VALUES ('support', 'alice', 5, 2, 10, 10)"
        )


class TestMigration:
    async def test_rows_stored_with_global_ids_migrate(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """Agents, versions, sessions and turn records from before migrate to owner-scoped ids."""
        seed_before_scoping(fresh_database)
        migrated = settings.model_copy(update={"database_url": fresh_database})
        async with Runtime.open(migrated, sweeper=False) as rt:
            session = await rt.sessions.get("alice", "old")
            assert (session.agent_owner, session.agent_id) == ("alice", "support")
            versions = await rt.templates.versions("support", owner="alice")
            assert [(v.owner, v.version) for v in versions] == [("alice", 2), ("alice", 1)]
            [stats] = await rt.stats(agent_id="support")
            assert (stats.owner, stats.turns, stats.sessions_total) == ("alice", 1, 1)
            result = await rt.chat("old", ASK, owner="alice")
            assert result.reply == "My instructions are: You are alice's support desk."
            # The id is now free for bob, and his is another agent.
            await rt.templates.create(support_spec("bob"), owner="bob", agent_id="support")
            result = await rt.chat("new", ASK, owner="bob", agent_id="support")
            assert result.reply == "My instructions are: You are bob's support desk."
            assert (await rt.templates.get("support", owner="alice")).version == 2
