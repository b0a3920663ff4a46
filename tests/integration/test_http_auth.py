"""API keys over real HTTP and WebSocket connections: who may call, and what they see.

Every test that creates keys runs on a database of its own, since one key turns auth on for
every request against that database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import httpx
import pytest
from asgi_lifespan import LifespanManager
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.app import OpenServerRefused, create_app
from runtime import Runtime, Settings
from runtime.keys import KEY_CACHE_SECONDS
from tests.support.checks import status_within
from tests.support.server import ServerStartupFailed, running_server

# Keys another process creates or revokes take effect here within KEY_CACHE_SECONDS.
WITHIN = KEY_CACHE_SECONDS + 3


def uid(prefix: str = "s") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def own_db(settings: Settings, database_url: str, **extra: Any) -> Settings:
    return settings.model_copy(update={"database_url": database_url, **extra})


async def create_key(
    settings: Settings, owner: str, roles: list[str] | None = None
) -> tuple[str, str]:
    """A new key for ``owner``: its id and its secret."""
    async with Runtime.open(settings, sweeper=False) as rt:
        key, secret = await rt.keys.create(owner, roles=roles or [])
    return key.key_id, secret


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_server(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


def ws_url(base_url: httpx.URL, path: str) -> str:
    return str(base_url).rstrip("/").replace("http://", "ws://", 1) + path


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
    return frame


def error_chain(exc: BaseException) -> str:
    """Every message in an exception, its causes and (for groups) its members."""
    seen: list[str] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        seen.append(f"{type(current).__name__}: {current}")
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return "\n".join(seen)


class TestOpenLoopback:
    async def test_no_keys_means_local_owner(self, settings: Settings, fresh_database: str) -> None:
        """With no key and a loopback bind, requests without a key act as owner local."""
        s = own_db(settings, fresh_database)
        async with serve(s) as http:
            sid = uid()
            response = await http.put(f"/v1/sessions/{sid}", json={})
            assert response.status_code == 201, response.text
            assert response.json()["owner"] == "local"
            assert (await http.get("/v1/admin/stats")).status_code == 200
            listed = (await http.get("/v1/sessions")).json()["items"]
            assert [item["id"] for item in listed] == [sid]


class TestKeyRequired:
    async def test_missing_wrong_and_malformed_keys(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """Once a key exists: no key, a wrong key or a non-Bearer header is a 401."""
        s = own_db(settings, fresh_database)
        _, secret = await create_key(s, "alice")
        async with serve(s) as http:
            missing = await http.get("/v1/sessions")
            assert missing.status_code == 401
            assert missing.json()["error"] == "unauthenticated"
            assert missing.headers["WWW-Authenticate"] == "Bearer"
            wrong = await http.get("/v1/sessions", headers=bearer(secret + "x"))
            assert wrong.status_code == 401
            assert wrong.json()["error"] == "unauthenticated"
            malformed = await http.get("/v1/sessions", headers={"Authorization": "Basic abc"})
            assert malformed.status_code == 401
            assert malformed.json()["error"] == "unauthenticated"
            empty = await http.get("/v1/sessions", headers={"Authorization": "Bearer"})
            assert empty.status_code == 401
            ok = await http.get("/v1/sessions", headers=bearer(secret))
            assert ok.status_code == 200 and ok.json()["items"] == []

    async def test_key_created_while_running_turns_auth_on(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """A key created while the server runs is required from the next request on."""
        s = own_db(settings, fresh_database)
        async with serve(s) as http:
            assert (await http.get("/v1/sessions")).status_code == 200
            _, secret = await create_key(s, "carol")
            # Another process made the key: this server sees it within KEY_CACHE_SECONDS.
            keyless = await status_within(http, "GET", "/v1/sessions", 401, WITHIN)
            assert keyless.status_code == 401
            response = await http.put(f"/v1/sessions/{uid()}", json={}, headers=bearer(secret))
            assert response.status_code == 201 and response.json()["owner"] == "carol"

    async def test_revoked_key_is_refused(self, settings: Settings, fresh_database: str) -> None:
        """A key works until revoked, then answers 401."""
        s = own_db(settings, fresh_database)
        _, keep = await create_key(s, "keeper")
        key_id, secret = await create_key(s, "alice")
        async with serve(s) as http:
            assert (await http.get("/v1/sessions", headers=bearer(secret))).status_code == 200
            async with Runtime.open(s, sweeper=False) as rt:
                revoked = await rt.keys.revoke(key_id)
            assert revoked.revoked_at is not None
            refused = await status_within(
                http, "GET", "/v1/sessions", 401, WITHIN, headers=bearer(secret)
            )
            assert refused.status_code == 401
            assert refused.json()["error"] == "unauthenticated"
            assert (await http.get("/v1/sessions", headers=bearer(keep))).status_code == 200

    async def test_query_token_is_ignored_over_http(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """Plain HTTP requests do not accept the key as ?token= (sockets only)."""
        s = own_db(settings, fresh_database)
        _, secret = await create_key(s, "alice")
        async with serve(s) as http:
            response = await http.get("/v1/sessions", params={"token": secret})
            assert response.status_code == 401
            assert response.json()["error"] == "unauthenticated"

    async def test_revoking_last_key_reopens_loopback_but_not_that_key(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """With its only key revoked a loopback server runs open; the revoked key stays refused."""
        s = own_db(settings, fresh_database)
        key_id, secret = await create_key(s, "alice")
        async with serve(s) as http:
            assert (await http.get("/v1/sessions")).status_code == 401
            async with Runtime.open(s, sweeper=False) as rt:
                await rt.keys.revoke(key_id)
            refused = await status_within(
                http, "GET", "/v1/sessions", 401, WITHIN, headers=bearer(secret)
            )
            assert refused.status_code == 401
            opened = await status_within(http, "GET", "/v1/sessions", 200, WITHIN)
            assert opened.status_code == 200
            response = await http.put(f"/v1/sessions/{uid()}", json={})
            assert response.status_code == 201 and response.json()["owner"] == "local"


class TestOwnerIsolation:
    @pytest.fixture
    async def two_owners(
        self, settings: Settings, fresh_database: str
    ) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]]:
        s = own_db(settings, fresh_database)
        _, alice = await create_key(s, "alice")
        _, bob = await create_key(s, "bob")
        async with serve(s) as http:
            yield http, bearer(alice), bearer(bob)

    async def test_other_owner_sees_404(
        self, two_owners: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]
    ) -> None:
        """Bob gets 404 (not 403) for Alice's agent and session, and does not list them."""
        http, alice, bob = two_owners
        agent_id = uid("agent")
        created = await http.post(
            "/v1/agents", json={"id": agent_id, "name": "alice's"}, headers=alice
        )
        assert created.status_code == 201 and created.json()["owner"] == "alice"
        session = await http.put(
            "/v1/sessions/shared-name", json={"agent_id": agent_id}, headers=alice
        )
        assert session.status_code == 201 and session.json()["owner"] == "alice"
        assert (await http.get("/v1/sessions/shared-name", headers=alice)).status_code == 200

        missing = await http.get("/v1/sessions/shared-name", headers=bob)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        agent = await http.get(f"/v1/agents/{agent_id}", headers=bob)
        assert agent.status_code == 404 and agent.json()["error"] == "not_found"
        assert (await http.get("/v1/sessions", headers=bob)).json()["items"] == []
        bob_agents = [a["id"] for a in (await http.get("/v1/agents", headers=bob)).json()["items"]]
        assert agent_id not in bob_agents
        history = await http.get("/v1/sessions/shared-name/messages", headers=bob)
        assert history.status_code == 404

    async def test_same_session_id_does_not_share_state(
        self, two_owners: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]
    ) -> None:
        """Alice's and Bob's sessions named shared-name are separate conversations."""
        http, alice, bob = two_owners
        url = "/v1/sessions/shared-name/messages"
        said = await http.post(
            url, json={"content": "my name is Alice", "agent_id": "default"}, headers=alice
        )
        assert said.status_code == 200, said.text
        created = await http.put("/v1/sessions/shared-name", json={}, headers=bob)
        assert created.status_code == 201 and created.json()["owner"] == "bob"
        asked = await http.post(url, json={"content": "what is my name?"}, headers=bob)
        assert asked.status_code == 200, asked.text
        assert "Alice" not in asked.json()["reply"]
        assert len((await http.get(url, headers=bob)).json()["items"]) == 2
        again = await http.post(url, json={"content": "what is my name?"}, headers=alice)
        assert "Alice" in again.json()["reply"]
        bob_list = (await http.get("/v1/sessions", headers=bob)).json()["items"]
        assert [(s["id"], s["owner"]) for s in bob_list] == [("shared-name", "bob")]

    async def test_system_agent_visible_to_both(
        self, two_owners: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]
    ) -> None:
        """The default system agent is visible to every owner."""
        http, alice, bob = two_owners
        for headers in (alice, bob):
            response = await http.get("/v1/agents/default", headers=headers)
            assert response.status_code == 200
            assert response.json()["owner"] == "system"
            listed = (await http.get("/v1/agents", headers=headers)).json()["items"]
            assert "default" in [a["id"] for a in listed]

    async def test_other_owner_cannot_change_session(
        self, two_owners: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]
    ) -> None:
        """Bob's PATCH and DELETE of Alice's session answer 404 and change nothing."""
        http, alice, bob = two_owners
        sid = uid()
        assert (
            await http.put(f"/v1/sessions/{sid}", json={"name": "mine"}, headers=alice)
        ).status_code == 201
        patch = await http.patch(f"/v1/sessions/{sid}", json={"name": "bob's"}, headers=bob)
        assert patch.status_code == 404 and patch.json()["error"] == "not_found"
        delete = await http.delete(f"/v1/sessions/{sid}", headers=bob)
        assert delete.status_code == 404
        deactivate = await http.post(f"/v1/sessions/{sid}/deactivate", headers=bob)
        assert deactivate.status_code == 404
        after = await http.get(f"/v1/sessions/{sid}", headers=alice)
        assert after.status_code == 200
        assert after.json()["name"] == "mine" and after.json()["status"] == "active"

    async def test_non_admin_cannot_patch_system_agent(
        self, two_owners: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]
    ) -> None:
        """A non-admin's PATCH or DELETE of the system agent default answers 403."""
        http, alice, _ = two_owners
        patch = await http.patch("/v1/agents/default", json={"name": "hijacked"}, headers=alice)
        assert patch.status_code == 403 and patch.json()["error"] == "permission_denied"
        delete = await http.delete("/v1/agents/default", headers=alice)
        assert delete.status_code == 403
        agent = (await http.get("/v1/agents/default", headers=alice)).json()
        assert agent["name"] != "hijacked"

    async def test_other_owner_socket_is_refused(
        self, two_owners: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]
    ) -> None:
        """Bob's socket to Alice's session closes 4404; with agent_id he gets his own session."""
        http, alice, bob = two_owners
        sid = uid()
        said = await http.post(
            f"/v1/sessions/{sid}/messages",
            json={"content": "my name is Alice", "agent_id": "default"},
            headers=alice,
        )
        assert said.status_code == 200
        async with connect(
            ws_url(http.base_url, f"/v1/sessions/{sid}/ws"), additional_headers=bob
        ) as ws:
            frame = await recv(ws)
            assert frame["type"] == "error" and frame["data"]["error"] == "not_found"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
        async with connect(
            ws_url(http.base_url, f"/v1/sessions/{sid}/ws?agent_id=default"),
            additional_headers=bob,
        ) as ws:
            first = await recv(ws)
            assert first["type"] == "session" and first["data"]["owner"] == "bob"
            assert first["data"]["turns"] == 0
            await ws.send(json.dumps({"type": "message", "content": "what is my name?"}))
            while (frame := await recv(ws))["type"] not in ("done", "error"):
                pass
            assert frame["type"] == "done" and "Alice" not in frame["data"]["reply"]


class TestAdminRoutes:
    async def test_admin_routes_need_admin_role(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """Non-admin keys get 403 on admin routes; an admin key sees every owner's sessions."""
        s = own_db(settings, fresh_database)
        _, alice = await create_key(s, "alice")
        _, bob = await create_key(s, "bob")
        _, root = await create_key(s, "root", roles=["admin"])
        async with serve(s) as http:
            a_sid, b_sid = uid("a"), uid("b")
            assert (
                await http.put(f"/v1/sessions/{a_sid}", json={}, headers=bearer(alice))
            ).status_code == 201
            assert (
                await http.put(f"/v1/sessions/{b_sid}", json={}, headers=bearer(bob))
            ).status_code == 201

            for method, path in (
                ("GET", "/v1/admin/stats"),
                ("GET", "/v1/admin/sessions"),
                ("POST", "/v1/admin/sweep"),
            ):
                refused = await http.request(method, path, headers=bearer(alice))
                assert refused.status_code == 403, (path, refused.text)
                assert refused.json()["error"] == "permission_denied"
                allowed = await http.request(method, path, headers=bearer(root))
                assert allowed.status_code == 200, (path, allowed.text)

            everyone = await http.get("/v1/admin/sessions", headers=bearer(root))
            pairs = {(item["id"], item["owner"]) for item in everyone.json()["items"]}
            assert {(a_sid, "alice"), (b_sid, "bob")} <= pairs
            only_alice = await http.get("/v1/admin/sessions?owner=alice", headers=bearer(root))
            assert [(i["id"], i["owner"]) for i in only_alice.json()["items"]] == [(a_sid, "alice")]
            stats = await http.get("/v1/admin/stats", headers=bearer(root))
            default = [i for i in stats.json()["items"] if i["agent_id"] == "default"]
            assert default and default[0]["sessions_total"] == 2


class TestWebSocketAuth:
    async def test_socket_needs_key(self, settings: Settings, fresh_database: str) -> None:
        """With keys configured a socket without a key closes 4401; ?token= or a header works."""
        s = own_db(settings, fresh_database)
        _, secret = await create_key(s, "alice")
        async with serve(s) as http:
            async with connect(ws_url(http.base_url, "/v1/ws?agent_id=default")) as ws:
                frame = await recv(ws)
                assert frame["type"] == "error"
                assert frame["data"]["error"] == "unauthenticated"
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), timeout=15)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

            async with connect(
                ws_url(http.base_url, f"/v1/ws?agent_id=default&token={secret}")
            ) as ws:
                first = await recv(ws)
                assert first["type"] == "session" and first["data"]["owner"] == "alice"
                await ws.send(json.dumps({"type": "message", "content": "via token"}))
                while (frame := await recv(ws))["type"] not in ("done", "error"):
                    pass
                assert frame["type"] == "done"
                assert frame["data"]["reply"] == "You said: via token"

            async with connect(
                ws_url(http.base_url, "/v1/ws?agent_id=default"),
                additional_headers=bearer(secret),
            ) as ws:
                first = await recv(ws)
                assert first["type"] == "session" and first["data"]["owner"] == "alice"
                await ws.send(json.dumps({"type": "ping"}))
                assert (await recv(ws))["type"] == "pong"

            async with connect(
                ws_url(http.base_url, "/v1/ws?agent_id=default&token=sg_wrong_key")
            ) as ws:
                frame = await recv(ws)
                assert frame["type"] == "error"
                assert frame["data"]["error"] == "unauthenticated"
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), timeout=15)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


class TestStartupRefusal:
    async def test_public_bind_without_keys_refuses(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """Bound to 0.0.0.0 with no key, the lifespan refuses to start."""
        s = own_db(settings, fresh_database, host="0.0.0.0")
        with pytest.raises(BaseException) as raised:
            async with LifespanManager(create_app(s)):
                pass
        chain = error_chain(raised.value)
        assert "OpenServerRefused" in chain
        assert "SESSIONGRAPH_ALLOW_OPEN" in chain

    async def test_public_bind_without_keys_refuses_real_server(
        self, settings: Settings, fresh_database: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A real uvicorn serving the app for 0.0.0.0 with no key fails at start-up."""
        s = own_db(settings, fresh_database, host="0.0.0.0")
        with pytest.raises(ServerStartupFailed):
            async with running_server(create_app(s)):
                pass
        logged = "\n".join(
            r.getMessage() + (error_chain(r.exc_info[1]) if r.exc_info and r.exc_info[1] else "")
            for r in caplog.records
        )
        assert "OpenServerRefused" in logged and "SESSIONGRAPH_ALLOW_OPEN" in logged

    async def test_refusal_is_open_server_refused(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """The refusal raised by the lifespan is an OpenServerRefused."""
        s = own_db(settings, fresh_database, host="0.0.0.0")
        app = create_app(s)
        with pytest.raises(OpenServerRefused, match="SESSIONGRAPH_ALLOW_OPEN"):
            async with app.router.lifespan_context(app):
                pass

    async def test_allow_open_starts(self, settings: Settings, fresh_database: str) -> None:
        """With allow_open a 0.0.0.0 server starts open, as owner local."""
        s = own_db(settings, fresh_database, host="0.0.0.0", allow_open=True)
        async with serve(s) as http:
            response = await http.put(f"/v1/sessions/{uid()}", json={})
            assert response.status_code == 201
            assert response.json()["owner"] == "local"

    async def test_public_bind_with_key_starts_and_requires_it(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """Bound to 0.0.0.0 with a key, the server starts and requires the key."""
        s = own_db(settings, fresh_database, host="0.0.0.0")
        _, secret = await create_key(s, "alice")
        async with serve(s) as http:
            assert (await http.get("/v1/sessions")).status_code == 401
            response = await http.put(f"/v1/sessions/{uid()}", json={}, headers=bearer(secret))
            assert response.status_code == 201 and response.json()["owner"] == "alice"

    async def test_public_bind_after_revoking_last_key_refuses(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """Bound to 0.0.0.0 with only a revoked key, start-up is refused again."""
        s = own_db(settings, fresh_database, host="0.0.0.0")
        key_id, _ = await create_key(s, "alice")
        async with Runtime.open(s, sweeper=False) as rt:
            await rt.keys.revoke(key_id)
        app = create_app(s)
        with pytest.raises(OpenServerRefused):
            async with app.router.lifespan_context(app):
                pass
