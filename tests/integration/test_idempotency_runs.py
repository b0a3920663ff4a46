"""Safe retries on the LangGraph API's run routes: an Idempotency-Key makes a repeated run
request return the first run's result, never run it twice (real ``langgraph-sdk`` and httpx)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from api.app import create_app
from runtime import Settings
from tests.support.server import running_server

SLOW_MODEL = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 1.0}}


def uid(prefix: str = "s") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def said(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def last_values(events: list[tuple[str, Any]]) -> dict[str, Any]:
    """The data of the last ``values`` event of a stream."""
    values = [data for event, data in events if event == "values"]
    assert values, events
    last: dict[str, Any] = values[-1]
    return last


@pytest.fixture
def sdk(server_url: str) -> LangGraphClient:
    return get_client(url=server_url)


async def slow_assistant(http: httpx.AsyncClient) -> str:
    agent_id = uid("slow")
    body = {"id": agent_id, "name": "slow", "model": SLOW_MODEL}
    response = await http.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    return agent_id


async def user_turns(sdk: LangGraphClient, thread_id: str, text: str) -> int:
    state = await sdk.threads.get_state(thread_id)
    values = state["values"]
    assert isinstance(values, dict)
    return sum(1 for m in values["messages"] if m["type"] == "human" and m["content"] == text)


async def run_count(sdk: LangGraphClient, thread_id: str) -> int:
    return len(await sdk.runs.list(thread_id, limit=100))


class TestThreadRuns:
    async def test_wait_retried_after_a_dropped_connection_returns_the_first_output(
        self, http: httpx.AsyncClient, sdk: LangGraphClient, server_url: str
    ) -> None:
        """A client that gave up on /runs/wait retries with its key: the same output, one run."""
        assistant = await slow_assistant(http)
        thread = (await sdk.threads.create())["thread_id"]
        url = f"/threads/{thread}/runs/wait"
        body = {"assistant_id": assistant, "input": said("my name is Ada")}
        async with httpx.AsyncClient(base_url=server_url, timeout=0.3) as impatient:
            with pytest.raises(httpx.TimeoutException):
                await impatient.post(url, json=body, headers=keyed("wait-1"))
        retry = await sdk.runs.wait(
            thread, assistant, input=said("my name is Ada"), headers=keyed("wait-1")
        )
        assert isinstance(retry, dict)
        assert retry["messages"][-1]["content"] == "Nice to meet you, Ada."
        again = await http.post(url, json=body, headers=keyed("wait-1"))
        assert again.status_code == 200 and again.json() == retry
        assert await user_turns(sdk, thread, "my name is Ada") == 1
        assert await run_count(sdk, thread) == 1

    async def test_background_retry_while_running_is_the_same_run(
        self, http: httpx.AsyncClient, sdk: LangGraphClient
    ) -> None:
        """A repeated POST /threads/{id}/runs while the first runs returns that run."""
        assistant = await slow_assistant(http)
        thread = (await sdk.threads.create())["thread_id"]
        first, second = await asyncio.gather(
            sdk.runs.create(thread, assistant, input=said("hello"), headers=keyed("bg-1")),
            sdk.runs.create(thread, assistant, input=said("hello"), headers=keyed("bg-1")),
        )
        assert first["run_id"] == second["run_id"]
        joined = await sdk.runs.join(thread, first["run_id"])
        assert isinstance(joined, dict)
        assert joined["messages"][-1]["content"] == "You said: hello"
        third = await sdk.runs.create(thread, assistant, input=said("hello"), headers=keyed("bg-1"))
        assert third["run_id"] == first["run_id"] and third["status"] == "success"
        assert await user_turns(sdk, thread, "hello") == 1
        assert await run_count(sdk, thread) == 1

    @pytest.mark.parametrize("strategy", ["reject", "rollback", "interrupt", "enqueue"])
    async def test_racing_retries_never_refuse_or_stop_the_first(
        self, http: httpx.AsyncClient, sdk: LangGraphClient, strategy: str
    ) -> None:
        """Three attempts of one keyed request sent at once, whatever the multitask strategy:
        one run, never refused as busy and never cancelled by its own retry."""
        assistant = await slow_assistant(http)
        thread = (await sdk.threads.create())["thread_id"]
        runs = await asyncio.gather(
            *(
                sdk.runs.create(
                    thread,
                    assistant,
                    input=said("hello"),
                    multitask_strategy=strategy,  # type: ignore[arg-type]
                    headers=keyed(f"race-{strategy}"),
                )
                for _ in range(3)
            )
        )
        assert len({run["run_id"] for run in runs}) == 1
        await sdk.runs.join(thread, runs[0]["run_id"])
        ended = await sdk.runs.get(thread, runs[0]["run_id"])
        assert ended["status"] == "success"
        assert await user_turns(sdk, thread, "hello") == 1
        assert await run_count(sdk, thread) == 1

    async def test_same_key_with_another_body_is_422(
        self, http: httpx.AsyncClient, sdk: LangGraphClient
    ) -> None:
        """The same key with a different body is refused with a JSON body naming the key."""
        thread = (await sdk.threads.create())["thread_id"]
        body = {"assistant_id": "react", "input": said("one")}
        first = await http.post(f"/threads/{thread}/runs/wait", json=body, headers=keyed("k-3"))
        assert first.status_code == 200, first.text
        body["input"] = said("two")
        for path in ("/runs/wait", "/runs", "/runs/stream"):
            other = await http.post(f"/threads/{thread}{path}", json=body, headers=keyed("k-3"))
            assert other.status_code == 422, other.text
            problem = other.json()
            assert problem["error"] == "invalid_input"
            assert problem["details"]["field"] == "idempotency_key"
            assert "different request" in problem["message"]
        assert await run_count(sdk, thread) == 1

    async def test_stream_retry_replays_a_recorded_stream(
        self, http: httpx.AsyncClient, sdk: LangGraphClient
    ) -> None:
        """A resumable stream retried with its key replays the first run's events in full."""
        thread = (await sdk.threads.create())["thread_id"]

        async def stream() -> list[tuple[str, Any]]:
            parts = sdk.runs.stream(
                thread,
                "react",
                input=said("my city is Oslo"),
                stream_mode=["values", "updates"],
                stream_resumable=True,
                headers=keyed("stream-1"),
            )
            return [(p.event, p.data) async for p in parts]

        first = await stream()
        second = await stream()
        assert [e for e, _ in first if e != "metadata"] == [e for e, _ in second if e != "metadata"]
        assert last_values(first) == last_values(second)
        assert last_values(first)["messages"][-1]["content"] == "Got it: your city is Oslo."
        assert await user_turns(sdk, thread, "my city is Oslo") == 1
        assert await run_count(sdk, thread) == 1

    async def test_stream_retry_of_an_unrecorded_stream_gets_its_final_values(
        self, sdk: LangGraphClient
    ) -> None:
        """A plain stream retried after it ended answers with the run's final values."""
        thread = (await sdk.threads.create())["thread_id"]

        async def stream() -> list[tuple[str, Any]]:
            parts = sdk.runs.stream(
                thread, "react", input=said("ping"), stream_mode="values", headers=keyed("s-2")
            )
            return [(p.event, p.data) async for p in parts]

        first = await stream()
        second = await stream()
        assert last_values(first) == last_values(second)
        assert await user_turns(sdk, thread, "ping") == 1


class TestStatelessRuns:
    async def test_stateless_wait_retried_runs_once_on_a_kept_thread(
        self, http: httpx.AsyncClient, sdk: LangGraphClient
    ) -> None:
        """A keyed stateless run keeps its thread (named after the key): a retry finds it."""
        key = uid("stateless")
        body = {"assistant_id": "react", "input": said("my color is teal")}
        first = await http.post("/runs/wait", json=body, headers=keyed(key))
        second = await http.post("/runs/wait", json=body, headers=keyed(key))
        assert first.status_code == second.status_code == 200, second.text
        assert first.json() == second.json()
        location = first.headers["Content-Location"]
        assert second.headers["Content-Location"] == location
        thread = location.split("/")[2]
        assert await user_turns(sdk, thread, "my color is teal") == 1
        assert await run_count(sdk, thread) == 1
        created = await sdk.runs.create(None, "react", input=said("x"), headers=keyed(uid()))
        again = await http.post("/runs", json=body, headers=keyed(key))
        assert again.status_code == 200 and again.json()["run_id"] == location.split("/")[-1]
        assert created["thread_id"] != thread

    async def test_stateless_stream_retry_while_running_joins_the_first(
        self, http: httpx.AsyncClient, sdk: LangGraphClient
    ) -> None:
        """A stateless stream retried while its first attempt runs ends with the same values."""
        assistant = await slow_assistant(http)
        key = uid("stream")

        async def stream() -> list[tuple[str, Any]]:
            parts = sdk.runs.stream(
                None, assistant, input=said("hi there"), stream_mode="values", headers=keyed(key)
            )
            return [(p.event, p.data) async for p in parts]

        first, second = await asyncio.gather(stream(), stream())
        assert last_values(first) == last_values(second)
        assert last_values(first)["messages"][-1]["content"] == "You said: hi there"


class TestAnotherReplica:
    async def test_retry_on_another_replica_while_the_first_runs(
        self, http: httpx.AsyncClient, sdk: LangGraphClient, settings: Settings
    ) -> None:
        """A retry sent to a second server while the first still runs the run gets its output."""
        assistant = await slow_assistant(http)
        thread = (await sdk.threads.create())["thread_id"]
        body = {"assistant_id": assistant, "input": said("my pet is a cat")}
        async with running_server(create_app(settings)) as other_url:
            first = asyncio.ensure_future(
                http.post(f"/threads/{thread}/runs/wait", json=body, headers=keyed("replica-1"))
            )
            while not (runs := await sdk.runs.list(thread)):
                await asyncio.sleep(0.02)
            other = get_client(url=other_url)
            retry = await other.runs.wait(
                thread, assistant, input=said("my pet is a cat"), headers=keyed("replica-1")
            )
            answer = await first
        assert runs[0]["status"] in ("pending", "running")  # the retry came while it ran
        assert answer.status_code == 200 and answer.json() == retry
        assert isinstance(retry, dict)
        assert retry["messages"][-1]["content"] == "Got it: your pet is a cat."
        assert await user_turns(sdk, thread, "my pet is a cat") == 1
        assert await run_count(sdk, thread) == 1
