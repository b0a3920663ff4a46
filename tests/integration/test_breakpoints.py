"""Static breakpoints on ``/v1``: an agent's ``interrupt_before`` / ``interrupt_after`` stop
every turn there; the turn answers ``interrupted`` with no interrupts, the session's state is
``interrupted``, and ``POST /resume`` with an empty body continues it (409 when it is not
stopped at one)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


async def breakpoint_agent(http: httpx.AsyncClient, **spec: Any) -> str:
    agent_id = uid("bp")
    body = {"id": agent_id, "name": "bp", "tools": ["calculator"], **spec}
    response = await http.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["interrupt_before"] == spec.get("interrupt_before", [])
    return agent_id


async def session(http: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestV1Breakpoints:
    async def test_a_turn_stops_and_an_empty_resume_continues(
        self, http: httpx.AsyncClient
    ) -> None:
        """The turn stops before the tool (interrupted, no interrupts); the session is
        interrupted; an empty resume runs the tool and the answer; then idle."""
        agent_id = await breakpoint_agent(http, interrupt_before=["tools"])
        sid = uid("s")
        first = await http.post(
            f"/v1/sessions/{sid}/messages", json={"content": "what is 6 * 7?", "agent_id": agent_id}
        )
        assert first.status_code == 200, first.text
        stopped = first.json()
        assert stopped["status"] == "interrupted" and stopped["interrupts"] == []
        assert stopped["messages"][-1]["tool_calls"][0]["name"] == "calculator"
        assert (await session(http, sid))["state"] == "interrupted"

        resumed = await http.post(f"/v1/sessions/{sid}/resume", json={})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "completed"
        assert resumed.json()["reply"] == "The result is 42."
        assert (await session(http, sid))["state"] == "idle"

        again = await http.post(f"/v1/sessions/{sid}/resume", json={})
        assert again.status_code == 409, again.text
        assert again.json()["error"] == "nothing_to_resume"

    async def test_a_streamed_turn_ends_with_an_interrupt_event(
        self, http: httpx.AsyncClient
    ) -> None:
        """Streamed, a turn stopped at a breakpoint sends interrupt (no interrupts), then
        done."""
        agent_id = await breakpoint_agent(http, interrupt_after=["agent"])
        sid = uid("s")
        response = await http.post(
            f"/v1/sessions/{sid}/messages",
            json={"content": "what is 6 * 7?", "agent_id": agent_id},
            headers={"Accept": "text/event-stream"},
        )
        assert response.status_code == 200, response.text
        names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
        assert names[-3:] == ["interrupt", "usage", "done"]
        assert 'data: {"interrupts":[]}' in response.text
        assert (await session(http, sid))["state"] == "interrupted"
