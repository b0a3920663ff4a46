"""Resumable run streams (``stream_resumable``) across replicas: a client that drops mid-run
and rejoins another replica with ``Last-Event-ID`` gets every event exactly once, in order,
then the live tail; ``-1`` replays from the start. Two servers on one database, the real
``langgraph_sdk`` client and raw SSE over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from langgraph_sdk import get_client

from api.app import create_app
from runtime import Settings
from tests.integration.test_compat_runs import make_agent, make_registry, user
from tests.support.server import running_server

Event = tuple[str, str, Any]  # (id, event, data)


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The (id, event, JSON data) of an SSE response as they arrive (comments skipped)."""
    event_id, event, data = "", "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event_id, event, json.loads("\n".join(data))
            event_id, event, data = "", "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


async def join(http: httpx.AsyncClient, thread_id: str, run_id: str, last: str) -> list[Event]:
    path = f"/threads/{thread_id}/runs/{run_id}/stream"
    async with http.stream("GET", path, headers={"Last-Event-ID": last}) as response:
        assert response.status_code == 200, await response.aread()
        return [e async for e in sse_events(response)]


class TestResumableStreams:
    async def test_drop_and_rejoin_on_the_other_replica(self, settings: Settings) -> None:
        """Events seen on replica A, then those after Last-Event-ID from replica B, are the
        whole stream exactly once, in order; the run went on while no client listened."""
        async with (
            running_server(create_app(settings, tools=make_registry())) as url_a,
            running_server(create_app(settings, tools=make_registry())) as url_b,
            httpx.AsyncClient(base_url=url_a, timeout=30) as a,
            httpx.AsyncClient(base_url=url_b, timeout=30) as b,
        ):
            agent = await make_agent(
                a,
                name="paced",
                tools=["calculator"],
                model={"provider": "offline", "params": {"delay_seconds": 1}},
            )
            thread_id = (await a.post("/threads", json={})).json()["thread_id"]
            body = {
                "assistant_id": agent,
                "input": user("what is 6 * 7?"),
                "stream_mode": ["values", "updates", "messages-tuple"],
                "stream_resumable": True,
                "on_disconnect": "continue",
            }
            seen: list[Event] = []
            path = f"/threads/{thread_id}/runs/stream"
            async with a.stream("POST", path, json=body) as response:
                assert response.status_code == 200
                run_id = response.headers["content-location"].rsplit("/", 1)[1]
                async for event in sse_events(response):
                    seen.append(event)
                    if len(seen) == 2:  # metadata and the first values: drop the connection
                        break
            assert [e[1] for e in seen] == ["metadata", "values"]
            rest = await join(b, thread_id, run_id, seen[-1][0])
            everything = await join(b, thread_id, run_id, "-1")

            assert rest[-1][1] == "end" and everything[-1][1] == "end"
            assert seen + rest[:-1] == everything[:-1]
            assert [int(e[0]) for e in everything[:-1]] == list(range(1, len(everything)))
            final = [e[2] for e in everything if e[1] == "values"][-1]
            assert final["messages"][-1]["content"] == "The result is 42."
            run = (await b.get(f"/threads/{thread_id}/runs/{run_id}")).json()
            assert run["status"] == "success"

            # The SDK rejoins with last_event_id too: -1 replays the whole stream.
            parts = [
                p
                async for p in get_client(url=url_b).runs.join_stream(
                    thread_id, run_id, last_event_id="-1"
                )
            ]
            assert [p.event for p in parts] == [e[1] for e in everything]

    async def test_ended_streams_are_kept_for_the_retention_then_pruned(
        self, settings: Settings
    ) -> None:
        """With a three-second retention, a run's recorded stream replays in full while kept;
        once it is older than that, the next recording to end prunes it (a thousand streams
        ending together prune once, not a thousand times); the newer one still replays.
        (Three seconds: a recording's own end prunes its events older than the retention, so
        a shorter one would let a loaded machine's slow run prune itself.)"""
        kept = settings.model_copy(update={"run_events_retention_seconds": 3.0})
        async with (
            running_server(create_app(kept, tools=make_registry())) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            thread_id = (await http.post("/threads", json={})).json()["thread_id"]

            async def recorded_run(text: str) -> str:
                body = {
                    "assistant_id": "react",
                    "input": user(text),
                    "stream_mode": ["values"],
                    "stream_resumable": True,
                }
                path = f"/threads/{thread_id}/runs/stream"
                async with http.stream("POST", path, json=body) as response:
                    assert response.status_code == 200
                    events = [e async for e in sse_events(response)]
                assert events[-1][1] == "end"
                return str(response.headers["content-location"].rsplit("/", 1)[1])

            def names(events: list[Event]) -> list[str]:
                return [e[1] for e in events]

            first = await recorded_run("one")
            assert "values" in names(await join(http, thread_id, first, "-1"))
            await asyncio.sleep(3.5)  # the first stream is now past its retention
            second = await recorded_run("two")
            assert names(await join(http, thread_id, first, "-1")) == ["end"]
            assert "values" in names(await join(http, thread_id, second, "-1"))
