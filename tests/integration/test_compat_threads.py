"""The LangGraph Server API (meta, assistants, threads, state, history, store) driven by the
real ``langgraph_sdk`` client against the real app over HTTP, on a real Postgres.

Auth is off (loopback, no keys) except in the tests that create keys, which run on a
database of their own. Each test uses ids of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from api.app import create_app
from runtime import Runtime, Settings
from tests.support.server import running_server

# Run a second time through pgbouncer in transaction mode (tests/conftest.py).
BEHIND_PGBOUNCER = True

ROOT = Path(__file__).resolve().parents[2]


def client_for(url: str, api_key: str | None = None) -> LangGraphClient:
    return get_client(url=url, api_key=api_key)


async def native_turn(http: httpx.AsyncClient, session_id: str, content: str) -> dict[str, Any]:
    response = await http.post(
        f"/v1/sessions/{session_id}/messages", json={"content": content, "agent_id": "default"}
    )
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


async def native_messages(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/sessions/{session_id}/messages", params={"limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def contents(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages]


class TestMeta:
    async def test_ok_and_info(self, server_url: str, http: httpx.AsyncClient) -> None:
        assert (await http.get("/ok")).json() == {"ok": True}
        info = (await http.get("/info")).json()
        assert info["flags"]["assistants"] is True
        assert info["flags"]["crons"] is False
        assert info["flags"]["langsmith"] is False
        # Studio reads version as the API level, and turns features off below 0.11.
        major, minor = (int(p) for p in info["version"].split(".")[:2])
        assert (major, minor) >= (0, 11)
        assert info["sessiongraph_version"]

    async def test_json_sent_as_text_plain_is_read(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            "/assistants/search",
            content=b'{"metadata": {"created_by": "system"}, "limit": 5}',
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
        assert response.status_code == 200, response.text
        assert [a["assistant_id"] for a in response.json()] == ["default"]

    async def test_text_plain_that_is_not_json_is_422(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            "/threads", content=b"hello", headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_input"


class TestAssistants:
    async def test_search_for_system_assistants_finds_the_default_agent(
        self, server_url: str
    ) -> None:
        client = client_for(server_url)
        found = await client.assistants.search(
            metadata={"created_by": "system"}, graph_id="react", limit=10
        )
        assert [a["assistant_id"] for a in found] == ["default"]
        default = found[0]
        assert default["graph_id"] == "react"
        assert default["metadata"]["created_by"] == "system"
        assert default["version"] >= 1
        assert default["config"]["configurable"]["tools"]
        assert await client.assistants.search(graph_id="other") == []

    async def test_graph_id_stands_for_the_default_agent(self, server_url: str) -> None:
        client = client_for(server_url)
        assert (await client.assistants.get("react"))["assistant_id"] == "default"

    async def test_create_from_config_then_get_patch_count_delete(self, server_url: str) -> None:
        client = client_for(server_url)
        aid = str(uuid.uuid4())
        created = await client.assistants.create(
            graph_id="react",
            assistant_id=aid,
            name="Pirate",
            metadata={"team": "blue"},
            config={"configurable": {"system_prompt": "Talk like a pirate.", "model": "offline"}},
        )
        assert created["assistant_id"] == aid
        assert created["name"] == "Pirate"
        assert created["metadata"] == {"team": "blue"}
        assert created["config"]["configurable"]["system_prompt"] == "Talk like a pirate."
        assert created["version"] == 1

        with pytest.raises(ConflictError):
            await client.assistants.create(graph_id="react", assistant_id=aid, name="Again")
        same = await client.assistants.create(
            graph_id="react", assistant_id=aid, name="Again", if_exists="do_nothing"
        )
        assert same["name"] == "Pirate"

        found = await client.assistants.search(metadata={"team": "blue"})
        assert [a["assistant_id"] for a in found] == [aid]
        assert await client.assistants.count(metadata={"team": "blue"}) == 1

        patched = await client.assistants.update(
            aid, name="Captain", metadata={"rank": "1"}, context={"system_prompt": "Arr."}
        )
        assert patched["version"] == 2
        assert patched["metadata"] == {"team": "blue", "rank": "1"}
        assert patched["config"]["configurable"]["system_prompt"] == "Arr."
        # Every version is kept: list them, make an older one current, change it again.
        versions = await client.assistants.get_versions(aid)
        assert [(v["version"], v["name"]) for v in versions] == [(2, "Captain"), (1, "Pirate")]
        assert [v["version"] for v in await client.assistants.get_versions(aid, limit=1)] == [2]
        older = await client.assistants.get_versions(aid, metadata={"rank": "1"})
        assert [v["version"] for v in older] == [2]
        current = await client.assistants.set_latest(aid, 1)
        assert (current["version"], current["name"]) == (1, "Pirate")
        got = await client.assistants.get(aid)
        assert got["config"]["configurable"]["system_prompt"] == "Talk like a pirate."
        assert (await client.assistants.update(aid, name="Bosun"))["version"] == 3
        assert len(await client.assistants.get_versions(aid)) == 3
        with pytest.raises(NotFoundError):
            await client.assistants.set_latest(aid, 9)

        await client.assistants.delete(aid)
        with pytest.raises(NotFoundError):
            await client.assistants.get(aid)

    async def test_bad_config_is_422(self, server_url: str) -> None:
        client = client_for(server_url)
        with pytest.raises(UnprocessableEntityError):
            await client.assistants.create(
                graph_id="react", config={"configurable": {"tools": ["no_such_tool"]}}
            )
        with pytest.raises(NotFoundError):
            await client.assistants.create(graph_id="no_such_graph")

    async def test_graph_schemas_and_subgraphs(self, server_url: str) -> None:
        client = client_for(server_url)
        drawing = await client.assistants.get_graph("default", xray=True)
        nodes = {n["id"] for n in drawing["nodes"]}
        assert {"__start__", "agent", "tools", "__end__"} <= nodes
        schemas = await client.assistants.get_schemas("default")
        assert schemas["graph_id"] == "react"
        assert "messages" in schemas["input_schema"]["properties"]
        assert "messages" in schemas["state_schema"]["properties"]
        assert "system_prompt" in schemas["config_schema"]["properties"]
        assert await client.assistants.get_subgraphs("default", recurse=True) == {}


class TestThreads:
    async def test_create_get_patch_search_count_delete(self, server_url: str) -> None:
        client = client_for(server_url)
        tag = uuid.uuid4().hex
        thread = await client.threads.create(metadata={"tag": tag, "user": "ann"})
        tid = thread["thread_id"]
        uuid.UUID(tid)
        assert thread["status"] == "idle"
        assert thread["metadata"]["tag"] == tag
        assert thread["metadata"]["graph_id"] == "react"
        assert thread["metadata"]["assistant_id"] == "default"
        assert thread["values"] == {}

        assert (await client.threads.get(tid))["thread_id"] == tid
        patched = await client.threads.update(tid, metadata={"user": "bob"})
        assert patched["metadata"]["user"] == "bob" and patched["metadata"]["tag"] == tag

        other = await client.threads.create(metadata={"tag": tag, "user": "cat"})
        found = await client.threads.search(metadata={"tag": tag})
        assert {t["thread_id"] for t in found} == {tid, other["thread_id"]}
        found = await client.threads.search(metadata={"tag": tag, "user": "bob"})
        assert [t["thread_id"] for t in found] == [tid]
        found = await client.threads.search(
            metadata={"tag": tag, "graph_id": "react"}, status="idle", limit=1
        )
        assert len(found) == 1
        assert await client.threads.search(metadata={"tag": tag}, status="busy") == []
        assert await client.threads.search(ids=[tid]) == [await client.threads.get(tid)]
        assert await client.threads.count(metadata={"tag": tag}) == 2

        await client.threads.delete(tid)
        with pytest.raises(NotFoundError):
            await client.threads.get(tid)
        assert await client.threads.count(metadata={"tag": tag}) == 1

    async def test_if_exists(self, server_url: str) -> None:
        client = client_for(server_url)
        tid = str(uuid.uuid4())
        first = await client.threads.create(thread_id=tid, metadata={"n": 1})
        assert first["thread_id"] == tid
        with pytest.raises(ConflictError):
            await client.threads.create(thread_id=tid)
        again = await client.threads.create(
            thread_id=tid, metadata={"n": 2}, if_exists="do_nothing"
        )
        assert again["thread_id"] == tid and again["metadata"]["n"] == 1

    async def test_search_by_values_is_refused_clearly(self, server_url: str) -> None:
        client = client_for(server_url)
        with pytest.raises(UnprocessableEntityError, match="values"):
            await client.threads.search(values={"x": 1})


class TestState:
    async def test_native_session_is_readable_as_a_thread(
        self, server_url: str, http: httpx.AsyncClient
    ) -> None:
        client = client_for(server_url)
        sid = str(uuid.uuid4())
        await native_turn(http, sid, "my name is Ada")
        await native_turn(http, sid, "what is 6 * 7?")
        native = await native_messages(http, sid)

        state = await client.threads.get_state(sid)
        messages = state["values"]["messages"]
        assert [m["id"] for m in messages] == [m["id"] for m in native]
        assert [m["content"] for m in messages] == contents(native)
        assert [m["type"] for m in messages] == ["human", "ai", "human", "ai", "tool", "ai"]
        assert messages[3]["tool_calls"][0]["name"] == "calculator"
        assert state["next"] == []
        assert state["checkpoint"]["thread_id"] == sid
        assert state["checkpoint"]["checkpoint_id"]

        thread = await client.threads.get(sid)
        assert thread["status"] == "idle"
        assert thread["values"]["messages"] == messages

        # The default durability: per turn, the state with the input applied (next: the
        # first node) and the turn's end; and the new thread's empty first state.
        history = await client.threads.get_history(sid, limit=3)
        assert len(history) == 3
        assert history[0]["checkpoint"] == state["checkpoint"]
        assert (
            history[1]["checkpoint"]["checkpoint_id"]
            == history[0]["parent_checkpoint"]["checkpoint_id"]
        )
        assert [h["next"] for h in history] == [[], ["agent"], []]
        older = await client.threads.get_history(sid, limit=2, before=history[0]["checkpoint"])
        assert [h["checkpoint"] for h in older] == [h["checkpoint"] for h in history[1:3]]
        everything = await client.threads.get_history(sid, limit=1000)  # capped at 100
        assert len(everything) == 5
        assert everything[-1]["parent_checkpoint"] is None
        assert not any(everything[-1]["values"].values())  # empty channels
        assert everything[-1]["next"] == ["__start__"]

        past = everything[2]
        at = await client.threads.get_state(sid, checkpoint_id=past["checkpoint"]["checkpoint_id"])
        assert at["values"] == past["values"]
        at = await client.threads.get_state(sid, checkpoint=past["checkpoint"])
        assert at["checkpoint"] == past["checkpoint"]
        response = await http.get(f"/threads/{sid}/history", params={"limit": 2})
        assert response.status_code == 200, response.text
        assert len(response.json()) == 2

    async def test_unknown_checkpoint_is_404(
        self, server_url: str, http: httpx.AsyncClient
    ) -> None:
        client = client_for(server_url)
        sid = str(uuid.uuid4())
        await native_turn(http, sid, "hello")
        with pytest.raises(NotFoundError):
            await client.threads.get_state(sid, checkpoint_id="1f0-not-a-checkpoint")
        other = str(uuid.uuid4())
        await native_turn(http, other, "hello")
        foreign = (await client.threads.get_state(other))["checkpoint"]["checkpoint_id"]
        with pytest.raises(NotFoundError):
            await client.threads.get_state(sid, checkpoint_id=foreign)

    async def test_empty_thread_state_and_history(self, server_url: str) -> None:
        client = client_for(server_url)
        tid = (await client.threads.create())["thread_id"]
        state = await client.threads.get_state(tid)
        assert state["values"] == {} and state["next"] == [] and state["checkpoint"] is None
        assert await client.threads.get_history(tid) == []

    async def test_update_state_is_committed_and_a_native_turn_builds_on_it(
        self, server_url: str, http: httpx.AsyncClient
    ) -> None:
        client = client_for(server_url)
        tid = (await client.threads.create())["thread_id"]
        result = await client.threads.update_state(
            tid,
            {"messages": [{"type": "human", "content": "my name is Zed"}]},
            as_node="agent",
        )
        assert result["checkpoint"]["thread_id"] == tid
        state = await client.threads.get_state(tid)
        assert state["checkpoint"] == result["checkpoint"]
        assert contents(state["values"]["messages"]) == ["my name is Zed"]

        reply = await native_turn(http, tid, "what is my name?")
        assert reply["reply"] == "Your name is Zed."
        assert contents(await native_messages(http, tid)) == [
            "my name is Zed",
            "what is my name?",
            "Your name is Zed.",
        ]
        thread = await client.threads.get(tid)
        assert contents(thread["values"]["messages"]) == contents(await native_messages(http, tid))

    async def test_update_state_from_an_older_checkpoint_forks(
        self, server_url: str, http: httpx.AsyncClient
    ) -> None:
        client = client_for(server_url)
        sid = str(uuid.uuid4())
        await native_turn(http, sid, "first")
        first = (await client.threads.get_state(sid))["checkpoint"]
        await native_turn(http, sid, "second")
        await client.threads.update_state(
            sid, {"notes": ["forked"]}, as_node="agent", checkpoint=first
        )
        state = await client.threads.get_state(sid)
        assert contents(state["values"]["messages"]) == ["first", "You said: first"]
        assert state["values"]["notes"] == ["forked"]
        assert contents(await native_messages(http, sid)) == ["first", "You said: first"]
        # The abandoned branch is no longer in the committed lineage.
        history = await client.threads.get_history(sid, limit=100)
        seen = [m["content"] for h in history for m in h["values"].get("messages", [])]
        assert "second" not in seen

    async def test_bad_update_is_422_and_changes_nothing(self, server_url: str) -> None:
        client = client_for(server_url)
        tid = (await client.threads.create())["thread_id"]
        with pytest.raises(UnprocessableEntityError):
            await client.threads.update_state(tid, {"messages": []}, as_node="no_such_node")
        assert (await client.threads.get_state(tid))["checkpoint"] is None

    async def test_sdk_thread_is_usable_natively(
        self, server_url: str, http: httpx.AsyncClient
    ) -> None:
        client = client_for(server_url)
        tid = (await client.threads.create(metadata={"from": "sdk"}))["thread_id"]
        await native_turn(http, tid, "my colour is green")
        session = (await http.get(f"/v1/sessions/{tid}")).json()
        assert session["metadata"] == {"from": "sdk"}
        state = await client.threads.get_state(tid)
        assert contents(state["values"]["messages"]) == contents(await native_messages(http, tid))


class TestStore:
    async def test_round_trip(self, server_url: str) -> None:
        client = client_for(server_url)
        ns = ["users", uuid.uuid4().hex]
        await client.store.put_item(ns, key="prefs", value={"theme": "dark"})
        item = await client.store.get_item(ns, key="prefs")
        assert item is not None
        assert item["namespace"] == ns and item["key"] == "prefs"
        assert item["value"] == {"theme": "dark"}
        await client.store.put_item(ns, key="other", value={"theme": "light"})
        found = await client.store.search_items(ns, filter={"theme": "dark"})
        assert [i["key"] for i in found["items"]] == ["prefs"]
        assert found["items"][0]["namespace"] == ns
        spaces = await client.store.list_namespaces(prefix=ns[:1])
        assert ns in spaces["namespaces"]
        await client.store.delete_item(ns, key="prefs")
        assert await client.store.get_item(ns, key="prefs") is None


async def _key(settings: Settings, owner: str) -> str:
    async with Runtime.open(settings, sweeper=False) as rt:
        _, secret = await rt.keys.create(owner)
    return secret


class TestOwnership:
    async def test_x_api_key_and_owner_isolation(
        self, settings: Settings, fresh_database: str
    ) -> None:
        own = settings.model_copy(update={"database_url": fresh_database})
        ann, bob = await _key(own, "ann"), await _key(own, "bob")
        async with running_server(create_app(own)) as url:
            async with httpx.AsyncClient(base_url=url) as raw:
                assert (await raw.post("/threads/search", json={})).status_code == 401
                wrong = await raw.post("/threads/search", json={}, headers={"x-api-key": "nope"})
                assert wrong.status_code == 401
                assert (await raw.get("/info")).status_code == 200
            as_ann, as_bob = client_for(url, ann), client_for(url, bob)
            tid = (await as_ann.threads.create(metadata={"who": "ann"}))["thread_id"]
            await as_ann.threads.update_state(
                tid, {"messages": [{"type": "human", "content": "secret"}]}, as_node="agent"
            )
            assert (await as_ann.threads.get(tid))["thread_id"] == tid
            with pytest.raises(NotFoundError):
                await as_bob.threads.get(tid)
            with pytest.raises(NotFoundError):
                await as_bob.threads.get_state(tid)
            with pytest.raises(NotFoundError):
                await as_bob.threads.get_history(tid)
            with pytest.raises(NotFoundError):
                await as_bob.threads.update_state(tid, {"notes": ["x"]}, as_node="agent")
            with pytest.raises(NotFoundError):
                await as_bob.threads.delete(tid)
            assert await as_bob.threads.search(metadata={"who": "ann"}) == []
            # Bob may use the same thread id for a thread of his own.
            mine = await as_bob.threads.create(thread_id=tid)
            assert mine["values"] == {}

            aid = (await as_ann.assistants.create(graph_id="react", name="Ann's"))["assistant_id"]
            with pytest.raises(NotFoundError):
                await as_bob.assistants.get(aid)
            assert aid not in {a["assistant_id"] for a in await as_bob.assistants.search()}

            await as_ann.store.put_item(["shared"], key="k", value={"by": "ann"})
            assert await as_bob.store.get_item(["shared"], key="k") is None
            assert (await as_bob.store.search_items(["shared"]))["items"] == []
            assert (await as_bob.store.list_namespaces())["namespaces"] == []
            await as_bob.store.put_item(["shared"], key="k", value={"by": "bob"})
            item = await as_ann.store.get_item(["shared"], key="k")
            assert item is not None and item["value"] == {"by": "ann"}


class TestReadmeExample:
    async def test_sdk_example_runs_as_written(self, server_url: str, tmp_path: Path) -> None:
        """The README's langgraph-sdk example prints what its comments promise."""
        readme = (ROOT / "README.md").read_text()
        (code,) = [
            b
            for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
            if b.startswith("# langgraph sdk example")
        ]
        script = tmp_path / "sdk_example.py"
        script.write_text(code.replace("http://localhost:8000", server_url))
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, stderr.decode()
        assert stdout.decode().splitlines() == ["The result is 42.", "4"]


BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("POST", "/threads", {"thread_id": "not a valid id!"}),
    ("POST", "/threads", {"if_exists": "sometimes"}),
    ("POST", "/threads", {"ttl": -5}),
    ("POST", "/threads", {"metadata": "not an object"}),
    ("POST", "/threads/search", {"limit": 0}),
    ("POST", "/threads/search", {"status": "sleepy"}),
    ("POST", "/threads/search", {"sort_by": "colour"}),
    ("POST", "/threads/search", {"metadata": {"k": "nul\u0000"}}),
    ("POST", "/threads/{tid}/history", {"limit": "many"}),
    ("POST", "/threads/{tid}/history", {"before": 7}),
    ("GET", "/threads/{tid}/history?limit=0", None),
    ("POST", "/threads/{tid}/state", {"values": ["not", "a", "dict"]}),
    ("POST", "/threads/{tid}/state", {"values": {"messages": [{"nonsense": 1}]}}),
    ("POST", "/threads/{tid}/state/checkpoint", {}),
    ("GET", "/threads/{tid}/state/nope", None),
    ("GET", "/threads/nope", None),
    ("POST", "/assistants", {"graph_id": "react", "assistant_id": "bad id!"}),
    ("POST", "/assistants", {"graph_id": "react", "config": {"configurable": []}}),
    ("POST", "/assistants", {"graph_id": "react", "config": {"configurable": {"model": "x:y"}}}),
    ("POST", "/assistants", {"graph_id": "react", "context": {"budgets": {"max_steps": 0}}}),
    ("POST", "/assistants/search", {"sort_by": "colour"}),
    ("POST", "/assistants/search", {"limit": -1}),
    ("GET", "/assistants/default/graph?xray=sideways", None),
    ("GET", "/assistants/default/graph?xray=-1", None),
    ("PATCH", "/assistants/default", {"config": {"configurable": {"tools": ["nope"]}}}),
    ("POST", "/assistants/default/latest", {"version": "new"}),
    ("PUT", "/store/items", {"namespace": [], "key": "k", "value": {}}),
    ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": "text"}),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": 5}),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "nul\u0000", "value": {}}),
    ("GET", "/store/items?namespace=a", None),
    ("POST", "/store/items/search", {"namespace_prefix": [""]}),
    ("POST", "/store/namespaces", {"max_depth": 0}),
]


class TestBadInput:
    @pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
    async def test_is_a_4xx_naming_the_problem(
        self, http: httpx.AsyncClient, method: str, path: str, body: Any
    ) -> None:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        response = await http.request(
            method, path.replace("{tid}", tid), json=body if body is not None else None
        )
        assert 400 <= response.status_code < 500, response.text
        error = response.json()
        assert set(error) == {"error", "message", "details"}, error
        assert error["message"]
