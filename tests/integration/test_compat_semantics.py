"""LangGraph's server semantics, round 2, driven by the real ``langgraph_sdk`` client:
stateless runs kept, cancel of an ended run, deleting a thread or an assistant with runs in
flight, the ``interrupt`` multitask strategy, state updates given as a list.

Uses the agents of :mod:`tests.integration.test_compat_runs` (``slow`` keeps a run in flight
until a cancel ends it)."""

from __future__ import annotations

import httpx
import pytest
from langgraph_sdk.errors import NotFoundError

from tests.integration.test_compat_runs import Api, api, make_agent, texts, user

__all__ = ["api"]  # the fixture, shared


def run_of(response: httpx.Response) -> tuple[str, str]:
    """The thread and run ids a run-creating response names in ``Content-Location``."""
    _, threads, thread_id, runs, run_id = response.headers["content-location"].split("/")
    assert (threads, runs) == ("threads", "runs")
    return thread_id, run_id


class TestStatelessKeep:
    @pytest.mark.parametrize("route", ["/runs/wait", "/runs/stream", "/runs"])
    async def test_on_completion_keep_keeps_the_new_thread(self, api: Api, route: str) -> None:
        """A stateless run with on_completion "keep" runs on a new thread that stays."""
        body = {"assistant_id": "react", "input": user("hello"), "on_completion": "keep"}
        response = await api.http.post(route, json=body)
        assert response.status_code == 200, response.text
        thread_id, run_id = run_of(response)
        await api.client.runs.join(thread_id, run_id)
        state = await api.client.threads.get_state(thread_id)
        assert texts(state["values"]) == ["hello", "You said: hello"]
        assert (await api.client.runs.get(thread_id, run_id))["status"] == "success"

    async def test_without_keep_the_thread_goes(self, api: Api) -> None:
        """The default for a stateless run is still to delete its thread."""
        response = await api.http.post(
            "/runs/wait", json={"assistant_id": "react", "input": user("hello")}
        )
        thread_id, _ = run_of(response)
        with pytest.raises(NotFoundError):
            await api.client.threads.get(thread_id)


class TestDeleteWithRunsInFlight:
    async def test_deleting_a_thread_cancels_its_runs(self, api: Api) -> None:
        """DELETE /threads/{id} with a run in flight cancels it and deletes the thread."""
        thread_id = await api.thread(api.slow)
        await api.client.runs.create(thread_id, api.slow, input=user("slowly"))
        await api.client.threads.delete(thread_id)
        with pytest.raises(NotFoundError):
            await api.client.threads.get(thread_id)

    async def test_deleting_an_assistant_deletes_its_threads(self, api: Api) -> None:
        """DELETE /assistants/{id} cancels the runs on its threads and deletes them with it
        (here a thread cannot outlive its assistant, with or without delete_threads)."""
        slow = await make_agent(
            api.http, name="slow2", model={"provider": "offline", "params": {"delay_seconds": 60}}
        )
        busy = await api.thread(slow)
        await api.client.runs.create(busy, slow, input=user("slowly"))
        idle = await api.thread(slow)
        await api.client.assistants.delete(slow)
        for thread_id in (busy, idle):
            with pytest.raises(NotFoundError):
                await api.client.threads.get(thread_id)
        with pytest.raises(NotFoundError):
            await api.client.assistants.get(slow)


class TestMultitaskInterrupt:
    async def test_interrupt_stops_the_run_in_flight(self, api: Api) -> None:
        """multitask_strategy "interrupt" ends the run in flight (interrupted) and runs."""
        thread_id = await api.thread(api.slow)
        first = await api.client.runs.create(thread_id, api.slow, input=user("one"))
        second = await api.client.runs.create(
            thread_id, api.slow, input=user("two"), multitask_strategy="interrupt"
        )
        await api.client.runs.join(thread_id, first["run_id"])
        assert (await api.client.runs.get(thread_id, first["run_id"]))["status"] == "interrupted"
        assert (await api.client.runs.get(thread_id, second["run_id"]))["status"] in (
            "pending",
            "running",
        )
        await api.client.runs.cancel(thread_id, second["run_id"], wait=True)


class TestStateUpdates:
    async def test_values_as_a_list_apply_in_order(self, api: Api) -> None:
        """POST /threads/{id}/state takes values as a list of updates, applied in order."""
        thread_id = await api.thread()
        await api.client.runs.wait(thread_id, "react", input=user("hello"))
        await api.client.threads.update_state(
            thread_id,
            [
                {"messages": [{"role": "user", "content": "one"}]},
                {"messages": [{"role": "assistant", "content": "two"}]},
            ],
            as_node="agent",
        )
        state = await api.client.threads.get_state(thread_id)
        assert texts(state["values"])[-2:] == ["one", "two"]


class TestInterruptBeforeAfter:
    async def test_interrupt_before_stops_and_a_run_without_input_continues(self, api: Api) -> None:
        """interrupt_before ["tools"] stops before the tool runs; a run with no input then
        continues from there, as LangGraph's server does."""
        thread_id = await api.thread()
        await api.client.runs.wait(
            thread_id, "react", input=user("what is 6 * 7?"), interrupt_before=["tools"]
        )
        state = await api.client.threads.get_state(thread_id)
        assert state["next"] == ["tools"]
        assert state["values"]["messages"][-1]["tool_calls"][0]["name"] == "calculator"
        values = await api.client.runs.wait(thread_id, "react", input=None)
        assert texts(values)[-1] == "The result is 42."
        assert (await api.client.threads.get_state(thread_id))["next"] == []

    async def test_interrupt_before_the_first_node_stops_before_the_model(self, api: Api) -> None:
        """interrupt_before ["agent"] stops with the input applied and the model not called
        (the input gets a checkpoint of its own first, under one checkpoint per turn);
        a run with no input then answers."""
        thread_id = await api.thread()
        await api.client.runs.wait(
            thread_id, "react", input=user("what is 6 * 7?"), interrupt_before=["agent"]
        )
        state = await api.client.threads.get_state(thread_id)
        assert state["next"] == ["agent"]
        assert texts(state["values"]) == ["what is 6 * 7?"]
        assert (await api.client.threads.get(thread_id))["status"] == "interrupted"
        values = await api.client.runs.wait(thread_id, "react", input=None)
        assert texts(values)[-1] == "The result is 42."

    async def test_interrupt_after_every_node(self, api: Api) -> None:
        """interrupt_after "*" stops after the first node; each empty run takes one more."""
        thread_id = await api.thread()
        await api.client.runs.wait(
            thread_id, "react", input=user("what is 6 * 7?"), interrupt_after="*"
        )
        assert (await api.client.threads.get_state(thread_id))["next"] == ["tools"]
        await api.client.runs.wait(thread_id, "react", input=None, interrupt_after="*")
        assert (await api.client.threads.get_state(thread_id))["next"] == ["agent"]


class TestAgentBreakpoints:
    """An agent's interrupt_before / interrupt_after apply to every run, as a graph compiled
    with them does on LangGraph's server; a run's own replace them (per kind); a thread
    stopped at one is ``interrupted`` and a run with input None continues it."""

    async def test_every_run_stops_and_the_thread_is_interrupted(self, api: Api) -> None:
        """The agent's breakpoint stops the run before the tool; the thread is interrupted
        (get, search, count); a run with input None continues it to the end, idle."""
        agent = await make_agent(
            api.http, name="bp", tools=["calculator"], interrupt_before=["tools"]
        )
        thread_id = await api.thread(agent)
        await api.client.runs.wait(thread_id, agent, input=user("what is 6 * 7?"))
        assert (await api.client.threads.get_state(thread_id))["next"] == ["tools"]
        assert (await api.client.threads.get(thread_id))["status"] == "interrupted"
        found = await api.client.threads.search(status="interrupted", limit=100)
        assert thread_id in [t["thread_id"] for t in found]
        assert await api.client.threads.count(status="interrupted") >= 1
        idle = await api.client.threads.search(status="idle", limit=100)
        assert thread_id not in [t["thread_id"] for t in idle]

        values = await api.client.runs.wait(thread_id, agent, input=None)
        assert texts(values)[-1] == "The result is 42."
        assert (await api.client.threads.get(thread_id))["status"] == "idle"

    async def test_a_runs_own_breakpoints_replace_the_agents(self, api: Api) -> None:
        """A run's interrupt_before replaces the agent's for that run; the next run, with no
        options, stops at the agent's interrupt_after."""
        agent = await make_agent(
            api.http, name="bp2", tools=["calculator"], interrupt_after=["tools"]
        )
        thread_id = await api.thread(agent)
        await api.client.runs.wait(
            thread_id, agent, input=user("what is 6 * 7?"), interrupt_before=["tools"]
        )
        assert (await api.client.threads.get_state(thread_id))["next"] == ["tools"]
        await api.client.runs.wait(thread_id, agent, input=None)
        state = await api.client.threads.get_state(thread_id)
        assert state["next"] == ["agent"]
        assert state["values"]["messages"][-1]["content"] == "42"
        assert (await api.client.threads.get(thread_id))["status"] == "interrupted"
        values = await api.client.runs.wait(thread_id, agent, input=None)
        assert texts(values)[-1] == "The result is 42."

    async def test_unknown_nodes_are_refused(self, api: Api) -> None:
        """Breakpoints naming nodes the agent's graph lacks: 422 naming them (create, update)."""
        response = await api.http.post(
            "/v1/agents", json={"name": "bad", "tools": ["calculator"], "interrupt_before": ["x"]}
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert "['x']" in body["message"] and body["details"]["field"] == "interrupt_before"
        assert "tools" in body["details"]["nodes"]
        agent = await make_agent(api.http, name="ok", tools=["calculator"], interrupt_after="*")
        patch = await api.http.patch(f"/v1/agents/{agent}", json={"interrupt_after": ["nope"]})
        assert patch.status_code == 422, patch.text
        assert "['nope']" in patch.json()["message"]


class TestEventsStreamMode:
    async def test_events_are_langchains_astream_events(self, api: Api) -> None:
        """stream_mode "events" streams LangChain's astream_events (v2) events, alongside
        the other modes asked for."""
        thread_id = await api.thread()
        parts = [
            part
            async for part in api.client.runs.stream(
                thread_id, "react", input=user("hello"), stream_mode=["events", "values"]
            )
        ]
        events = [p.data for p in parts if p.event == "events"]
        kinds = {e["event"] for e in events}
        assert {"on_chain_start", "on_chain_end", "on_chat_model_stream"} <= kinds, kinds
        assert all({"run_id", "name", "data", "metadata"} <= set(e) for e in events)
        tokens = "".join(
            e["data"]["chunk"]["content"] for e in events if e["event"] == "on_chat_model_stream"
        )
        assert tokens == "You said: hello"
        values = [p.data for p in parts if p.event == "values"]
        assert texts(values[-1]) == ["hello", "You said: hello"]
