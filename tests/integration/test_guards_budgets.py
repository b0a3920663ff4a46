"""Guardrails end to end: budgets in every mode, tool permissions, idempotent writes.

Budget tests drive the offline model's runaway loop (``always_call_tool``); permission tests
drive the real ``ChatOpenAI`` client against the OpenAI-compatible test server, which can
be told to call a tool it was not offered (a misbehaving model).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest
from langchain_core.tools import tool
from websockets.asyncio.client import connect

from api.app import create_app
from runtime import Runtime, Settings
from runtime.agents import Budgets, ModelSpec, TemplateSpec
from runtime.tools import ToolRegistry, ToolSpec, default_registry
from tests.support.checks import assert_valid_history, read_sse
from tests.support.openai_server import OpenAICompatServer
from tests.support.server import running_server

SSE = {"Accept": "text/event-stream"}
MODES = ["json", "stream"]
PLAIN_MODEL = {"provider": "offline", "name": "deterministic", "params": {}}
NOT_PERMITTED = "error: tool 'wipe' is not permitted for this caller; not executed"

# Executions of the custom tools, by tool name (reset before every test).
RUNS: Counter[str] = Counter()


@tool
def bump() -> str:
    """Increment a counter (a write that is not idempotent)."""
    RUNS["bump"] += 1
    return f"bumped #{RUNS['bump']}"


@tool
def wipe(target: str) -> str:
    """Wipe a target (operators only)."""
    RUNS["wipe"] += 1
    return f"wiped {target}"


@tool
def lookup(query: str) -> str:
    """Look something up (everyone)."""
    RUNS["lookup"] += 1
    return f"found {query}"


@tool
def charge(order_id: int, amount: int) -> str:
    """Charge an amount on an order."""
    RUNS["charge"] += 1
    return f"charged {amount} on order {order_id} (charge #{RUNS['charge']})"


@tool
def refund(idempotency_key: str, amount: int) -> str:
    """Refund an amount; the idempotency key identifies the refund."""
    RUNS["refund"] += 1
    return f"refunded {amount} (refund #{RUNS['refund']})"


def registry() -> ToolRegistry:
    reg = default_registry()
    reg.register(ToolSpec(bump, writes=True, idempotent=False))
    reg.register(ToolSpec(wipe, writes=True, roles=frozenset({"ops"})))
    reg.register(ToolSpec(lookup))
    reg.register(ToolSpec(charge, writes=True))
    reg.register(ToolSpec(refund, writes=True))
    return reg


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    RUNS.clear()


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime whose registry holds the custom tools."""
    async with Runtime.open(settings, tools=registry()) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def openai_server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as server:
        yield server


def uid(prefix: str = "s") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


def budget_message(budget: str) -> str:
    return (
        f"I stopped before finishing because this turn reached its {budget} budget. "
        "Tell me to continue if you want me to carry on."
    )


def tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["role"] == "tool"]


def executed(messages: list[dict[str, Any]]) -> int:
    """Tool calls that ran (status success) among ``messages``."""
    return sum(1 for m in tool_results(messages) if m["status"] == "success")


def model_calls(messages: list[dict[str, Any]]) -> int:
    """Assistant messages asking for tools: in a runaway loop, one per model call."""
    return sum(1 for m in messages if m["role"] == "assistant" and m.get("tool_calls"))


@dataclass
class Turn:
    reply: str
    warnings: list[str]
    messages: list[dict[str, Any]]


async def run_turn(rt: Runtime, sid: str, content: str, mode: str, **kwargs: Any) -> Turn:
    """One turn through ``rt.chat`` (json) or ``rt.stream`` (stream: the ``done`` event)."""
    if mode == "json":
        result = await rt.chat(sid, content, **kwargs)
        return Turn(result.reply, result.warnings, result.messages)
    events = [e async for e in rt.stream(sid, content, **kwargs)]
    assert events[-1].type == "done", events[-1]
    calls = sorted(e.data["id"] for e in events if e.type == "tool_call")
    answered = sorted(e.data["tool_call_id"] for e in events if e.type == "tool_result")
    assert calls == answered  # every streamed call got its streamed result
    done = events[-1].data
    # The budget's final message is streamed as tokens too: tokens add up to the reply.
    assert "".join(e.data["content"] for e in events if e.type == "token").endswith(done["reply"])
    return Turn(done["reply"], done["warnings"], done["messages"])


async def loop_agent(
    rt: Runtime, *, tool_name: str = "calculator", delay: float = 0.0, **budgets: Any
) -> str:
    """An agent whose model calls ``tool_name`` on every reply, with these budgets."""
    params: dict[str, Any] = {"always_call_tool": tool_name}
    if delay:
        params["delay_seconds"] = delay
    template = await rt.templates.create(
        TemplateSpec(
            name="loop",
            model=ModelSpec(params=params),
            tools=["calculator", "bump"],
            budgets=Budgets(**budgets),
        ),
        owner="local",
    )
    return template.agent_id


async def assert_stopped(rt: Runtime, sid: str, turn: Turn, budget: str) -> None:
    """The turn ended on ``budget``'s final message with a valid stored history."""
    assert len(turn.warnings) == 1, turn.warnings
    assert turn.warnings[0].startswith(f"{budget}: "), turn.warnings
    final = turn.messages[-1]
    assert final["role"] == "assistant" and not final.get("tool_calls")
    assert final["content"] == turn.reply == budget_message(budget)
    history = await rt.history(sid)
    assert_valid_history(history)
    assert [(m["role"], m["content"]) for m in history[-len(turn.messages) :]] == [
        (m["role"], m["content"]) for m in turn.messages
    ]


async def assert_next_turn_works(rt: Runtime, sid: str, agent_id: str, mode: str) -> None:
    """With the runaway model fixed, the session's next turn is a normal one."""
    await rt.templates.update(agent_id, {"model": PLAIN_MODEL}, owner="local")
    turn = await run_turn(rt, sid, "my name is Bob", mode)
    assert turn.reply == "Nice to meet you, Bob."
    assert turn.warnings == []
    assert_valid_history(await rt.history(sid))


@pytest.mark.parametrize("mode", MODES)
class TestBudgets:
    async def test_max_steps(self, rt: Runtime, mode: str) -> None:
        """max_steps=3 stops a runaway loop after 3 model calls, with the budget message."""
        agent_id, sid = await loop_agent(rt, max_steps=3), uid("steps")
        turn = await run_turn(rt, sid, "go", mode, agent_id=agent_id)
        await assert_stopped(rt, sid, turn, "max_steps")
        assert model_calls(turn.messages) == 3
        assert executed(turn.messages) == 3  # the third call's result arrived before the stop
        assert turn.warnings == ["max_steps: the turn used its 3 model steps"]
        await assert_next_turn_works(rt, sid, agent_id, mode)

    async def test_deadline_seconds(self, rt: Runtime, mode: str) -> None:
        """A 2 s deadline stops a slow runaway loop (0.4 s per model reply) on the deadline
        (2 s: the first reply, asserted below, is in well before it on a loaded machine)."""
        agent_id, sid = await loop_agent(rt, delay=0.4, deadline_seconds=2.0), uid("deadline")
        turn = await run_turn(rt, sid, "go", mode, agent_id=agent_id)
        await assert_stopped(rt, sid, turn, "deadline_seconds")
        assert 1 <= model_calls(turn.messages) < 25
        await assert_next_turn_works(rt, sid, agent_id, mode)

    async def test_max_tool_calls(self, rt: Runtime, mode: str) -> None:
        """max_tool_calls=3 runs 3 calls; the 4th gets a "not executed" result and the turn ends."""
        agent_id, sid = await loop_agent(rt, max_tool_calls=3), uid("tools")
        turn = await run_turn(rt, sid, "go", mode, agent_id=agent_id)
        await assert_stopped(rt, sid, turn, "max_tool_calls")
        assert executed(turn.messages) == 3
        refused = [m for m in tool_results(turn.messages) if m["status"] == "error"]
        assert [m["content"] for m in refused] == [
            "not executed: the turn reached its max_tool_calls budget"
        ]
        await assert_next_turn_works(rt, sid, agent_id, mode)

    async def test_max_write_calls(self, rt: Runtime, mode: str) -> None:
        """max_write_calls=2 runs a write tool twice, then stops the loop before a third run."""
        agent_id = await loop_agent(rt, tool_name="bump", max_write_calls=2)
        sid = uid("writes")
        turn = await run_turn(rt, sid, "go", mode, agent_id=agent_id)
        await assert_stopped(rt, sid, turn, "max_write_calls")
        assert RUNS["bump"] == 2
        assert [m["content"] for m in tool_results(turn.messages)] == [
            "bumped #1",
            "bumped #2",
            "not executed: the turn reached its max_write_calls budget",
        ]
        await assert_next_turn_works(rt, sid, agent_id, mode)

    async def test_max_repeated_calls(self, rt: Runtime, mode: str) -> None:
        """max_repeated_calls=2 stops the third identical calculator call."""
        agent_id, sid = await loop_agent(rt, max_repeated_calls=2), uid("repeat")
        turn = await run_turn(rt, sid, "go", mode, agent_id=agent_id)
        await assert_stopped(rt, sid, turn, "max_repeated_calls")
        assert executed(turn.messages) == 2
        assert turn.warnings == [
            "max_repeated_calls: calculator was called 2 time(s) with the same arguments"
        ]
        await assert_next_turn_works(rt, sid, agent_id, mode)


# -- over HTTP: JSON, SSE and WebSocket ---------------------------------------------------


async def ws_turn(server_url: str, sid: str, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """One turn over a WebSocket; returns the ``done`` frame's data."""
    url = server_url.replace("http", "ws", 1) + f"/v1/sessions/{sid}/ws?agent_id={agent_id}"
    async with connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
        assert first["type"] == "session"
        await ws.send(json.dumps({"type": "message", **body}))
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=30)))
    assert frames[-1]["type"] == "done", frames[-1]
    calls = sorted(f["data"]["id"] for f in frames if f["type"] == "tool_call")
    assert calls == sorted(f["data"]["tool_call_id"] for f in frames if f["type"] == "tool_result")
    done: dict[str, Any] = frames[-1]["data"]
    return done


async def http_turn(
    http: httpx.AsyncClient, server_url: str, sid: str, mode: str, body: dict[str, Any]
) -> dict[str, Any]:
    """One turn via JSON, SSE or WebSocket; returns the turn result (SSE/WS: ``done`` data)."""
    url = f"/v1/sessions/{sid}/messages"
    if mode == "json":
        response = await http.post(url, json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result
    if mode == "sse":
        async with http.stream("POST", url, json=body, headers=SSE) as response:
            assert response.status_code == 200
            events = await read_sse(response)
        assert events[-1][0] == "done", events[-1]
        return dict(events[-1][1])
    agent_id = body.pop("agent_id")
    return await ws_turn(server_url, sid, agent_id, body)


async def http_history(http: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/sessions/{sid}/messages", params={"limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def http_loop_agent(http: httpx.AsyncClient, **budgets: Any) -> str:
    agent_id = uid("loop")
    model = {**PLAIN_MODEL, "params": {"always_call_tool": "calculator"}}
    response = await http.post(
        "/v1/agents",
        json={
            "id": agent_id,
            "name": "loop",
            "model": model,
            "tools": ["calculator"],
            "budgets": budgets,
        },
    )
    assert response.status_code == 201, response.text
    return agent_id


class TestRunawayLoopOverHTTP:
    @pytest.mark.parametrize("mode", ["json", "sse", "ws"])
    async def test_loop_ends_on_max_tool_calls(
        self, http: httpx.AsyncClient, server_url: str, mode: str
    ) -> None:
        """A calculator loop under max_tool_calls=5 ends within it, with a valid history."""
        agent_id, sid = await http_loop_agent(http, max_tool_calls=5), uid(f"loop-{mode}")
        result = await http_turn(
            http, server_url, sid, mode, {"content": "go", "agent_id": agent_id}
        )
        assert result["warnings"] == ["max_tool_calls: the turn made its 5 tool calls"]
        assert result["reply"] == budget_message("max_tool_calls")
        assert executed(result["messages"]) == 5
        history = await http_history(http, sid)
        assert_valid_history(history)
        assert history[-1]["content"] == budget_message("max_tool_calls")
        fixed = await http.patch(f"/v1/agents/{agent_id}", json={"model": PLAIN_MODEL})
        assert fixed.status_code == 200, fixed.text
        body = {"content": "my name is Bob", "agent_id": agent_id}
        after = await http_turn(http, server_url, sid, mode, body)
        assert (after["reply"], after["warnings"]) == ("Nice to meet you, Bob.", [])


class TestRequestBudgets:
    @pytest.mark.parametrize(("asked", "limit"), [(2, 2), (50, 4)])
    async def test_request_tightens_but_never_loosens(
        self, http: httpx.AsyncClient, asked: int, limit: int
    ) -> None:
        """Template max_tool_calls=4: a request asking 2 stops at 2; one asking 50 still at 4."""
        agent_id, sid = await http_loop_agent(http, max_tool_calls=4), uid("tighten")
        body = {"content": "go", "agent_id": agent_id, "budgets": {"max_tool_calls": asked}}
        response = await http.post(f"/v1/sessions/{sid}/messages", json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["warnings"] == [f"max_tool_calls: the turn made its {limit} tool calls"]
        assert executed(result["messages"]) == limit
        assert_valid_history(await http_history(http, sid))

    async def test_request_tightens_max_steps(self, http: httpx.AsyncClient) -> None:
        """A request's max_steps=2 under the template's default 25 stops after 2 model calls."""
        agent_id, sid = await http_loop_agent(http), uid("steps")
        body = {"content": "go", "agent_id": agent_id, "budgets": {"max_steps": 2}}
        response = await http.post(f"/v1/sessions/{sid}/messages", json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["warnings"] == ["max_steps: the turn used its 2 model steps"]
        assert model_calls(result["messages"]) == 2

    async def test_invalid_request_budget_is_refused(self, http: httpx.AsyncClient) -> None:
        """An out-of-range or unknown request budget is a 422, and no turn runs."""
        agent_id, sid = await http_loop_agent(http), uid("bad")
        created = await http.put(f"/v1/sessions/{sid}", json={"agent_id": agent_id})
        assert created.status_code == 201, created.text
        for budgets in ({"max_steps": 0}, {"max_tool_calls": -1}, {"max_turns": 3}):
            body = {"content": "go", "agent_id": agent_id, "budgets": budgets}
            response = await http.post(f"/v1/sessions/{sid}/messages", json=body)
            assert response.status_code == 422, (budgets, response.text)
        assert await http_history(http, sid) == []


# -- permissions --------------------------------------------------------------------------


def openai_spec(server: OpenAICompatServer) -> TemplateSpec:
    return TemplateSpec(
        name="openai-perms",
        model=ModelSpec(
            provider="openai",
            name="gpt-test",
            params={"base_url": server.base_url, "max_retries": 0},
        ),
        tools=["calculator", "lookup", "wipe"],
    )


def offered(server: OpenAICompatServer) -> set[str]:
    return {t["function"]["name"] for t in server.requests[-1].get("tools") or []}


@pytest.fixture
async def openai_agent(rt: Runtime, openai_server: OpenAICompatServer) -> str:
    openai_server.reset()
    template = await rt.templates.create(openai_spec(openai_server), owner="local")
    return template.agent_id


class TestPermissions:
    @pytest.mark.parametrize(
        ("roles", "tools"),
        [
            ({"support"}, {"calculator", "lookup"}),
            (set(), {"calculator", "lookup"}),
            ({"ops"}, {"calculator", "lookup", "wipe"}),
            ({"support", "ops"}, {"calculator", "lookup", "wipe"}),
            ({"admin"}, {"calculator", "lookup", "wipe"}),
        ],
    )
    async def test_model_is_offered_only_permitted_tools(
        self,
        rt: Runtime,
        openai_server: OpenAICompatServer,
        openai_agent: str,
        roles: set[str],
        tools: set[str],
    ) -> None:
        """The tools sent to the model are exactly those the caller's roles permit."""
        sid = uid("offer")
        result = await rt.chat(sid, "hello", agent_id=openai_agent, roles=frozenset(roles))
        assert result.reply == "echo: hello"
        assert offered(openai_server) == tools

    async def test_forbidden_call_is_refused_and_the_model_carries_on(
        self, rt: Runtime, openai_server: OpenAICompatServer, openai_agent: str
    ) -> None:
        """A model calling a tool it was not offered gets "not permitted"; the tool never runs."""
        sid = uid("forbid")
        result = await rt.chat(
            sid,
            'call wipe with {"target": "db"}',
            agent_id=openai_agent,
            roles=frozenset({"support"}),
        )
        call = result.messages[1]["tool_calls"][0]
        assert (call["name"], call["args"]) == ("wipe", {"target": "db"})
        [answer] = tool_results(result.messages)
        assert (answer["content"], answer["status"]) == (NOT_PERMITTED, "error")
        assert answer["tool_call_id"] == call["id"]
        assert RUNS["wipe"] == 0
        assert result.reply == f"The result is {NOT_PERMITTED}."
        assert result.messages[-1]["role"] == "assistant" and result.warnings == []
        assert "wipe" not in offered(openai_server)  # the follow-up call still hides it
        assert_valid_history(await rt.history(sid))

    async def test_permitted_role_runs_the_tool(
        self, rt: Runtime, openai_server: OpenAICompatServer, openai_agent: str
    ) -> None:
        """The same call from an ops caller runs wipe."""
        sid = uid("ops")
        result = await rt.chat(
            sid, 'call wipe with {"target": "db"}', agent_id=openai_agent, roles=frozenset({"ops"})
        )
        assert [m["content"] for m in tool_results(result.messages)] == ["wiped db"]
        assert RUNS["wipe"] == 1 and result.reply == "The result is wiped db."


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class TestPermissionsOverHTTP:
    async def test_roles_from_keys_and_trusted_backends(
        self, settings: Settings, fresh_database: str, openai_server: OpenAICompatServer
    ) -> None:
        """support keys cannot run wipe; trusted keys may pass roles (ops runs it); others 403."""
        s = settings.model_copy(update={"database_url": fresh_database})
        reg = registry()
        async with Runtime.open(s, tools=reg, sweeper=False) as rt:
            _, support = await rt.keys.create("acme", roles=["support"])
            _, trusted = await rt.keys.create("acme", roles=["trusted"])
            agent_id = (
                await rt.templates.create(openai_spec(openai_server), owner="acme")
            ).agent_id
        wipe_db = 'call wipe with {"target": "db"}'
        async with (
            running_server(create_app(s, tools=reg)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):

            async def send(secret: str, sid: str, **extra: Any) -> httpx.Response:
                body = {"content": wipe_db, "agent_id": agent_id, **extra}
                return await client.post(
                    f"/v1/sessions/{sid}/messages", json=body, headers=bearer(secret)
                )

            refused = await send(support, "perm-support")
            assert refused.status_code == 200, refused.text
            assert [m["content"] for m in tool_results(refused.json()["messages"])] == [
                NOT_PERMITTED
            ]
            assert RUNS["wipe"] == 0

            denied = await send(support, "perm-escalate", roles=["ops"])
            assert denied.status_code == 403, denied.text
            assert denied.json()["error"] == "permission_denied"
            assert RUNS["wipe"] == 0

            own = await send(trusted, "perm-trusted-own")  # the trusted key's own roles
            assert [m["content"] for m in tool_results(own.json()["messages"])] == [NOT_PERMITTED]

            allowed = await send(trusted, "perm-trusted-ops", roles=["ops"])
            assert allowed.status_code == 200, allowed.text
            assert [m["content"] for m in tool_results(allowed.json()["messages"])] == ["wiped db"]
            assert RUNS["wipe"] == 1

            history = await client.get(
                "/v1/sessions/perm-support/messages", headers=bearer(support)
            )
            assert_valid_history(history.json()["items"])


# -- idempotent writes --------------------------------------------------------------------


def charge_message(order_id: int, amount: int) -> str:
    return f"use tool charge with {json.dumps({'order_id': order_id, 'amount': amount})}"


def refund_message(key: str, amount: int) -> str:
    return f"use tool refund with {json.dumps({'idempotency_key': key, 'amount': amount})}"


async def write_agent(rt: Runtime) -> str:
    spec = TemplateSpec(name="writer", tools=["charge", "refund"])
    return (await rt.templates.create(spec, owner="local")).agent_id


async def only_result(rt: Runtime, sid: str, content: str, **kwargs: Any) -> str:
    """Run a turn that makes one tool call; return that call's result."""
    result = await rt.chat(sid, content, **kwargs)
    [answer] = tool_results(result.messages)
    assert answer["status"] == "success", answer
    return str(answer["content"])


class TestIdempotentWrites:
    async def test_recorded_result_survives_a_restart(self, settings: Settings) -> None:
        """The same charge after a runtime restart returns the recorded result, not a rerun."""
        sid = uid("restart")
        async with Runtime.open(settings, tools=registry()) as first:
            agent_id = await write_agent(first)
            before = await only_result(first, sid, charge_message(7, 30), agent_id=agent_id)
        assert before == "charged 30 on order 7 (charge #1)"
        assert RUNS["charge"] == 1
        async with Runtime.open(settings, tools=registry()) as second:
            after = await only_result(second, sid, charge_message(7, 30))
            assert_valid_history(await second.history(sid))
        assert after == before
        assert RUNS["charge"] == 1

    async def test_records_are_per_call_and_per_session(self, rt: Runtime) -> None:
        """Same args in a later turn: not rerun; other amount: runs; other session: runs."""
        agent_id, sid = await write_agent(rt), uid("records")
        first = await only_result(rt, sid, charge_message(8, 30), agent_id=agent_id)
        assert await only_result(rt, sid, charge_message(8, 30)) == first
        assert RUNS["charge"] == 1
        other_amount = await only_result(rt, sid, charge_message(8, 31))
        assert other_amount == "charged 31 on order 8 (charge #2)"
        elsewhere = await only_result(rt, uid("records"), charge_message(8, 30), agent_id=agent_id)
        assert elsewhere == "charged 30 on order 8 (charge #3)"
        assert RUNS["charge"] == 3

    async def test_idempotency_key_wins_over_other_args(self, rt: Runtime) -> None:
        """Two calls with the same idempotency_key but other amounts run once."""
        agent_id, sid = await write_agent(rt), uid("idem")
        first = await only_result(rt, sid, refund_message("r-1", 5), agent_id=agent_id)
        again = await only_result(rt, sid, refund_message("r-1", 9))
        assert first == again == "refunded 5 (refund #1)"
        assert RUNS["refund"] == 1
        other = await only_result(rt, sid, refund_message("r-2", 9))
        assert other == "refunded 9 (refund #2)"
