"""LangGraph Server API runs (wait, stream, background, join, cancel, multitask, resume),
driven by the real ``langgraph_sdk`` client against the real app over HTTP, on Postgres.

Agents are made over the native API: ``notes`` (``save_note`` needs approval, ``progress``
writes a custom stream event, ``calculator``), ``slow`` (the offline model waits before it
answers, so a run stays in flight while a test acts on it) and ``frugal`` (no tool calls
allowed). No test patches anything or asserts on timing: a slow run is ended by a cancel.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from langchain_core.tools import tool
from langgraph.config import get_stream_writer
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from api.app import create_app
from runtime import Runtime, Settings
from runtime.tools import ToolRegistry, ToolSpec, default_registry
from tests.support.checks import read_sse
from tests.support.server import running_server

# Run a second time through pgbouncer in transaction mode (tests/conftest.py).
BEHIND_PGBOUNCER = True

SAVE_HI = 'use tool save_note with {"text": "hi"}'
SLOW_SECONDS = 60  # the slow agent's model delay: runs on it end by a cancel


@tool
def progress(step: int) -> str:
    """Report progress on a long task."""
    get_stream_writer()({"progress": step})
    return f"at step {step}"


def make_registry() -> ToolRegistry:
    registry = default_registry()
    registry.register(ToolSpec(progress))
    return registry


@dataclass
class Api:
    url: str
    http: httpx.AsyncClient
    client: LangGraphClient
    notes: str  # agent ids
    slow: str
    frugal: str

    async def thread(self, assistant_id: str = "react") -> str:
        thread = await self.client.threads.create(metadata={"assistant_id": assistant_id})
        return str(thread["thread_id"])


async def make_agent(http: httpx.AsyncClient, **spec: Any) -> str:
    response = await http.post("/v1/agents", json=spec)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with (
        running_server(create_app(settings, tools=make_registry())) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        notes = await make_agent(
            http,
            name="notes",
            tools=["save_note", "read_notes", "progress", "calculator"],
            require_approval=["save_note"],
        )
        slow = await make_agent(
            http,
            name="slow",
            model={"provider": "offline", "params": {"delay_seconds": SLOW_SECONDS}},
        )
        frugal = await make_agent(
            http, name="frugal", tools=["calculator"], budgets={"max_tool_calls": 0}
        )
        yield Api(url, http, get_client(url=url), notes, slow, frugal)


@contextlib.contextmanager
def http_error(status: int) -> Iterator[None]:
    """The block fails with this HTTP status (``runs.wait`` raises ``httpx.HTTPStatusError``;
    other SDK calls raise its typed subclasses, e.g. ``ConflictError`` for 409)."""
    with pytest.raises(httpx.HTTPStatusError) as caught:
        yield
    assert caught.value.response.status_code == status, caught.value


def user(content: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def texts(values: dict[str, Any]) -> list[str]:
    return [m["content"] for m in values["messages"]]


async def stream(api: Api, thread_id: str | None, content: str, modes: Any) -> list[Any]:
    return [
        part
        async for part in api.client.runs.stream(
            thread_id, "react", input=user(content), stream_mode=modes
        )
    ]


class TestWait:
    async def test_wait_returns_the_thread_values(self, api: Api) -> None:
        thread_id = await api.thread()
        values = await api.client.runs.wait(thread_id, "react", input=user("my name is Ada"))
        assert texts(values) == ["my name is Ada", "Nice to meet you, Ada."]
        assert [m["type"] for m in values["messages"]] == ["human", "ai"]
        values = await api.client.runs.wait(thread_id, "react", input=user("what is my name?"))
        assert texts(values)[-1] == "Your name is Ada."
        state = await api.client.threads.get_state(thread_id)
        assert state["values"]["messages"] == values["messages"]

    async def test_the_run_is_a_native_turn(self, api: Api) -> None:
        thread_id = await api.thread()
        await api.client.runs.wait(thread_id, "react", input=user("what is 6 * 7?"))
        response = await api.http.get(f"/v1/sessions/{thread_id}/messages")
        native = [(m["role"], m["content"]) for m in response.json()["items"]]
        assert native == [
            ("user", "what is 6 * 7?"),
            ("assistant", ""),
            ("tool", "42"),
            ("assistant", "The result is 42."),
        ]

    async def test_stateless_wait_leaves_no_thread(self, api: Api) -> None:
        values = await api.client.runs.wait(None, "react", input=user("hello there"))
        assert texts(values) == ["hello there", "You said: hello there"]
        threads = await api.client.threads.search(limit=100)
        assert all(
            t["values"].get("messages", [{}])[0].get("content") != "hello there" for t in threads
        )

    async def test_if_not_exists_create_makes_the_thread(self, api: Api) -> None:
        thread_id = str(uuid.uuid4())
        with http_error(404):
            await api.client.runs.wait(thread_id, "react", input=user("hi"))
        values = await api.client.runs.wait(
            thread_id, "react", input=user("hi"), if_not_exists="create"
        )
        assert texts(values) == ["hi", "You said: hi"]
        assert (await api.client.threads.get(thread_id))["status"] == "idle"

    async def test_first_run_binds_the_thread_to_its_assistant(self, api: Api) -> None:
        thread_id = await api.thread()  # the default agent, no messages yet
        await api.client.runs.wait(thread_id, api.frugal, input=user("hello"))
        thread = await api.client.threads.get(thread_id)
        assert thread["metadata"]["assistant_id"] == api.frugal
        with http_error(409):
            await api.client.runs.wait(thread_id, api.notes, input=user("hello again"))

    async def test_metadata_lands_on_the_run_and_its_checkpoints(self, api: Api) -> None:
        thread_id = await api.thread()
        await api.client.runs.wait(
            thread_id, "react", input=user("hello"), metadata={"client": "sdk-test"}
        )
        [run] = await api.client.runs.list(thread_id)
        assert run["metadata"] == {"client": "sdk-test"}
        assert run["status"] == "success"
        history = await api.client.threads.get_history(thread_id, limit=1)
        assert history[0]["metadata"]["client"] == "sdk-test"


class TestStreamModes:
    async def test_metadata_first_with_the_run_id_then_end(self, api: Api) -> None:
        thread_id = await api.thread()
        parts = await stream(api, thread_id, "hello", "values")
        assert parts[0].event == "metadata"
        assert parts[0].data["attempt"] == 1
        assert parts[-1].event == "end"
        [run] = await api.client.runs.list(thread_id)
        assert run["run_id"] == parts[0].data["run_id"]
        assert run["status"] == "success"

    async def test_values_are_the_full_state_after_each_step(self, api: Api) -> None:
        thread_id = await api.thread()
        await api.client.runs.wait(thread_id, "react", input=user("first"))
        parts = await stream(api, thread_id, "what is 2 + 3?", "values")
        values = [p.data for p in parts if p.event == "values"]
        counts = [len(v["messages"]) for v in values]
        assert counts == sorted(counts) and counts[0] == 3 and counts[-1] == 6
        assert texts(values[-1])[:2] == ["first", "You said: first"]
        assert texts(values[-1])[-1] == "The result is 5."
        assert {"notes"} <= set(values[-1])

    async def test_updates_are_keyed_by_node(self, api: Api) -> None:
        thread_id = await api.thread()
        parts = await stream(api, thread_id, "what is 2 + 3?", "updates")
        updates = [p.data for p in parts if p.event == "updates"]
        assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent"]
        assert updates[0]["agent"]["messages"][0]["tool_calls"][0]["name"] == "calculator"
        assert updates[1]["tools"]["messages"][0]["content"] == "5"
        assert updates[2]["agent"]["messages"][0]["content"] == "The result is 5."

    async def test_messages_tuple_streams_tokens_with_metadata(self, api: Api) -> None:
        thread_id = await api.thread()
        parts = await stream(api, thread_id, "hello world", "messages-tuple")
        pairs = [p.data for p in parts if p.event == "messages"]
        assert pairs and all(len(pair) == 2 for pair in pairs)
        chunks = [c for c, meta in pairs if meta["langgraph_node"] == "agent"]
        assert "".join(c["content"] for c in chunks) == "You said: hello world"
        assert {c["type"] for c in chunks} == {"AIMessageChunk"}
        # The public thread id, never the checkpointer's internal one.
        assert {meta["thread_id"] for _, meta in pairs} == {thread_id}

    async def test_messages_mode_sends_metadata_then_partials(self, api: Api) -> None:
        thread_id = await api.thread()
        parts = await stream(api, thread_id, "hello world", "messages")
        events = [p.event for p in parts if p.event.startswith("messages/")]
        assert events[0] == "messages/metadata"
        partials = [p.data[0] for p in parts if p.event == "messages/partial"]
        contents = [m["content"] for m in partials]
        assert contents[-1] == "You said: hello world"
        assert all(contents[-1].startswith(c) for c in contents)  # accumulated

    async def test_debug_has_checkpoints_and_tasks_and_no_internals(self, api: Api) -> None:
        thread_id = await api.thread()
        parts = await stream(api, thread_id, "what is 2 + 3?", "debug")
        debug = [p.data for p in parts if p.event == "debug"]
        kinds = {d["type"] for d in debug}
        assert {"checkpoint", "task", "task_result"} <= kinds
        checkpoints = [d["payload"] for d in debug if d["type"] == "checkpoint"]
        assert all(c["checkpoint"]["thread_id"] == thread_id for c in checkpoints)
        state = await api.client.threads.get_state(thread_id)
        assert (
            checkpoints[-1]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
        )
        tasks = [d["payload"]["name"] for d in debug if d["type"] == "task"]
        assert tasks == ["agent", "tools", "agent"]
        raw = json.dumps(debug)
        assert "guard" not in raw and "TurnGuard" not in raw

    async def test_custom_events_from_a_tool(self, api: Api) -> None:
        thread_id = await api.thread(api.notes)
        parts = [
            part
            async for part in api.client.runs.stream(
                thread_id,
                api.notes,
                input=user('use tool progress with {"step": 3}'),
                stream_mode=["custom", "values"],
            )
        ]
        assert [p.data for p in parts if p.event == "custom"] == [{"progress": 3}]
        final = [p.data for p in parts if p.event == "values"][-1]
        assert texts(final)[-1] == "progress returned: at step 3."

    async def test_several_modes_at_once_and_stateless(self, api: Api) -> None:
        parts = await stream(api, None, "hello", ["values", "updates", "messages-tuple"])
        assert {p.event for p in parts} == {"metadata", "values", "updates", "messages", "end"}


class TestStudioRequests:
    async def test_what_studio_sends_as_text_plain_streams(self, api: Api) -> None:
        thread_id = await api.thread()
        body = {
            "assistant_id": "react",
            "input": {"messages": [{"type": "human", "content": [{"type": "text", "text": "hi"}]}]},
            "stream_mode": ["values", "messages-tuple", "updates", "debug", "custom", "events"],
            "stream_subgraphs": True,
            "stream_resumable": True,
            "on_disconnect": "cancel",
            "config": {"configurable": {}},
            "context": {},
            "interrupt_before": [],
            "checkpoint": None,
            "durability": "async",
            "feedback_keys": [],
            "assistant_version": 1,
        }
        async with api.http.stream(
            "POST",
            f"/threads/{thread_id}/runs/stream",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "text/plain;charset=UTF-8", "Accept": "text/event-stream"},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-location"].startswith(f"/threads/{thread_id}/runs/")
            events = await read_sse(response)
        assert events[-1] == ("end", None)
        # The content is stored as given (blocks), and the model reads their text.
        assert texts([d for e, d in events if e == "values"][-1]) == [
            [{"type": "text", "text": "hi"}],
            "You said: hi",
        ]
        runs = (await api.http.get(f"/threads/{thread_id}/runs")).json()
        assert [r["status"] for r in runs] == ["success"]

    async def test_rerun_from_a_checkpoint_forks_the_thread(self, api: Api) -> None:
        thread_id = await api.thread()
        await api.client.runs.wait(thread_id, "react", input=user("my name is Ada"))
        first = await api.client.threads.get_state(thread_id)
        await api.client.runs.wait(thread_id, "react", input=user("my name is Bob"))
        forked = await api.client.runs.wait(
            thread_id,
            "react",
            input=user("what is my name?"),
            checkpoint_id=first["checkpoint"]["checkpoint_id"],
        )
        assert texts(forked) == [
            "my name is Ada",
            "Nice to meet you, Ada.",
            "what is my name?",
            "Your name is Ada.",
        ]
        state = await api.client.threads.get_state(thread_id)
        assert state["values"]["messages"] == forked["messages"]

    @pytest.mark.parametrize("empty", [None, {}])
    async def test_rerun_from_a_checkpoint_without_input_replays_the_step(
        self, api: Api, empty: dict[str, Any] | None
    ) -> None:
        thread_id = await api.thread()
        # Step-by-step checkpoints, as a run asks with LangGraph's ``durability``.
        for text in ("hello", "again"):
            await api.client.runs.wait(thread_id, "react", input=user(text), durability="async")
        history = await api.client.threads.get_history(thread_id, limit=20)
        # The checkpoint where the first message is in and the agent is next.
        before_answer = [
            h for h in history if h["next"] == ["agent"] and len(h["values"]["messages"]) == 1
        ]
        assert len(before_answer) == 1
        values = await api.client.runs.wait(
            thread_id,
            "react",
            input=empty,
            checkpoint_id=before_answer[0]["checkpoint"]["checkpoint_id"],
        )
        assert texts(values) == ["hello", "You said: hello"]
        state = await api.client.threads.get_state(thread_id)
        assert texts(state["values"]) == ["hello", "You said: hello"]
        runs = await api.client.runs.list(thread_id)
        assert [r["status"] for r in runs] == ["success"] * 3

    async def test_a_checkpoint_of_another_thread_is_404(self, api: Api) -> None:
        one, two = await api.thread(), await api.thread()
        await api.client.runs.wait(one, "react", input=user("hello"))
        state = await api.client.threads.get_state(one)
        with http_error(404):
            await api.client.runs.wait(
                two, "react", input=user("hi"), checkpoint_id=state["checkpoint"]["checkpoint_id"]
            )

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"stream_mode": ["values", "nonsense"]}, "stream_mode"),
            ({"input": {"messages": []}}, "input"),
            ({"input": {"messages": [{"role": "nonsense", "content": "x"}]}}, "input.messages"),
            ({"input": {"messages": [{"role": "user", "content": "x"}], "no_such": 1}}, "input"),
            ({"webhook": "https://example.com/hook"}, "webhook"),
            ({"after_seconds": 30}, "after_seconds"),
            ({"command": {"goto": "agent"}, "input": None}, "command"),
        ],
    )
    async def test_unsupported_or_bad_bodies_are_422_naming_the_field(
        self, api: Api, change: dict[str, Any], field: str
    ) -> None:
        thread_id = await api.thread()
        body = {"assistant_id": "react", "input": user("hello"), **change}
        response = await api.http.post(f"/threads/{thread_id}/runs/wait", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["details"].get("field") == field, response.text

    async def test_unknown_thread_assistant_and_run_are_404(self, api: Api) -> None:
        with http_error(404):
            await api.client.runs.wait("no-such-thread", "react", input=user("hi"))
        thread_id = await api.thread()
        with http_error(404):
            await api.client.runs.wait(thread_id, "no-such-agent", input=user("hi"))
        with pytest.raises(NotFoundError):
            await api.client.runs.get(thread_id, str(uuid.uuid4()))


class TestApproval:
    async def test_interrupt_then_resume_with_command(self, api: Api) -> None:
        thread_id = await api.thread(api.notes)
        paused = await api.client.runs.wait(thread_id, api.notes, input=user(SAVE_HI))
        [interrupt] = paused["__interrupt__"]
        [pending] = interrupt["value"]["pending"]
        assert pending["name"] == "save_note" and pending["args"] == {"text": "hi"}
        assert (await api.client.threads.get(thread_id))["status"] == "interrupted"
        # A new message while the thread waits for a decision is refused, as natively.
        with http_error(409):
            await api.client.runs.wait(thread_id, api.notes, input=user("hello"))
        done = await api.client.runs.wait(thread_id, api.notes, command={"resume": "approve"})
        assert "__interrupt__" not in done
        assert done["notes"] == ["hi"]
        assert texts(done)[-2:] == ["Saved note: hi", "save_note returned: Saved note: hi."]
        assert (await api.client.threads.get(thread_id))["status"] == "idle"

    async def test_resume_with_decisions_rejecting_the_call(self, api: Api) -> None:
        thread_id = await api.thread(api.notes)
        paused = await api.client.runs.wait(thread_id, api.notes, input=user(SAVE_HI))
        call_id = paused["__interrupt__"][0]["value"]["pending"][0]["tool_call_id"]
        decisions = {"decisions": [{"tool_call_id": call_id, "action": "reject"}]}
        done = await api.client.runs.wait(thread_id, api.notes, command={"resume": decisions})
        assert done.get("notes", []) == []
        tool_results = [m for m in done["messages"] if m["type"] == "tool"]
        assert tool_results[-1]["content"].startswith("rejected by a human reviewer")

    async def test_streamed_interrupt_and_a_resume_with_nothing_pending(self, api: Api) -> None:
        thread_id = await api.thread(api.notes)
        parts = [
            part
            async for part in api.client.runs.stream(
                thread_id, api.notes, input=user(SAVE_HI), stream_mode=["updates", "values"]
            )
        ]
        interrupts = {
            p.event: p.data["__interrupt__"]
            for p in parts
            if isinstance(p.data, dict) and "__interrupt__" in p.data
        }
        assert set(interrupts) == {"updates", "values"}
        assert interrupts["values"][0]["value"]["pending"][0]["name"] == "save_note"
        await api.client.runs.wait(thread_id, api.notes, command={"resume": "reject"})
        with http_error(409):
            await api.client.runs.wait(thread_id, api.notes, command={"resume": "approve"})

    async def test_a_bad_resume_is_422_and_changes_nothing(self, api: Api) -> None:
        thread_id = await api.thread(api.notes)
        await api.client.runs.wait(thread_id, api.notes, input=user(SAVE_HI))
        with http_error(422):
            await api.client.runs.wait(thread_id, api.notes, command={"resume": "maybe"})
        with http_error(422):
            await api.client.runs.wait(
                thread_id,
                api.notes,
                command={"resume": [{"tool_call_id": "x", "action": "approve"}]},
            )
        assert (await api.client.threads.get(thread_id))["status"] == "interrupted"


class TestBudgets:
    async def test_the_agents_budget_applies_to_runs(self, api: Api) -> None:
        thread_id = await api.thread(api.frugal)
        values = await api.client.runs.wait(thread_id, api.frugal, input=user("what is 2 + 3?"))
        assert texts(values)[-1].startswith("I stopped before finishing")
        assert "max_tool_calls" in texts(values)[-1]


class TestMultitask:
    async def test_reject_while_a_run_is_in_flight_then_cancel_rolls_back(self, api: Api) -> None:
        thread_id = await api.thread(api.slow)
        before = await api.client.threads.get_state(thread_id)
        run = await api.client.runs.create(thread_id, api.slow, input=user("take your time"))
        assert run["status"] == "running"
        assert (await api.client.threads.get(thread_id))["status"] == "busy"
        with http_error(409):
            await api.client.runs.wait(
                thread_id, api.slow, input=user("me too"), multitask_strategy="reject"
            )
        with pytest.raises(ConflictError) as caught:  # reject is the default
            await api.client.runs.create(thread_id, api.slow, input=user("me too"))
        assert "already running" in caught.value.message
        await api.client.runs.cancel(thread_id, run["run_id"])
        await api.client.runs.join(thread_id, run["run_id"])
        ended = await api.client.runs.get(thread_id, run["run_id"])
        assert ended["status"] == "interrupted"
        after = await api.client.threads.get_state(thread_id)
        assert after["values"] == before["values"] and after["checkpoint"] == before["checkpoint"]
        assert (await api.client.threads.get(thread_id))["status"] == "idle"

    async def test_enqueue_waits_its_turn(self, api: Api) -> None:
        thread_id = await api.thread(api.slow)
        first = await api.client.runs.create(thread_id, api.slow, input=user("one"))
        second = await api.client.runs.create(
            thread_id, api.slow, input=user("two"), multitask_strategy="enqueue"
        )
        assert second["status"] == "pending"
        third = await api.client.runs.create(
            thread_id, api.slow, input=user("three"), multitask_strategy="enqueue"
        )
        listed = await api.client.runs.list(thread_id)
        assert [r["run_id"] for r in listed] == [third["run_id"], second["run_id"], first["run_id"]]
        assert [r["status"] for r in listed] == ["pending", "pending", "running"]
        # Cancel the slow first run: the queue moves on, in order; cancel the second too.
        await api.client.runs.cancel(thread_id, first["run_id"])
        await api.client.runs.cancel(thread_id, third["run_id"])
        await api.client.runs.join(thread_id, third["run_id"])
        assert (await api.client.runs.get(thread_id, third["run_id"]))["status"] == "interrupted"
        # The second run is now the one in flight (or has just started): cancel it as well.
        await api.client.runs.cancel(thread_id, second["run_id"])
        await api.client.runs.join(thread_id, second["run_id"])
        statuses = {r["run_id"]: r["status"] for r in await api.client.runs.list(thread_id)}
        assert set(statuses.values()) == {"interrupted"}
        assert (await api.client.threads.get_state(thread_id))["values"] == {}

    async def test_enqueue_behind_a_finished_run_just_runs(self, api: Api) -> None:
        thread_id = await api.thread()
        first = await api.client.runs.create(thread_id, "react", input=user("one"))
        await api.client.runs.join(thread_id, first["run_id"])
        values = await api.client.runs.wait(
            thread_id, "react", input=user("two"), multitask_strategy="enqueue"
        )
        assert texts(values) == ["one", "You said: one", "two", "You said: two"]

    async def test_rollback_cancels_the_run_in_flight(self, api: Api) -> None:
        thread_id = await api.thread(api.slow)
        first = await api.client.runs.create(thread_id, api.slow, input=user("one"))
        second = await api.client.runs.create(
            thread_id, api.slow, input=user("two"), multitask_strategy="rollback"
        )
        await api.client.runs.join(thread_id, first["run_id"])
        assert (await api.client.runs.get(thread_id, first["run_id"]))["status"] == "interrupted"
        await api.client.runs.cancel(thread_id, second["run_id"])
        await api.client.runs.join(thread_id, second["run_id"])
        assert (await api.client.threads.get_state(thread_id))["values"] == {}


class TestBackground:
    async def test_create_join_get_list_delete(self, api: Api) -> None:
        thread_id = await api.thread()
        run = await api.client.runs.create(
            thread_id, "react", input=user("hello"), metadata={"k": "v"}
        )
        assert run["thread_id"] == thread_id and run["assistant_id"] == "default"
        assert run["multitask_strategy"] == "reject" and run["metadata"] == {"k": "v"}
        assert run["kwargs"]["input"] == user("hello")
        values = await api.client.runs.join(thread_id, run["run_id"])
        assert texts(values) == ["hello", "You said: hello"]
        got = await api.client.runs.get(thread_id, run["run_id"])
        assert got["status"] == "success" and got["updated_at"] >= got["created_at"]
        assert [r["run_id"] for r in await api.client.runs.list(thread_id, status="success")] == [
            run["run_id"]
        ]
        assert await api.client.runs.list(thread_id, status="error") == []
        await api.client.runs.delete(thread_id, run["run_id"])
        with pytest.raises(NotFoundError):
            await api.client.runs.get(thread_id, run["run_id"])

    async def test_join_stream_of_a_run_in_flight(self, api: Api) -> None:
        thread_id = await api.thread(api.slow)
        run = await api.client.runs.create(
            thread_id, api.slow, input=user("slowly"), stream_mode=["values", "updates"]
        )
        events: list[Any] = []
        async for part in api.client.runs.join_stream(thread_id, run["run_id"]):
            events.append(part)
            if part.event == "metadata":
                # Listening now: end the run; its stream reports the cancelled turn.
                await api.client.runs.cancel(thread_id, run["run_id"])
        assert events[0].event == "metadata" and events[0].data["run_id"] == run["run_id"]
        assert [e.event for e in events][-2:] == ["error", "end"]

    async def test_join_stream_of_a_finished_run_gives_its_values(self, api: Api) -> None:
        thread_id = await api.thread()
        run = await api.client.runs.create(thread_id, "react", input=user("hello"))
        await api.client.runs.join(thread_id, run["run_id"])
        events = [p async for p in api.client.runs.join_stream(thread_id, run["run_id"])]
        assert [e.event for e in events] == ["metadata", "values", "end"]
        assert texts(events[1].data) == ["hello", "You said: hello"]

    async def test_cancel_with_wait_and_cancel_of_an_ended_run(self, api: Api) -> None:
        thread_id = await api.thread(api.slow)
        run = await api.client.runs.create(thread_id, api.slow, input=user("slowly"))
        values = await api.client.runs.cancel(thread_id, run["run_id"], wait=True)
        assert values == {}
        # An ended run's cancel is accepted and does nothing, as on LangGraph's server.
        await api.client.runs.cancel(thread_id, run["run_id"])
        assert (await api.client.runs.get(thread_id, run["run_id"]))["status"] == "interrupted"
        # An ended run can be deleted; a running one cannot.
        await api.client.runs.delete(thread_id, run["run_id"])

    async def test_a_running_run_cannot_be_deleted(self, api: Api) -> None:
        thread_id = await api.thread(api.slow)
        run = await api.client.runs.create(thread_id, api.slow, input=user("slowly"))
        with pytest.raises(ConflictError):
            await api.client.runs.delete(thread_id, run["run_id"])
        await api.client.runs.cancel(thread_id, run["run_id"], wait=True)

    async def test_stream_disconnect_with_on_disconnect_cancel(self, api: Api) -> None:
        thread_id = await api.thread(api.slow)
        async for part in api.client.runs.stream(
            thread_id, api.slow, input=user("slowly"), on_disconnect="cancel"
        ):
            assert part.event == "metadata"
            run_id = part.data["run_id"]
            break  # the client goes away mid-run
        await api.client.runs.join(thread_id, run_id)
        assert (await api.client.runs.get(thread_id, run_id))["status"] == "interrupted"


class TestReplicas:
    async def test_join_and_cancel_from_another_replica(self, api: Api, settings: Settings) -> None:
        thread_id = await api.thread(api.slow)
        run = await api.client.runs.create(thread_id, api.slow, input=user("slowly"))
        async with running_server(create_app(settings, tools=make_registry())) as other_url:
            other = get_client(url=other_url)
            assert (await other.runs.get(thread_id, run["run_id"]))["status"] == "running"
            await other.runs.cancel(thread_id, run["run_id"])
            values = await other.runs.join(thread_id, run["run_id"])
            assert values == {}
            assert (await other.runs.get(thread_id, run["run_id"]))["status"] == "interrupted"
        assert (await api.client.threads.get(thread_id))["status"] == "idle"


async def _key(settings: Settings, owner: str) -> str:
    async with Runtime.open(settings, sweeper=False) as rt:
        _, secret = await rt.keys.create(owner)
    return secret


class TestOwnership:
    async def test_another_owners_thread_runs_and_assistant_are_404(
        self, settings: Settings, fresh_database: str
    ) -> None:
        own = settings.model_copy(update={"database_url": fresh_database})
        ann, bob = await _key(own, "ann"), await _key(own, "bob")
        async with running_server(create_app(own)) as url:
            as_ann, as_bob = get_client(url=url, api_key=ann), get_client(url=url, api_key=bob)
            tid = (await as_ann.threads.create())["thread_id"]
            run = await as_ann.runs.create(tid, "react", input=user("hello"))
            await as_ann.runs.join(tid, run["run_id"])
            with http_error(404):
                await as_bob.runs.wait(tid, "react", input=user("hi"))
            with pytest.raises(NotFoundError):
                await as_bob.runs.list(tid)
            with pytest.raises(NotFoundError):
                await as_bob.runs.get(tid, run["run_id"])
            with http_error(404):
                await as_bob.runs.join(tid, run["run_id"])
            with pytest.raises(NotFoundError):
                await as_bob.runs.cancel(tid, run["run_id"])
            with pytest.raises(NotFoundError):
                await as_bob.runs.delete(tid, run["run_id"])
            aid = (await as_ann.assistants.create(graph_id="react", name="Ann's"))["assistant_id"]
            with http_error(404):
                await as_bob.runs.wait(None, aid, input=user("hi"))
            # Bob's own thread of the same id is his, with runs of its own.
            await as_bob.threads.create(thread_id=tid)
            values = await as_bob.runs.wait(tid, "react", input=user("mine"))
            assert texts(values) == ["mine", "You said: mine"]
            assert [r["run_id"] for r in await as_ann.runs.list(tid)] == [run["run_id"]]
