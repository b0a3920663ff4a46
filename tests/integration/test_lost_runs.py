"""Runs whose replica died: they end on every other replica within seconds, and their turn
never commits.

Two real ``sessiongraph serve`` processes (A and B) on the module's database, with the
default heartbeat bound (1.5 s) and lease timeout (30 s): only the heartbeat can end a dead
replica's runs this soon. A runs slow turns (the offline model, 30 s an answer) and is
SIGKILLed mid-turn; on B its runs read as ended (``error``, ``replica_lost``), join and
stream rejoins end, the thread takes new runs at once, a keyed retry runs the request again
(the lost turn never committed), and the history has no trace of the lost turns. A live
replica's long run is never shown lost. Polls have a generous overall deadline; no duration
is asserted.

The fence itself (a run ended as lost keeps its turn from committing, even if its replica
comes back) is pinned on one runtime: its run's holder is made to look dead mid-turn.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from runtime import ModelSpec, Runtime, TemplateSpec
from runtime.runs import RunRequest
from runtime.turns import TurnRequest
from tests.integration.test_compat_resumable import Event, join, sse_events
from tests.integration.test_fencing import session_row
from tests.support.processes import ServeProcess, clean_env, serve_processes

pytestmark = pytest.mark.slow

SLOW = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 30}}
FAST = {"provider": "offline", "name": "deterministic", "params": {}}
SSE = {"Accept": "text/event-stream"}
DEADLINE = 60.0  # an overall bound for every poll here, never a measured duration
ACTIVE = ("pending", "running")


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Iterator[list[ServeProcess]]:
    """Two ready servers on the module's database; stopped after (a killed one is gone)."""
    env = clean_env(DATABASE_URL=database_url, SESSIONGRAPH_SWEEP_INTERVAL_SECONDS="0")
    with serve_processes([tmp_path / "a.log", tmp_path / "b.log"], env) as servers:
        yield servers


def kill(server: ServeProcess) -> None:
    """SIGKILL the server: no clean shutdown, its heartbeat row left to go stale."""
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)


def said(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def make_agent(client: httpx.AsyncClient, agent_id: str, model: dict[str, Any]) -> None:
    response = await client.post("/v1/agents", json={"id": agent_id, "name": "x", "model": model})
    assert response.status_code == 201, response.text


async def set_model(client: httpx.AsyncClient, agent_id: str, model: dict[str, Any]) -> None:
    response = await client.patch(f"/v1/agents/{agent_id}", json={"model": model})
    assert response.status_code == 200, response.text


async def get_run(client: httpx.AsyncClient, thread: str, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/threads/{thread}/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def until_status(
    client: httpx.AsyncClient, thread: str, run_id: str, wanted: tuple[str, ...]
) -> dict[str, Any]:
    """The run, read until its status is one of ``wanted`` (within the deadline)."""
    deadline = time.monotonic() + DEADLINE
    while (run := await get_run(client, thread, run_id))["status"] not in wanted:
        assert time.monotonic() < deadline, f"run {run_id} stayed {run['status']}"
        await asyncio.sleep(0.1)
    return run


async def ended(client: httpx.AsyncClient, thread: str, run_id: str) -> dict[str, Any]:
    return await until_status(client, thread, run_id, ("success", "error", "interrupted"))


async def run_rows(database_url: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The rows of these runs as stored (not as a reader is shown them)."""
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        cur = await conn.execute(
            "SELECT run_id, status, error, lease_holder, turn_committed FROM runs "
            "WHERE run_id = ANY(%s)",
            (run_ids,),
        )
        return {row["run_id"]: row for row in await cur.fetchall()}


async def thread_texts(client: httpx.AsyncClient, thread: str) -> list[tuple[str, str]]:
    response = await client.get(f"/v1/sessions/{thread}/messages", params={"limit": 100})
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["items"]]


def assert_lost(error: dict[str, Any]) -> None:
    assert error["error"] == "replica_lost", error
    assert "stopped" in error["message"], error


class TestKilledReplica:
    @pytest.mark.timeout(300)
    async def test_its_runs_end_lost_and_the_thread_goes_on(
        self, replicas: list[ServeProcess], database_url: str
    ) -> None:
        """A's running (keyed, resumable) run and the run queued behind it read as ended on
        B: get, join, stream rejoin, cancel; the thread takes a reject run at once; a keyed
        retry runs the request again as a new run, and its retries get that run; the lost
        turns left nothing in the history."""
        a, b = replicas
        key = {"Idempotency-Key": "lost-1"}
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=60) as ca,
            httpx.AsyncClient(base_url=b.url, timeout=60) as cb,
        ):
            await make_agent(ca, "lost-runs", FAST)
            thread = (await ca.post("/threads", json={})).json()["thread_id"]
            first = {"assistant_id": "lost-runs", "input": said("my name is Ada")}
            assert (await ca.post(f"/threads/{thread}/runs/wait", json=first)).status_code == 200
            await set_model(ca, "lost-runs", SLOW)
            body = {
                "assistant_id": "lost-runs",
                "input": said("my name is Mallory"),
                "stream_mode": ["values"],
                "stream_resumable": True,
            }
            created = await ca.post(f"/threads/{thread}/runs", json=body, headers=key)
            assert created.status_code == 200, created.text
            lost = created.json()["run_id"]
            await until_status(cb, thread, lost, ("running",))
            queued = {
                "assistant_id": "lost-runs",
                "input": said("queued behind"),
                "multitask_strategy": "enqueue",
            }
            behind = (await ca.post(f"/threads/{thread}/runs", json=queued)).json()
            assert behind["status"] == "pending", behind

            kill(a)

            assert (await ended(cb, thread, lost))["status"] == "error"
            assert (await ended(cb, thread, behind["run_id"]))["status"] == "error"
            joined = await cb.get(f"/threads/{thread}/runs/{lost}/join")
            assert joined.status_code == 200, joined.text
            assert_lost(joined.json()["__error__"])
            events = await join(cb, thread, lost, "-1")
            assert [name for _, name, _ in events][-2:] == ["error", "end"], events
            assert_lost(events[-2][2])
            cancelled = await cb.post(f"/threads/{thread}/runs/{behind['run_id']}/cancel")
            assert cancelled.status_code == 202, cancelled.text
            assert (await get_run(cb, thread, behind["run_id"]))["status"] == "error"
            rows = await run_rows(database_url, [lost, behind["run_id"]])
            for row in rows.values():  # the rows themselves were ended, naming A
                assert row["status"] == "error" and row["turn_committed"] is False, row
                assert row["lease_holder"] and f":{a.proc.pid}:" in row["lease_holder"], row
                assert_lost(row["error"])

            await set_model(cb, "lost-runs", FAST)
            ask = {
                "assistant_id": "lost-runs",
                "input": said("what is my name?"),
                "multitask_strategy": "reject",
            }
            answer = await cb.post(f"/threads/{thread}/runs/wait", json=ask)
            assert answer.status_code == 200, answer.text
            assert answer.json()["messages"][-1]["content"] == "Your name is Ada."

            retry = await cb.post(f"/threads/{thread}/runs", json=body, headers=key)
            assert retry.status_code == 200, retry.text
            again = retry.json()["run_id"]
            assert again != lost
            assert (await ended(cb, thread, again))["status"] == "success"
            repeated = await cb.post(f"/threads/{thread}/runs", json=body, headers=key)
            assert repeated.json()["run_id"] == again
            assert repeated.json()["status"] == "success"

            assert await thread_texts(cb, thread) == [
                ("user", "my name is Ada"),
                ("assistant", "Nice to meet you, Ada."),
                ("user", "what is my name?"),
                ("assistant", "Your name is Ada."),
                ("user", "my name is Mallory"),
                ("assistant", "Nice to meet you, Mallory."),
            ]
            row = await session_row(database_url, thread)
            assert row["lease_token"] is None and row["uncommitted"] == 0, row
        assert "Traceback" not in b.log(), b.log()[-3000:]

    @pytest.mark.timeout(300)
    async def test_its_streamed_turn_ends_with_an_error_event(
        self, replicas: list[ServeProcess]
    ) -> None:
        """A recorded /v1 turn of A's: its stream rejoined on B ends with an error event
        (replica_lost, retryable) and no done; its run reads as ended; the keyed retry on B
        runs the turn (it never committed), a fresh key runs normally."""
        a, b = replicas
        sid = "lost-stream"
        key = {"Idempotency-Key": "turn-1"}
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=60) as ca,
            httpx.AsyncClient(base_url=b.url, timeout=60) as cb,
        ):
            await make_agent(ca, "lost-turns", SLOW)
            created = await ca.put(f"/v1/sessions/{sid}", json={"agent_id": "lost-turns"})
            assert created.status_code == 201, created.text
            path = f"/v1/sessions/{sid}/messages"
            message = {"content": "my name is Mallory"}
            async with ca.stream("POST", path, json=message, headers={**SSE, **key}) as response:
                assert response.status_code == 200, await response.aread()
                location = response.headers["content-location"]
                async for _, name, data in sse_events(response):
                    assert name == "turn", (name, data)
                    turn_id = data["turn_id"]
                    break
                kill(a)

            async with cb.stream("GET", location, headers={"Last-Event-ID": "-1"}) as rejoined:
                assert rejoined.status_code == 200, await rejoined.aread()
                events: list[Event] = [e async for e in sse_events(rejoined)]
            names = [name for _, name, _ in events]
            assert names[-1] == "error" and "done" not in names, events
            assert_lost(events[-1][2])
            assert events[-1][2]["details"]["retryable"] is True, events
            assert (await get_run(cb, sid, turn_id))["status"] == "error"

            await set_model(cb, "lost-turns", FAST)
            retried = await cb.post(path, json=message, headers=key)
            assert retried.status_code == 200, retried.text
            assert retried.json()["reply"] == "Nice to meet you, Mallory."
            fresh = await cb.post(
                path, json={"content": "what is my name?"}, headers={"Idempotency-Key": "turn-2"}
            )
            assert fresh.status_code == 200, fresh.text
            assert fresh.json()["reply"] == "Your name is Mallory."
            assert await thread_texts(cb, sid) == [
                ("user", "my name is Mallory"),
                ("assistant", "Nice to meet you, Mallory."),
                ("user", "what is my name?"),
                ("assistant", "Your name is Mallory."),
            ]
        assert "Traceback" not in b.log(), b.log()[-3000:]


class TestLiveReplica:
    @pytest.mark.timeout(300)
    async def test_a_long_run_is_never_shown_lost(self, replicas: list[ServeProcess]) -> None:
        """A's run outlasting several heartbeat bounds reads as running on B every time, is
        busy for reject, its keyed retry is the same run; it ends success."""
        a, b = replicas
        key = {"Idempotency-Key": "live-1"}
        model = {"provider": "offline", "name": "deterministic", "params": {"delay_seconds": 6}}
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=60) as ca,
            httpx.AsyncClient(base_url=b.url, timeout=60) as cb,
        ):
            await make_agent(ca, "long-runs", model)
            thread = (await ca.post("/threads", json={})).json()["thread_id"]
            body = {
                "assistant_id": "long-runs",
                "input": said("my name is Ada"),
                "stream_resumable": True,
            }
            run_id = (await ca.post(f"/threads/{thread}/runs", json=body, headers=key)).json()[
                "run_id"
            ]
            seen: set[str] = set()
            refused = False
            deadline = time.monotonic() + DEADLINE
            while (status := (await get_run(cb, thread, run_id))["status"]) in ACTIVE:
                seen.add(status)
                listed = await cb.get(f"/threads/{thread}/runs")
                assert "error" not in [r["status"] for r in listed.json()], listed.text
                if status == "running" and not refused:
                    busy = await cb.post(
                        f"/threads/{thread}/runs",
                        json={"assistant_id": "long-runs", "input": said("me too")},
                    )
                    assert busy.status_code == 409, busy.text
                    retry = await cb.post(f"/threads/{thread}/runs", json=body, headers=key)
                    assert retry.json()["run_id"] == run_id, retry.text
                    refused = True
                assert time.monotonic() < deadline, "the run never ended"
                await asyncio.sleep(0.2)
            assert status == "success" and refused and "running" in seen, (status, seen)
            joined = await cb.get(f"/threads/{thread}/runs/{run_id}/join")
            assert joined.json()["messages"][-1]["content"] == "Nice to meet you, Ada."
            events = await join(cb, thread, run_id, "-1")
            assert "error" not in [name for _, name, _ in events], events
        for server in (a, b):
            assert "Traceback" not in server.log(), server.log()[-3000:]


DEAD_HOLDER = "dead-replica:0:test"


async def play_dead(database_url: str, run_id: str) -> None:
    """Make the run's holder a replica whose last beat is an hour old."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO replicas (holder, beat_at, liveness) "
            "VALUES (%s, now() - interval '1 hour', interval '1.5 seconds') "
            "ON CONFLICT (holder) DO NOTHING",
            (DEAD_HOLDER,),
        )
        await conn.execute(
            "UPDATE runs SET lease_holder = %s WHERE run_id = %s", (DEAD_HOLDER, run_id)
        )


class TestFence:
    async def test_a_run_ended_as_lost_keeps_its_turn_from_committing(
        self, runtime: Runtime, database_url: str
    ) -> None:
        """A turn whose run was read as lost mid-turn (its holder taken for dead) cannot
        commit when it ends: the run stays lost, the session keeps only its first turn."""
        model = ModelSpec(provider="offline", params={"delay_seconds": 2})
        await runtime.templates.create(
            TemplateSpec(name="x", model=model), owner="local", agent_id="fenced"
        )
        await runtime.session("fence-1", agent_id="fenced")
        await runtime.chat("fence-1", "my name is Ada")
        request = RunRequest("local", "fence-1", "fenced", TurnRequest(content="my name is Bob"))
        handle = await runtime.runs.create(request, subscribe=True)
        run_id = handle.run.run_id
        await play_dead(database_url, run_id)
        shown = await runtime.runs.get("local", "fence-1", run_id)
        assert shown.lost and shown.error is not None, shown
        names = [event.type async for event in handle.events()]
        assert names[-1] == "error", names
        after = await runtime.runs.join("local", "fence-1", run_id)
        assert after.lost, after
        session = await runtime.sessions.get("local", "fence-1")
        assert session.turns == 1, session
        history = await runtime.history("fence-1")
        assert [m["content"] for m in history] == ["my name is Ada", "Nice to meet you, Ada."]
