"""Human approval of tool calls: pause, approve / reject / edit, bad resumes, restarts.

A ``refund`` tool registered with ``requires_approval=True`` pauses the turn before it
runs; the session then takes only a resume with one decision per pending call. Driven
through the runtime, HTTP JSON, Server-Sent Events and WebSocket frames.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest
from langchain_core.tools import tool
from websockets.asyncio.client import ClientConnection, connect

from api.app import create_app
from runtime import InvalidInput, Runtime, Settings
from runtime.agents import TemplateSpec
from runtime.errors import AwaitingApproval, NothingToResume
from runtime.tools import ToolRegistry, ToolSpec, default_registry
from tests.support.checks import assert_valid_history, read_sse
from tests.support.server import running_server

SSE = {"Accept": "text/event-stream"}
REFUND_7 = 'use tool refund with {"order_id": 7}'
# The offline model makes both calls in one assistant message.
TWO_REFUNDS = 'use tool refund with {"order_id": 7} and use tool refund with {"order_id": 9}'

# Every order the refund tool really refunded, in order (cleared before each test).
REFUNDS: list[int] = []


@tool
def refund(order_id: int) -> str:
    """Refund an order in full."""
    REFUNDS.append(order_id)
    return f"refunded order {order_id}"


def make_registry() -> ToolRegistry:
    registry = default_registry()
    registry.register(ToolSpec(refund, writes=True, requires_approval=True))
    return registry


def uid(prefix: str = "ap") -> str:
    return f"{prefix}-{uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _forget_refunds() -> None:
    REFUNDS.clear()


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime.open(settings, tools=make_registry()) as runtime:
        yield runtime


@pytest.fixture
async def agent(rt: Runtime) -> str:
    template = await rt.templates.create(
        TemplateSpec(name="refunds", tools=["refund", "calculator"]), owner="local"
    )
    return template.agent_id


async def paused_session(rt: Runtime, agent: str) -> tuple[str, dict[str, Any]]:
    """A session whose turn waits for approval of ``refund(7)``; its id and pending call."""
    sid = uid()
    await rt.session(sid, agent_id=agent)
    result = await rt.chat(sid, REFUND_7)
    assert result.status == "awaiting_approval"
    assert len(result.pending_approvals) == 1
    return sid, result.pending_approvals[0]


@dataclass
class Api:
    client: httpx.AsyncClient
    url: str
    agent: str


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with (
        running_server(create_app(settings, tools=make_registry())) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        response = await client.post(
            "/v1/agents", json={"name": "refunds", "tools": ["refund", "calculator"]}
        )
        assert response.status_code == 201, response.text
        yield Api(client, url, response.json()["id"])


async def sse_post(api: Api, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    async with api.client.stream("POST", path, json=body, headers=SSE) as response:
        assert response.status_code == 200
        return await read_sse(response)


async def frames_until_done(ws: ClientConnection) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return frames


class TestApproveFlow:
    async def test_pause_approve_and_continue(self, rt: Runtime, agent: str) -> None:
        """A call needing approval pauses unrun; approving runs it once and completes the turn."""
        sid, call = await paused_session(rt, agent)
        assert call["name"] == "refund" and call["args"] == {"order_id": 7}
        assert REFUNDS == []
        history = await rt.history(sid)
        assert [m["role"] for m in history] == ["user", "assistant"]
        assert history[1]["tool_calls"] == [
            {"id": call["tool_call_id"], "name": "refund", "args": {"order_id": 7}}
        ]
        session = await rt.sessions.get("local", sid)
        assert session.awaiting_approval and session.pending_approvals == [call]

        done = await rt.resume(sid, [{"tool_call_id": call["tool_call_id"], "action": "approve"}])
        assert done.status == "completed" and done.pending_approvals == []
        assert REFUNDS == [7]
        assert "refunded order 7" in done.reply
        history = await rt.history(sid)
        assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
        assert history[2]["status"] == "success" and history[2]["content"] == "refunded order 7"
        assert_valid_history(history)
        assert not (await rt.sessions.get("local", sid)).awaiting_approval

        after = await rt.chat(sid, "hello again")
        assert after.status == "completed" and after.reply == "You said: hello again"
        assert REFUNDS == [7]
        assert_valid_history(await rt.history(sid))

    async def test_new_message_while_paused_is_refused(self, rt: Runtime, agent: str) -> None:
        """A new message to a paused session raises AwaitingApproval naming the pending call."""
        sid, call = await paused_session(rt, agent)
        before = await rt.history(sid)
        with pytest.raises(AwaitingApproval) as refused:
            await rt.chat(sid, "hello?")
        assert refused.value.details["pending_approvals"] == [call]
        assert await rt.history(sid) == before
        assert REFUNDS == []

    async def test_streamed_pause_and_resume(self, rt: Runtime, agent: str) -> None:
        """The runtime stream emits approval_required before done; resume_stream finishes it."""
        sid = uid()
        await rt.session(sid, agent_id=agent)
        events = [e async for e in rt.stream(sid, REFUND_7)]
        kinds = [e.type for e in events]
        assert kinds.index("approval_required") < kinds.index("done") == len(kinds) - 1
        pending = events[kinds.index("approval_required")].data["pending"]
        assert [p["args"] for p in pending] == [{"order_id": 7}]
        assert events[-1].data["status"] == "awaiting_approval"
        decision = [{"tool_call_id": pending[0]["tool_call_id"], "action": "approve"}]
        resumed = [e async for e in rt.resume_stream(sid, decision)]
        assert resumed[-1].type == "done" and resumed[-1].data["status"] == "completed"
        assert [e.data["content"] for e in resumed if e.type == "tool_result"] == [
            "refunded order 7"
        ]
        assert REFUNDS == [7]


class TestRejectAndEdit:
    async def test_reject_never_runs_the_tool(self, rt: Runtime, agent: str) -> None:
        """A rejected call never runs; its result says so with the reason; the model answers."""
        sid, call = await paused_session(rt, agent)
        done = await rt.resume(
            sid,
            [{"tool_call_id": call["tool_call_id"], "action": "reject", "reason": "no receipt"}],
        )
        assert done.status == "completed"
        assert REFUNDS == []
        history = await rt.history(sid)
        assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
        result = history[2]
        assert result["tool_call_id"] == call["tool_call_id"] and result["status"] == "error"
        assert "rejected" in result["content"] and "no receipt" in result["content"]
        assert done.reply.startswith("The tool refund failed: rejected")
        assert_valid_history(history)
        after = await rt.chat(sid, "ok, thanks")
        assert after.reply == "You said: ok, thanks" and REFUNDS == []

    async def test_edit_runs_with_the_new_arguments(self, rt: Runtime, agent: str) -> None:
        """An edit runs the tool with the edited args, and the stored call shows them."""
        sid, call = await paused_session(rt, agent)
        done = await rt.resume(
            sid,
            [{"tool_call_id": call["tool_call_id"], "action": "edit", "args": {"order_id": 8}}],
        )
        assert done.status == "completed"
        assert REFUNDS == [8]
        assert "refunded order 8" in done.reply
        history = await rt.history(sid)
        assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
        assert history[1]["tool_calls"] == [
            {"id": call["tool_call_id"], "name": "refund", "args": {"order_id": 8}}
        ]
        assert history[2]["content"] == "refunded order 8"
        assert_valid_history(history)


class TestBadResumes:
    @pytest.mark.parametrize(
        "decisions",
        [
            pytest.param([{"tool_call_id": "call_unknown", "action": "approve"}], id="unknown-id"),
            pytest.param([], id="no-decisions"),
            pytest.param([{"action": "edit", "args": {"order_id": 8}}], id="edit-without-id"),
        ],
    )
    async def test_bad_resume_keeps_the_session_paused(
        self, rt: Runtime, agent: str, decisions: list[dict[str, Any]]
    ) -> None:
        """A resume not deciding exactly the pending calls is refused and changes nothing."""
        sid, call = await paused_session(rt, agent)
        before = await rt.history(sid)
        with pytest.raises(InvalidInput):
            await rt.resume(sid, decisions)
        session = await rt.sessions.get("local", sid)
        assert session.awaiting_approval and session.pending_approvals == [call]
        assert await rt.history(sid) == before and REFUNDS == []
        done = await rt.resume(sid, [{"tool_call_id": call["tool_call_id"], "action": "approve"}])
        assert done.status == "completed" and REFUNDS == [7]

    async def test_resume_without_pause_is_refused(self, rt: Runtime, agent: str) -> None:
        """Resuming a session that waits for nothing raises NothingToResume."""
        sid = uid()
        await rt.session(sid, agent_id=agent)
        await rt.chat(sid, "hello")
        with pytest.raises(NothingToResume):
            await rt.resume(sid, [{"tool_call_id": "call_x", "action": "approve"}])
        assert (await rt.chat(sid, "still here")).reply == "You said: still here"

    async def test_http_bad_resumes(self, api: Api) -> None:
        """Over HTTP a bad resume is 422 and the session stays paused (an empty one, which
        continues a breakpoint, 409); an unpaused one is 409."""
        sid = uid()
        paused = await api.client.post(
            f"/v1/sessions/{sid}/messages", json={"content": REFUND_7, "agent_id": api.agent}
        )
        assert paused.status_code == 200, paused.text
        call = paused.json()["pending_approvals"][0]
        bodies: list[dict[str, Any]] = [
            {"decisions": [{"tool_call_id": "call_unknown", "action": "approve"}]},
            {"decisions": []},
            {
                "decisions": [
                    {"tool_call_id": call["tool_call_id"], "action": "approve"},
                    {"tool_call_id": call["tool_call_id"], "action": "reject"},
                ]
            },
        ]
        for body in bodies:
            refused = await api.client.post(f"/v1/sessions/{sid}/resume", json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["error"] == "invalid_input"
            session = (await api.client.get(f"/v1/sessions/{sid}")).json()
            assert session["awaiting_approval"] is True
            assert session["pending_approvals"] == [call]
        # An empty body continues a static breakpoint: here the session waits for decisions.
        empty = await api.client.post(f"/v1/sessions/{sid}/resume", json={})
        assert empty.status_code == 409 and empty.json()["error"] == "awaiting_approval"
        assert (await api.client.get(f"/v1/sessions/{sid}")).json()["pending_approvals"] == [call]
        assert REFUNDS == []

        done = await api.client.post(
            f"/v1/sessions/{sid}/resume",
            json={"decisions": [{"tool_call_id": call["tool_call_id"], "action": "approve"}]},
        )
        assert done.status_code == 200 and done.json()["status"] == "completed"
        again = await api.client.post(
            f"/v1/sessions/{sid}/resume",
            json={"decisions": [{"tool_call_id": call["tool_call_id"], "action": "approve"}]},
        )
        assert again.status_code == 409 and again.json()["error"] == "nothing_to_resume"
        session = (await api.client.get(f"/v1/sessions/{sid}")).json()
        assert session["awaiting_approval"] is False and session["pending_approvals"] == []
        assert REFUNDS == [7]


class TestOverHTTP:
    async def test_json_pause_and_resume(self, api: Api) -> None:
        """POST messages pauses (409 awaiting_approval meanwhile); POST resume completes it."""
        sid = uid()
        paused = await api.client.post(
            f"/v1/sessions/{sid}/messages", json={"content": REFUND_7, "agent_id": api.agent}
        )
        assert paused.status_code == 200, paused.text
        body = paused.json()
        assert body["status"] == "awaiting_approval"
        [call] = body["pending_approvals"]
        assert call["name"] == "refund" and call["args"] == {"order_id": 7}
        assert REFUNDS == []

        refused = await api.client.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"})
        assert refused.status_code == 409
        assert refused.json()["error"] == "awaiting_approval"
        assert refused.json()["details"]["pending_approvals"] == [call]

        done = await api.client.post(
            f"/v1/sessions/{sid}/resume",
            json={"decisions": [{"tool_call_id": call["tool_call_id"], "action": "approve"}]},
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed" and "refunded order 7" in done.json()["reply"]
        assert REFUNDS == [7]
        items = (await api.client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
        assert [m["role"] for m in items] == ["user", "assistant", "tool", "assistant"]
        assert_valid_history(items)
        after = await api.client.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"})
        assert after.status_code == 200 and after.json()["reply"] == "You said: hi"

    async def test_sse_pause_and_resume(self, api: Api) -> None:
        """SSE: approval_required then done (awaiting_approval); the resume streams to done."""
        sid = uid()
        events = await sse_post(
            api, f"/v1/sessions/{sid}/messages", {"content": REFUND_7, "agent_id": api.agent}
        )
        kinds = [kind for kind, _ in events]
        assert "error" not in kinds
        assert kinds.index("approval_required") < kinds.index("done") == len(kinds) - 1
        [pending] = events[kinds.index("approval_required")][1]["pending"]
        assert pending["name"] == "refund" and pending["args"] == {"order_id": 7}
        done = events[-1][1]
        assert done["status"] == "awaiting_approval" and done["pending_approvals"] == [pending]
        assert REFUNDS == []

        resumed = await sse_post(
            api,
            f"/v1/sessions/{sid}/resume",
            {"decisions": [{"tool_call_id": pending["tool_call_id"], "action": "approve"}]},
        )
        kinds = [kind for kind, _ in resumed]
        assert "error" not in kinds and "approval_required" not in kinds
        results = [data for kind, data in resumed if kind == "tool_result"]
        assert [r["content"] for r in results] == ["refunded order 7"]
        final = resumed[-1]
        assert final[0] == "done" and final[1]["status"] == "completed"
        tokens = "".join(data["content"] for kind, data in resumed if kind == "token")
        assert tokens == final[1]["reply"] and "refunded order 7" in tokens
        assert REFUNDS == [7]

    async def test_websocket_pause_and_resume(self, api: Api) -> None:
        """WebSocket: message → approval_required + done; a resume frame → done completed."""
        sid = uid()
        ws_base = api.url.replace("http://", "ws://", 1)
        async with connect(f"{ws_base}/v1/sessions/{sid}/ws?agent_id={api.agent}") as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
            assert hello["type"] == "session"
            await ws.send(json.dumps({"type": "message", "content": REFUND_7}))
            frames = await frames_until_done(ws)
            kinds = [f["type"] for f in frames]
            assert "approval_required" in kinds and kinds[-1] == "done"
            [pending] = frames[kinds.index("approval_required")]["data"]["pending"]
            assert frames[-1]["data"]["status"] == "awaiting_approval"

            await ws.send(json.dumps({"type": "message", "content": "hello?"}))
            [refused] = await frames_until_done(ws)
            assert refused["type"] == "error"
            assert refused["data"]["error"] == "awaiting_approval"

            decision = {"tool_call_id": pending["tool_call_id"], "action": "approve"}
            await ws.send(json.dumps({"type": "resume", "decisions": [decision]}))
            frames = await frames_until_done(ws)
            kinds = [f["type"] for f in frames]
            assert kinds[-1] == "done" and frames[-1]["data"]["status"] == "completed"
            assert "tool_result" in kinds and "refunded order 7" in frames[-1]["data"]["reply"]
        assert REFUNDS == [7]


class TestTwoCalls:
    async def test_approve_one_reject_the_other(self, rt: Runtime, agent: str) -> None:
        """Two pending calls need two decisions; approve one and reject the other in one resume."""
        sid = uid()
        await rt.session(sid, agent_id=agent)
        paused = await rt.chat(sid, TWO_REFUNDS)
        assert paused.status == "awaiting_approval"
        first, second = paused.pending_approvals
        assert [first["args"], second["args"]] == [{"order_id": 7}, {"order_id": 9}]

        with pytest.raises(InvalidInput):  # one decision is missing
            await rt.resume(sid, [{"tool_call_id": first["tool_call_id"], "action": "approve"}])
        assert (await rt.sessions.get("local", sid)).awaiting_approval and REFUNDS == []

        done = await rt.resume(
            sid,
            [
                {"tool_call_id": first["tool_call_id"], "action": "approve"},
                {"tool_call_id": second["tool_call_id"], "action": "reject", "reason": "dup"},
            ],
        )
        assert done.status == "completed"
        assert REFUNDS == [7]
        history = await rt.history(sid)
        assert [m["role"] for m in history] == ["user", "assistant", "tool", "tool", "assistant"]
        results = {m["tool_call_id"]: m for m in history if m["role"] == "tool"}
        assert results[first["tool_call_id"]]["content"] == "refunded order 7"
        rejected = results[second["tool_call_id"]]
        assert rejected["status"] == "error" and "rejected" in rejected["content"]
        assert "dup" in rejected["content"]
        assert "refunded order 7" in done.reply and "rejected" in done.reply
        assert_valid_history(history)


class TestRestart:
    async def test_approval_survives_a_restart(self, settings: Settings) -> None:
        """A turn paused in one runtime is approved and completed by a new one."""
        sid = uid()
        async with Runtime.open(settings, tools=make_registry()) as first:
            template = await first.templates.create(
                TemplateSpec(name="refunds", tools=["refund", "calculator"]), owner="local"
            )
            sid, call = await paused_session(first, template.agent_id)
        assert REFUNDS == []
        async with Runtime.open(settings, tools=make_registry()) as second:
            session = await second.sessions.get("local", sid)
            assert session.awaiting_approval and session.pending_approvals == [call]
            with pytest.raises(AwaitingApproval):
                await second.chat(sid, "hello")
            done = await second.resume(
                sid, [{"tool_call_id": call["tool_call_id"], "action": "approve"}]
            )
            assert done.status == "completed" and "refunded order 7" in done.reply
            assert REFUNDS == [7]
            history = await second.history(sid)
            assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
            assert_valid_history(history)
