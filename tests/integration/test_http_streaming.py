"""Streamed turns over real connections: Server-Sent Events, WebSockets, and concurrency."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any
from uuid import uuid4

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.checks import read_sse, turn_running

# Run a second time through pgbouncer in transaction mode (tests/conftest.py).
BEHIND_PGBOUNCER = True

SSE = {"Accept": "text/event-stream"}
SLOW_MODEL = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 1.0}}
SLOWER_MODEL = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 3.0}}


def uid(prefix: str = "s") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


async def sse_turn(
    http: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    async with http.stream("POST", url, json=body, headers=SSE) as response:
        events = await read_sse(response)
    return response, events


def tokens(events: list[tuple[str, Any]]) -> str:
    return "".join(data["content"] for kind, data in events if kind == "token")


async def slow_agent(http: httpx.AsyncClient, **extra: Any) -> str:
    agent_id = uid("slow")
    response = await http.post(
        "/v1/agents", json={"id": agent_id, "name": "slow", "model": SLOW_MODEL, **extra}
    )
    assert response.status_code == 201, response.text
    return agent_id


async def messages_of(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/sessions/{session_id}/messages")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_for_messages(
    http: httpx.AsyncClient, session_id: str, count: int, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """The session's messages once there are ``count`` (or the deadline passed). A turn whose
    client left before its first event may not have created its session yet: a 404 is
    waited out like a short history, and asserted on only at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        late = time.monotonic() > deadline
        response = await http.get(f"/v1/sessions/{session_id}/messages")
        if response.status_code != 404 or late:
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            if len(items) >= count or late:
                return items
        await asyncio.sleep(0.1)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def ws_url(server_url: str, path: str) -> str:
    return server_url.replace("http://", "ws://", 1) + path


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
    return frame


async def ws_turn(ws: ClientConnection, content: str) -> list[dict[str, Any]]:
    """Send a message and collect frames up to and including ``done`` or ``error``."""
    await ws.send(json.dumps({"type": "message", "content": content}))
    frames: list[dict[str, Any]] = []
    while True:
        frame = await recv(ws)
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return frames


class TestSSE:
    async def test_tokens_concatenate_to_reply(self, http: httpx.AsyncClient) -> None:
        """A streamed turn's tokens join into the done reply and the assistant message."""
        sid = uid()
        response, events = await sse_turn(
            http, f"/v1/sessions/{sid}/messages", {"content": "hello there", "agent_id": "default"}
        )
        assert response.status_code == 200
        kinds = [kind for kind, _ in events]
        assert kinds.count("done") == 1 and "error" not in kinds
        done = events[-1][1]
        assert done["reply"] == "You said: hello there"
        assert tokens(events) == done["reply"]
        assert done["session_id"] == sid
        assistant = [m for m in done["messages"] if m["role"] == "assistant"]
        assert assistant and assistant[-1]["content"] == tokens(events)
        stored = await messages_of(http, sid)
        assert [m["role"] for m in stored] == ["user", "assistant"]
        assert stored[-1]["content"] == tokens(events)

    async def test_event_order_ends_with_usage_then_done(self, http: httpx.AsyncClient) -> None:
        """The last two events are usage then done; usage matches the done result's usage."""
        sid = uid()
        _, events = await sse_turn(
            http, f"/v1/sessions/{sid}/messages", {"content": "order please", "agent_id": "default"}
        )
        kinds = [kind for kind, _ in events]
        assert kinds[-2:] == ["usage", "done"]
        assert kinds.index("token") < kinds.index("usage")
        assert events[-2][1] == events[-1][1]["usage"]
        assert events[-2][1]["total_tokens"] > 0
        message_events = [data for kind, data in events if kind == "message"]
        assert message_events and message_events[-1]["role"] == "assistant"

    async def test_content_type_is_event_stream(self, http: httpx.AsyncClient) -> None:
        """The streamed response is served as text/event-stream."""
        sid = uid()
        async with http.stream(
            "POST",
            f"/v1/sessions/{sid}/messages",
            json={"content": "content type", "agent_id": "default"},
            headers=SSE,
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            await read_sse(response)

    async def test_tool_call_then_result_before_final_tokens(self, http: httpx.AsyncClient) -> None:
        """A calculator turn streams tool_call, then tool_result "5", then the reply tokens."""
        sid = uid()
        _, events = await sse_turn(
            http, f"/v1/sessions/{sid}/messages", {"content": "what is 2+3?", "agent_id": "default"}
        )
        kinds = [kind for kind, _ in events]
        call_at = kinds.index("tool_call")
        result_at = kinds.index("tool_result")
        token_at = [i for i, kind in enumerate(kinds) if kind == "token"]
        assert call_at < result_at
        assert token_at and min(token_at) > result_at
        call = events[call_at][1]
        result = events[result_at][1]
        assert call["name"] == "calculator"
        assert result["role"] == "tool" and result["content"] == "5"
        assert result["tool_call_id"] == call["id"]
        assert tokens(events) == events[-1][1]["reply"] == "The result is 5."

    async def test_unknown_session_is_json_404(self, http: httpx.AsyncClient) -> None:
        """A streamed turn on an unknown session answers a plain JSON 404, not a stream."""
        async with http.stream(
            "POST", f"/v1/sessions/{uid('nope')}/messages", json={"content": "hi"}, headers=SSE
        ) as response:
            await response.aread()
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"] == "not_found"

    async def test_inactive_session_is_json_409(self, http: httpx.AsyncClient) -> None:
        """A streamed turn on an inactive session answers a plain JSON 409 session_inactive."""
        sid = uid()
        assert (await http.put(f"/v1/sessions/{sid}", json={})).status_code == 201
        assert (await http.post(f"/v1/sessions/{sid}/deactivate")).status_code == 200
        async with http.stream(
            "POST", f"/v1/sessions/{sid}/messages", json={"content": "hi"}, headers=SSE
        ) as response:
            await response.aread()
        assert response.status_code == 409
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"] == "session_inactive"
        assert await messages_of(http, sid) == []

    async def test_agent_chat_streams(self, http: httpx.AsyncClient) -> None:
        """POST /v1/agents/default/chat streams too, in a new ses_ session."""
        response, events = await sse_turn(
            http, "/v1/agents/default/chat", {"content": "stream from agent"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind, done = events[-1]
        assert kind == "done"
        assert done["reply"] == "You said: stream from agent" == tokens(events)
        assert done["session_id"].startswith("ses_")
        assert len(await messages_of(http, done["session_id"])) == 2

    async def test_too_large_message_is_json_413(self, http: httpx.AsyncClient) -> None:
        """A streamed turn with an over-long message answers a plain JSON 413."""
        sid = uid()
        async with http.stream(
            "POST",
            f"/v1/sessions/{sid}/messages",
            json={"content": "x" * 32_001, "agent_id": "default"},
            headers=SSE,
        ) as response:
            await response.aread()
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"] == "payload_too_large"

    async def test_unknown_agent_chat_is_json_404(self, http: httpx.AsyncClient) -> None:
        """A streamed chat with an unknown agent answers a plain JSON 404."""
        async with http.stream(
            "POST", f"/v1/agents/{uid('ghost')}/chat", json={"content": "hi"}, headers=SSE
        ) as response:
            await response.aread()
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"] == "not_found"

    async def test_failing_turn_ends_with_error_event(self, http: httpx.AsyncClient) -> None:
        """A turn whose model fails ends its stream with an error event and is rolled back."""
        agent_id = uid("flaky")
        created = await http.post("/v1/agents", json={"id": agent_id, "name": "flaky"})
        assert created.status_code == 201, created.text
        sid = uid()
        url = f"/v1/sessions/{sid}/messages"
        ok = await http.post(url, json={"content": "before", "agent_id": agent_id})
        assert ok.status_code == 200, ok.text
        dead = {"base_url": f"http://127.0.0.1:{closed_port()}/v1", "max_retries": 0, "timeout": 5}
        patched = await http.patch(
            f"/v1/agents/{agent_id}",
            json={"model": {"provider": "openai", "name": "gpt-test", "params": dead}},
        )
        assert patched.status_code == 200, patched.text
        response, events = await sse_turn(http, url, {"content": "during"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kinds = [kind for kind, _ in events]
        assert kinds[-1] == "error" and "done" not in kinds and "usage" not in kinds
        assert events[-1][1]["error"] == "model_unavailable"
        assert set(events[-1][1]) == {"error", "message", "details"}
        assert [m["content"] for m in await messages_of(http, sid)] == [
            "before",
            "You said: before",
        ]
        assert (await http.get(f"/v1/sessions/{sid}")).json()["turns"] == 1
        restored = await http.patch(
            f"/v1/agents/{agent_id}", json={"model": {"provider": "offline"}}
        )
        assert restored.status_code == 200, restored.text
        after = await http.post(url, json={"content": "after"})
        assert after.status_code == 200, after.text  # the lease was released
        assert len(await messages_of(http, sid)) == 4


class TestClientDisconnect:
    async def test_disconnect_after_headers_completes_turn(self, http: httpx.AsyncClient) -> None:
        """A client leaving mid-stream leaves a complete turn and a free lease."""
        agent_id = await slow_agent(http)
        sid = uid()
        async with http.stream(
            "POST",
            f"/v1/sessions/{sid}/messages",
            json={"content": "leaving early", "agent_id": agent_id},
            headers=SSE,
        ) as response:
            assert response.status_code == 200
        items = await wait_for_messages(http, sid, 2)
        assert [m["role"] for m in items] == ["user", "assistant"]
        assert items[1]["content"] == "You said: leaving early"
        follow_up = await http.post(f"/v1/sessions/{sid}/messages", json={"content": "again"})
        assert follow_up.status_code == 200, follow_up.text
        assert follow_up.json()["reply"] == "You said: again"
        assert len(await messages_of(http, sid)) == 4

    async def test_disconnect_before_headers_completes_turn(self, http: httpx.AsyncClient) -> None:
        """A client leaving before the first event arrives still gets a complete turn."""
        agent_id = await slow_agent(http)
        sid = uid()

        async def request() -> None:
            async with http.stream(
                "POST",
                f"/v1/sessions/{sid}/messages",
                json={"content": "never mind", "agent_id": agent_id},
                headers=SSE,
            ) as response:
                await response.aread()

        task = asyncio.create_task(request())
        await asyncio.sleep(0.3)
        assert not task.done()  # the model is still thinking: no headers yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        items = await wait_for_messages(http, sid, 2)
        assert [m["content"] for m in items] == ["never mind", "You said: never mind"]
        follow_up = await http.post(f"/v1/sessions/{sid}/messages", json={"content": "still ok"})
        assert follow_up.status_code == 200, follow_up.text
        assert len(await messages_of(http, sid)) == 4

    async def test_disconnect_between_model_calls_completes_turn(
        self, http: httpx.AsyncClient
    ) -> None:
        """Leaving after the tool call, before the second model call, still completes the turn."""
        # Slower than SLOW_MODEL: the second model call must still run when the history is
        # read after the client left, however slowly a loaded machine gets there.
        agent_id = await slow_agent(http, tools=["calculator"], model=SLOWER_MODEL)
        sid = uid()
        async with http.stream(
            "POST",
            f"/v1/sessions/{sid}/messages",
            json={"content": "what is 2+3?", "agent_id": agent_id},
            headers=SSE,
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("event:") and line != "event: turn":  # turn: its id
                    assert line.split(":", 1)[1].strip() == "tool_call"
                    break
        assert await messages_of(http, sid) == []  # the turn is still in flight: nothing shown
        items = await wait_for_messages(http, sid, 4)
        assert [m["role"] for m in items] == ["user", "assistant", "tool", "assistant"]
        assert items[-1]["content"] == "The result is 5."
        session = (await http.get(f"/v1/sessions/{sid}")).json()
        assert session["turns"] == 1 and session["messages"] == 4


class TestWebSocket:
    async def test_multi_turn_conversation(self, server_url: str) -> None:
        """One connection holds several turns; the second remembers the first."""
        sid = uid()
        async with connect(ws_url(server_url, f"/v1/sessions/{sid}/ws?agent_id=default")) as ws:
            first = await recv(ws)
            assert first["type"] == "session" and first["data"]["id"] == sid
            turn1 = await ws_turn(ws, "my name is Alice")
            assert turn1[-1]["type"] == "done"
            reply1 = turn1[-1]["data"]["reply"]
            assert "Alice" in reply1
            assert "".join(f["data"]["content"] for f in turn1 if f["type"] == "token") == reply1
            turn2 = await ws_turn(ws, "what is my name?")
            assert turn2[-1]["type"] == "done"
            reply2 = turn2[-1]["data"]["reply"]
            assert "Alice" in reply2
            assert "".join(f["data"]["content"] for f in turn2 if f["type"] == "token") == reply2
            assert [f["type"] for f in turn2][-2:] == ["usage", "done"]

    async def test_ping_pong(self, server_url: str) -> None:
        """A ping frame answers a pong frame."""
        async with connect(ws_url(server_url, f"/v1/sessions/{uid()}/ws?agent_id=default")) as ws:
            assert (await recv(ws))["type"] == "session"
            await ws.send(json.dumps({"type": "ping"}))
            assert (await recv(ws))["type"] == "pong"

    async def test_bad_frame_is_error_and_connection_stays(self, server_url: str) -> None:
        """A non-JSON frame answers an invalid_input error frame; the next turn still works."""
        async with connect(ws_url(server_url, f"/v1/sessions/{uid()}/ws?agent_id=default")) as ws:
            assert (await recv(ws))["type"] == "session"
            await ws.send("not json")
            error = await recv(ws)
            assert error["type"] == "error"
            assert error["data"]["error"] == "invalid_input"
            frames = await ws_turn(ws, "still here")
            assert frames[-1]["type"] == "done"
            assert frames[-1]["data"]["reply"] == "You said: still here"

    async def test_new_session_socket(self, server_url: str, http: httpx.AsyncClient) -> None:
        """/v1/ws opens a new ses_ session that exists afterwards."""
        async with connect(ws_url(server_url, "/v1/ws?agent_id=default")) as ws:
            first = await recv(ws)
            assert first["type"] == "session"
            sid = first["data"]["id"]
            assert sid.startswith("ses_")
            assert first["data"]["agent_id"] == "default"
            frames = await ws_turn(ws, "hi socket")
            assert frames[-1]["type"] == "done"
        response = await http.get(f"/v1/sessions/{sid}")
        assert response.status_code == 200
        assert response.json()["id"] == sid and response.json()["turns"] == 1

    async def test_unknown_session_closes_4404(self, server_url: str) -> None:
        """Without agent_id an unknown session answers an error frame, then closes 4404."""
        async with connect(ws_url(server_url, "/v1/sessions/unknown-x/ws")) as ws:
            frame = await recv(ws)
            assert frame["type"] == "error"
            assert frame["data"]["error"] == "not_found"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404

    async def test_inactive_session_error_frame_keeps_connection(
        self, server_url: str, http: httpx.AsyncClient
    ) -> None:
        """A turn refused as inactive answers an error frame; the socket stays open."""
        sid = uid()
        async with connect(ws_url(server_url, f"/v1/sessions/{sid}/ws?agent_id=default")) as ws:
            assert (await recv(ws))["type"] == "session"
            assert (await http.post(f"/v1/sessions/{sid}/deactivate")).status_code == 200
            frames = await ws_turn(ws, "anyone there?")
            assert [f["type"] for f in frames] == ["error"]
            assert frames[0]["data"]["error"] == "session_inactive"
            assert (await http.post(f"/v1/sessions/{sid}/activate")).status_code == 200
            frames = await ws_turn(ws, "back again")
            assert frames[-1]["type"] == "done"
            assert frames[-1]["data"]["reply"] == "You said: back again"

    async def test_disconnect_mid_turn_completes_turn(
        self, server_url: str, http: httpx.AsyncClient
    ) -> None:
        """Closing the socket mid-turn leaves the turn complete and the session free."""
        agent_id = await slow_agent(http)
        sid = uid()
        async with connect(ws_url(server_url, f"/v1/sessions/{sid}/ws?agent_id={agent_id}")) as ws:
            assert (await recv(ws))["type"] == "session"
            await ws.send(json.dumps({"type": "message", "content": "gone soon"}))
            await turn_running(http, sid)  # mid-turn: the turn holds its lease
        items = await wait_for_messages(http, sid, 2)
        assert [m["role"] for m in items] == ["user", "assistant"]
        assert items[1]["content"] == "You said: gone soon"
        follow_up = await http.post(f"/v1/sessions/{sid}/messages", json={"content": "next"})
        assert follow_up.status_code == 200, follow_up.text
        assert len(await messages_of(http, sid)) == 4

    async def test_invalid_session_id_closes(self, server_url: str) -> None:
        """A session id outside the id pattern answers an error frame, then a 44xx close."""
        async with connect(ws_url(server_url, "/v1/sessions/-bad/ws?agent_id=default")) as ws:
            frame = await recv(ws)
            assert frame["type"] == "error"
            assert frame["data"]["error"] == "invalid_input"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


class TestConcurrency:
    async def test_concurrent_posts_one_busy(self, http: httpx.AsyncClient) -> None:
        """Two concurrent turns on one session: one 200, one 409 session_busy, 2 messages."""
        agent_id = await slow_agent(http)
        sid = uid()
        assert (
            await http.put(f"/v1/sessions/{sid}", json={"agent_id": agent_id})
        ).status_code == 201
        url = f"/v1/sessions/{sid}/messages"
        first, second = await asyncio.gather(
            http.post(url, json={"content": "one"}), http.post(url, json={"content": "two"})
        )
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 409], (first.text, second.text)
        busy = first if first.status_code == 409 else second
        assert busy.json()["error"] == "session_busy"
        assert len(await messages_of(http, sid)) == 2

    async def test_stream_while_busy_is_json_409(self, http: httpx.AsyncClient) -> None:
        """A streamed turn on a session with a turn in flight answers JSON 409 session_busy."""
        agent_id = await slow_agent(http)
        sid = uid()
        assert (
            await http.put(f"/v1/sessions/{sid}", json={"agent_id": agent_id})
        ).status_code == 201
        url = f"/v1/sessions/{sid}/messages"
        running = asyncio.create_task(http.post(url, json={"content": "first"}))
        try:
            await turn_running(http, sid)
            async with http.stream(
                "POST", url, json={"content": "second"}, headers=SSE
            ) as response:
                await response.aread()
            assert response.status_code == 409
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["error"] == "session_busy"
        finally:
            first = await running
        assert first.status_code == 200
        items = await messages_of(http, sid)
        assert [m["content"] for m in items] == ["first", "You said: first"]

    async def test_socket_turn_while_busy_is_error_frame(
        self, server_url: str, http: httpx.AsyncClient
    ) -> None:
        """A socket turn on a busy session answers session_busy; the socket stays usable."""
        agent_id = await slow_agent(http)
        sid = uid()
        assert (
            await http.put(f"/v1/sessions/{sid}", json={"agent_id": agent_id})
        ).status_code == 201
        async with connect(ws_url(server_url, f"/v1/sessions/{sid}/ws")) as ws:
            assert (await recv(ws))["type"] == "session"
            running = asyncio.create_task(
                http.post(f"/v1/sessions/{sid}/messages", json={"content": "http turn"})
            )
            try:
                await turn_running(http, sid)
                frames = await ws_turn(ws, "socket turn")
                assert [f["type"] for f in frames] == ["error"]
                assert frames[0]["data"]["error"] == "session_busy"
            finally:
                assert (await running).status_code == 200
            frames = await ws_turn(ws, "socket again")
            assert frames[-1]["type"] == "done"
        assert len(await messages_of(http, sid)) == 4
