"""LangGraph Studio's request sequence, replayed as raw HTTP against the real app.

Studio opens a deployment, picks the graph's system assistant, draws its graph, lists and
opens a thread, reads its history and state, runs it with several stream modes, lists its
runs, edits the state and re-runs from a checkpoint. It sends its JSON bodies as
``text/plain``. Every request here must answer 2xx: a 4xx or 5xx is what breaks Studio.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from runtime import Settings
from tests.support.checks import read_sse

STUDIO_HEADERS = {"Content-Type": "text/plain;charset=UTF-8"}
STREAM_MODES = ["values", "messages-tuple", "updates", "debug", "custom"]


class Studio:
    """Sends requests the way Studio does and records every status it gets."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.seen: list[tuple[str, str, int]] = []

    def _record(self, method: str, path: str, response: httpx.Response) -> None:
        self.seen.append((method, path, response.status_code))
        assert response.status_code < 400, f"{method} {path}: {response.text}"

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        self._record("GET", path, response)
        return response.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.http.post(path, content=json.dumps(body), headers=STUDIO_HEADERS)
        self._record("POST", path, response)
        return response.json()

    async def stream(self, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
        async with self.http.stream(
            "POST", path, content=json.dumps(body), headers=STUDIO_HEADERS
        ) as response:
            self._record("POST", path, response)
            return await read_sse(response)


def run_body(assistant_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "assistant_id": assistant_id,
        "config": {"configurable": {}},
        "metadata": {},
        "stream_mode": STREAM_MODES,
        "stream_subgraphs": True,
        "stream_resumable": True,
        "on_disconnect": "continue",
        "multitask_strategy": "reject",
        **extra,
    }


def run_events(events: list[tuple[str, Any]]) -> list[str]:
    names = [name.split("|")[0] for name, _ in events]
    assert "error" not in names, events
    assert names[0] == "metadata", names
    assert events[0][1]["run_id"]
    assert "values" in names and "updates" in names, names
    return names


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server as the README sets it up for Studio: a checkpoint per graph step, all kept."""
    return settings.model_copy(update={"checkpoint_durability": "async", "checkpoints_kept": 0})


class TestStudioSequence:
    async def test_open_run_edit_and_rerun_from_a_checkpoint(self, http: httpx.AsyncClient) -> None:
        studio = Studio(http)
        info = await studio.get("/info")
        assert info["flags"]["assistants"] is True

        assistants = await studio.post(
            "/assistants/search",
            {"graph_id": "react", "metadata": {"created_by": "system"}, "limit": 100, "offset": 0},
        )
        (assistant,) = assistants
        aid = assistant["assistant_id"]
        await studio.get(
            f"/assistants/{aid}",
        )
        drawing = await studio.get(f"/assistants/{aid}/graph", xray="true")
        assert any(n["id"] == "agent" for n in drawing["nodes"])
        await studio.get(f"/assistants/{aid}/graph", xray="1")
        await studio.get(f"/assistants/{aid}/schemas")
        assert await studio.get(f"/assistants/{aid}/subgraphs", recurse="true") == {}
        await studio.post(f"/assistants/{aid}/versions", {"limit": 10, "offset": 0})

        await studio.post(
            "/threads/search",
            {
                "limit": 10,
                "offset": 0,
                "metadata": {"graph_id": "react"},
                "sort_by": "updated_at",
                "sort_order": "desc",
            },
        )
        thread = await studio.post("/threads", {"metadata": {"graph_id": "react"}})
        tid = thread["thread_id"]
        await studio.get(f"/threads/{tid}")
        assert await studio.post(f"/threads/{tid}/history", {"limit": 1000}) == []
        await studio.get(f"/threads/{tid}/state")

        events = await studio.stream(
            f"/threads/{tid}/runs/stream",
            run_body(aid, input={"messages": [{"type": "human", "content": "what is 6 * 7?"}]}),
        )
        run_events(events)
        final = [data for name, data in events if name == "values"][-1]
        assert final["messages"][-1]["content"] == "The result is 42."

        runs = await studio.get(f"/threads/{tid}/runs", limit=10, offset=0)
        assert runs and runs[0]["status"] == "success"
        thread = await studio.get(f"/threads/{tid}")
        assert thread["status"] == "idle"
        history = await studio.post(
            f"/threads/{tid}/history", {"limit": 1000, "before": None, "checkpoint": {}}
        )
        state = await studio.get(f"/threads/{tid}/state")
        assert history[0]["checkpoint"] == state["checkpoint"]
        assert state["values"]["messages"] == final["messages"]
        await studio.get(f"/threads/{tid}/state/{state['checkpoint']['checkpoint_id']}")

        # Edit the state at the checkpoint where the model first ran, then re-run from it.
        first_model_step = next(
            h for h in reversed(history) if h["next"] == ["agent"] and h["values"]
        )
        edited = await studio.post(
            f"/threads/{tid}/state",
            {
                "values": {"messages": [{"type": "human", "content": "what is 2 + 3?"}]},
                "checkpoint": first_model_step["checkpoint"],
                "as_node": "__start__",
            },
        )
        events = await studio.stream(
            f"/threads/{tid}/runs/stream",
            run_body(aid, input=None, checkpoint=edited["checkpoint"]),
        )
        run_events(events)
        state = await studio.get(f"/threads/{tid}/state")
        assert state["values"]["messages"][-1]["content"] == "The result is 5."

        # Re-run from a checkpoint in history as it is (Studio's "re-run from here").
        history = await studio.post(f"/threads/{tid}/history", {"limit": 100})
        again = next(h for h in reversed(history) if h["next"] == ["agent"] and h["values"])
        events = await studio.stream(
            f"/threads/{tid}/runs/stream",
            run_body(aid, input=None, checkpoint_id=again["checkpoint"]["checkpoint_id"]),
        )
        run_events(events)
        await studio.post(f"/threads/{tid}/history", {"limit": 10, "before": again["checkpoint"]})
        await studio.post(f"/threads/{tid}/state/checkpoint", {"checkpoint": again["checkpoint"]})
        await studio.post(
            "/threads/search", {"limit": 10, "offset": 0, "metadata": {"graph_id": "react"}}
        )
        assert all(status < 400 for _, _, status in studio.seen)
