"""Turn leases across processes: a crashed holder, and two replicas on one session.

Real Postgres, real processes: ``tests/support/hold_turn.py`` runs a slow turn in a
subprocess that is SIGKILLed mid-turn; two ``Runtime`` instances with separate pools play
two replicas of the service. A killed holder's sessions are free once its heartbeat is
stale (``SESSIONGRAPH_HEARTBEAT_TIMEOUT_SECONDS``); one that still looks alive keeps them
until its lease lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import Conflict, Runtime, SessionBusy, Settings
from runtime.agents import ModelSpec, TemplateSpec
from tests.support.checks import eventually

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LEASE_TIMEOUT = 2.0
# The lease of the killed holder that must still be live when the test first tries the
# session (renewed every third of it until the kill).
DEAD_LEASE = 6.0
FAST_MODEL = {"provider": "offline", "name": "deterministic", "params": {}}


def replica_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for one replica: short leases, no sweeper, a small pool."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": tmp_path,
        "sweep_interval_seconds": 0,
        "lease_timeout_seconds": LEASE_TIMEOUT,
        "pool_min_size": 1,
        "pool_max_size": 4,
    }
    values.update(overrides)
    return Settings(**values)


async def lease_row(database_url: str, session_id: str) -> dict[str, Any] | None:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        cur = await conn.execute(
            "SELECT lease_token, lease_expires_at, turns, messages FROM sessions "
            "WHERE owner = 'local' AND session_id = %s",
            (session_id,),
        )
        return await cur.fetchone()


async def wait_for_lease(database_url: str, session_id: str, timeout: float = 30.0) -> str:
    """Wait until some turn holds ``session_id``'s lease and return its token."""

    async def held() -> str | None:
        row = await lease_row(database_url, session_id)
        return row["lease_token"] if row else None

    return await eventually(held, f"a lease on {session_id}", timeout)


async def wait_for_turn_checkpoint(
    database_url: str, session_id: str, *, min_step: int = 0, timeout: float = 30.0
) -> None:
    """Wait until the session's thread has a checkpoint of step ``min_step`` or later."""

    async def written() -> bool:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT 1 FROM checkpoints c JOIN sessions s ON s.thread_id = c.thread_id "
                "WHERE s.owner = 'local' AND s.session_id = %s "
                "AND (c.metadata->>'step')::int >= %s",
                (session_id, min_step),
            )
            return await cur.fetchone() is not None

    await eventually(written, f"a checkpoint of {session_id}'s turn", timeout)


def assert_well_formed(history: list[dict[str, Any]]) -> None:
    """Every tool call has its result, every result its call, no role out of place."""
    assert history, "empty history"
    open_calls: set[str] = set()
    previous: str | None = None
    for i, message in enumerate(history):
        role = message["role"]
        assert role in {"user", "assistant", "tool"}, f"unexpected role at {i}: {message}"
        if role == "user":
            assert not open_calls, f"tool calls {open_calls} have no result before message {i}"
        elif role == "assistant":
            # An assistant speaks after a user message or after tool results, never twice.
            assert previous in {"user", "tool"}, f"assistant at {i} follows {previous}"
            assert not open_calls, f"assistant at {i} while calls {open_calls} are open"
            open_calls = {call["id"] for call in message.get("tool_calls", [])}
        else:
            assert message["tool_call_id"] in open_calls, f"tool result at {i} has no call"
            open_calls.discard(message["tool_call_id"])
        previous = role
    assert not open_calls, f"tool calls {open_calls} never got a result"
    assert history[-1]["role"] == "assistant", "the history ends mid-turn"


def assert_turns_alternate(history: list[dict[str, Any]]) -> None:
    """Every user message is answered: user, (assistant + tools)*, assistant, user, ..."""
    roles = [m["role"] for m in history if m["role"] != "tool"]
    collapsed = [r for i, r in enumerate(roles) if i == 0 or r != roles[i - 1] or r == "user"]
    assert collapsed == ["user", "assistant"] * (len(collapsed) // 2), (
        f"unanswered or doubled turns: {[(m['role'], m['content']) for m in history]}"
    )


async def open_runtimes(stack: AsyncExitStack, *settings: Settings) -> list[Runtime]:
    return [await stack.enter_async_context(Runtime.open(s, sweeper=False)) for s in settings]


@asynccontextmanager
async def holder_process(database_url: str, log_path: Path, **hold_env: str) -> AsyncIterator[Any]:
    """Run ``tests/support/hold_turn.py``; kill it on the way out whatever happened."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SESSIONGRAPH_", "HOLD_"))
        and k not in {"DATABASE_URL", "OPENAI_API_KEY"}
    }
    env.update(hold_env)
    env["DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.hold_turn",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def kill_holder_mid_turn(
    database_url: str,
    log_path: Path,
    session_id: str = "crash-1",
    agent_id: str = "slow",
    *,
    min_step: int | None = 0,
    durability: str = "async",
    **hold_env: str,
) -> str:
    """Run the holder until its turn has checkpointed step ``min_step``, then SIGKILL it.

    Step 0 holds the turn's user message (its model call is then under way); with tools,
    step 2 also holds the assistant's tool call and its result. ``min_step=None`` kills as
    soon as the turn holds the lease. Returns the dead lease token.
    """
    hold_env = {
        "HOLD_SESSION_ID": session_id,
        "HOLD_AGENT_ID": agent_id,
        # "async": per-step checkpoints, so the kill lands after some of the turn is written
        # (the default, "exit", writes the turn's one checkpoint at its end).
        "SESSIONGRAPH_CHECKPOINT_DURABILITY": durability,
        **hold_env,
    }
    async with holder_process(database_url, log_path, **hold_env) as proc:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        except TimeoutError:
            pytest.fail(f"hold_turn never said holding:\n{log_path.read_text()}")
        assert line.decode().strip() == "holding", log_path.read_text()
        token = await wait_for_lease(database_url, session_id)
        if min_step is not None:
            await wait_for_turn_checkpoint(database_url, session_id, min_step=min_step)
        assert proc.returncode is None, log_path.read_text()
        row = await lease_row(database_url, session_id)
        assert row is not None and row["lease_token"] == token, "the turn ended before the kill"

        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == -signal.SIGKILL
    return token


async def chat_once_lease_lapses(
    rt: Runtime, session_id: str, content: str, lease_timeout: float = LEASE_TIMEOUT
) -> Any:
    """Retry a turn while the dead holder's lease (``lease_timeout``) is still live
    (bounded)."""

    async def attempt() -> Any:
        try:
            return await asyncio.wait_for(rt.chat(session_id, content), 30)
        except SessionBusy:
            return None

    return await eventually(attempt, "the dead lease to lapse", lease_timeout + 10, interval=0.2)


class TestCrashedHolder:
    """A process killed mid-turn leaves a lease that lapses, and no half-written turn."""

    @pytest.mark.timeout(180)
    async def test_killed_holder_is_free_once_its_heartbeat_is_stale(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """With an hour-long lease, a killed holder's session is served again (only its
        stale heartbeat can have freed it); what it wrote is rolled back."""
        settings = replica_settings(database_url, tmp_path)
        async with Runtime.open(settings, sweeper=False) as rt:
            await kill_holder_mid_turn(
                database_url,
                tmp_path / "hold_turn.log",
                "crash-beat",
                "slow-beat",
                HOLD_LEASE_TIMEOUT_SECONDS="3600",
            )
            killed = asyncio.get_running_loop().time()
            await rt.templates.update("slow-beat", {"model": FAST_MODEL})
            result = await chat_once_lease_lapses(rt, "crash-beat", "my name is Dan")
            stalled = asyncio.get_running_loop().time() - killed
            print(f"the killed holder's session was served again {stalled:.2f} s after the kill")
            assert result.reply == "Nice to meet you, Dan."
            assert [(m["role"], m["content"]) for m in await rt.history("crash-beat")] == [
                ("user", "my name is Dan"),
                ("assistant", "Nice to meet you, Dan."),
            ]

    @pytest.mark.timeout(180)
    async def test_killed_holder_blocks_until_lease_lapses_then_turn_succeeds(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """A holder that still looks alive (a long heartbeat bound) keeps its session busy
        until its lease lapses; then a turn succeeds; history is clean."""
        settings = replica_settings(database_url, tmp_path)
        log_path = tmp_path / "hold_turn.log"
        async with Runtime.open(settings, sweeper=False) as rt:
            # Killed while its model call (60 s) runs, its "hello" already checkpointed. Its
            # lease lapses two thirds of DEAD_LEASE after the kill at the soonest: the busy
            # check below must come before that, however slowly a loaded machine gets there.
            dead_token = await kill_holder_mid_turn(
                database_url,
                log_path,
                SESSIONGRAPH_HEARTBEAT_TIMEOUT_SECONDS="600",
                HOLD_LEASE_TIMEOUT_SECONDS=str(DEAD_LEASE),
            )

            # The dead process's lease is still on the row, so the session refuses a turn.
            row = await lease_row(database_url, "crash-1")
            assert row is not None and row["lease_token"] == dead_token
            with pytest.raises(SessionBusy):
                await asyncio.wait_for(rt.chat("crash-1", "am I locked out?"), timeout=30)

            # A new template version answers at once (the killed turn ran version 1).
            updated = await rt.templates.update("slow", {"model": FAST_MODEL})
            assert updated.version == 2

            result = await chat_once_lease_lapses(rt, "crash-1", "my name is Bob", DEAD_LEASE)
            assert result.reply == "Nice to meet you, Bob."

            history = await rt.history("crash-1")
            assert_well_formed(history)
            assert_turns_alternate(history)
            # The killed turn is gone whole: its checkpointed "hello" was rolled back.
            assert [(m["role"], m["content"]) for m in history] == [
                ("user", "my name is Bob"),
                ("assistant", "Nice to meet you, Bob."),
            ]

            row = await lease_row(database_url, "crash-1")
            assert row is not None
            assert row["lease_token"] is None, "the successful turn did not free its lease"
            assert row["turns"] == 1, "the killed turn was counted as completed"
            assert row["messages"] == len(history), "counters and history disagree"

    @pytest.mark.timeout(180)
    async def test_default_durability_writes_nothing_before_the_turn_ends(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """With one checkpoint per turn, a turn killed mid-way leaves no checkpoint at all."""
        settings = replica_settings(database_url, tmp_path)
        async with Runtime.open(settings, sweeper=False) as rt:
            await kill_holder_mid_turn(
                database_url,
                tmp_path / "hold_turn.log",
                "crash-exit",
                "slow-exit",
                min_step=None,
                durability="exit",
            )
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM checkpoints c JOIN sessions s "
                    "ON s.thread_id = c.thread_id WHERE s.session_id = 'crash-exit'"
                )
                assert await cur.fetchone() == (0,)
            await rt.templates.update("slow-exit", {"model": FAST_MODEL})
            result = await chat_once_lease_lapses(rt, "crash-exit", "my name is Eve")
            assert result.reply == "Nice to meet you, Eve."
            history = await rt.history("crash-exit")
            assert [(m["role"], m["content"]) for m in history] == [
                ("user", "my name is Eve"),
                ("assistant", "Nice to meet you, Eve."),
            ]

    @pytest.mark.timeout(180)
    async def test_killed_tool_turn_is_rolled_back_whole(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """A turn killed after its tool call and result were saved leaves none of them."""
        settings = replica_settings(database_url, tmp_path)
        async with Runtime.open(settings, sweeper=False) as rt:
            # The delay applies to every model call: the kill lands in the second one, after
            # step 1 (assistant tool call) and step 2 (tool result) are checkpointed.
            await kill_holder_mid_turn(
                database_url,
                tmp_path / "hold_turn.log",
                "crash-tools",
                "slow-tools",
                min_step=2,
                HOLD_MESSAGE="what is 6 * 7?",
                HOLD_TOOLS="calculator",
                HOLD_DELAY_SECONDS="3",
            )
            await rt.templates.update("slow-tools", {"model": FAST_MODEL})
            result = await chat_once_lease_lapses(rt, "crash-tools", "what is 2 + 3?")
            assert result.reply == "The result is 5."

            history = await rt.history("crash-tools")
            assert_well_formed(history)
            assert_turns_alternate(history)
            assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
            assert history[0]["content"] == "what is 2 + 3?"
            assert history[-1]["content"] == "The result is 5."
            assert all("6 * 7" not in str(m) and "42" not in m["content"] for m in history)
            session = await rt.sessions.get("local", "crash-tools")
            assert session.turns == 1
            assert session.messages == len(history), "counters and history disagree"


class TestTwoReplicas:
    """Two runtimes (two pools, like two replicas) serialise turns on one session."""

    SESSION = "replicas-1"
    AGENT = "slow-replica"

    async def _prepare(self, rt: Runtime, session_id: str, delay: float) -> None:
        """An agent whose every answer takes ``delay`` seconds, and a session on it."""
        agent_id = f"{self.AGENT}-{delay:g}"
        spec = TemplateSpec(
            name="slow replica",
            model=ModelSpec(provider="offline", params={"delay_seconds": delay}),
        )
        with contextlib.suppress(Conflict):
            await rt.templates.create(spec, owner="local", agent_id=agent_id)
        await rt.session(session_id, agent_id=agent_id)

    @pytest.mark.timeout(120)
    async def test_other_replica_is_refused_while_a_turn_runs(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """Replica B gets SessionBusy during A's slow turn, even after one lease timeout."""
        session_id = f"{self.SESSION}-busy"
        async with AsyncExitStack() as stack:
            a, b = await open_runtimes(
                stack,
                replica_settings(database_url, tmp_path),
                replica_settings(database_url, tmp_path),
            )
            # Three lease timeouts long: only A's renewals keep the lease held that long.
            await self._prepare(a, session_id, delay=3 * LEASE_TIMEOUT)
            turn_a = asyncio.create_task(a.chat(session_id, "my name is Alice"))
            try:
                await wait_for_lease(database_url, session_id)
                with pytest.raises(SessionBusy):
                    await b.chat(session_id, "what is my name?")
                # Past one lease timeout, A's renewals still keep B out.
                await asyncio.sleep(LEASE_TIMEOUT * 1.25)
                assert not turn_a.done(), "the slow turn ended early; the check proves nothing"
                with pytest.raises(SessionBusy):
                    await b.chat(session_id, "what is my name?")
                result_a = await asyncio.wait_for(turn_a, timeout=60)
            finally:
                if not turn_a.done():
                    turn_a.cancel()
            assert result_a.reply == "Nice to meet you, Alice."
            history = await b.history(session_id)
            assert [(m["role"], m["content"]) for m in history] == [
                ("user", "my name is Alice"),
                ("assistant", "Nice to meet you, Alice."),
            ]

    @pytest.mark.timeout(120)
    async def test_waiting_replica_runs_after_the_first_turn(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """With lease_wait_seconds, B waits for A's turn and then sees it; never interleaved."""
        session_id = f"{self.SESSION}-wait"
        async with AsyncExitStack() as stack:
            a, b = await open_runtimes(
                stack,
                replica_settings(database_url, tmp_path),
                replica_settings(database_url, tmp_path, lease_wait_seconds=60),
            )
            await self._prepare(a, session_id, delay=2 * LEASE_TIMEOUT)
            finished: list[str] = []

            async def run(rt: Runtime, name: str, content: str) -> Any:
                result = await rt.chat(session_id, content)
                finished.append(name)
                return result

            turn_a = asyncio.create_task(run(a, "a", "my name is Alice"))
            try:
                await wait_for_lease(database_url, session_id)
                result_b = await asyncio.wait_for(run(b, "b", "what is my name?"), timeout=90)
                result_a = await asyncio.wait_for(turn_a, timeout=60)
            finally:
                if not turn_a.done():
                    turn_a.cancel()
            assert finished == ["a", "b"]
            assert result_a.reply == "Nice to meet you, Alice."
            # B ran on A's finished turn: its model saw A's message.
            assert result_b.reply == "Your name is Alice."

            for rt in (a, b):
                history = await rt.history(session_id)
                assert_well_formed(history)
                assert [(m["role"], m["content"]) for m in history] == [
                    ("user", "my name is Alice"),
                    ("assistant", "Nice to meet you, Alice."),
                    ("user", "what is my name?"),
                    ("assistant", "Your name is Alice."),
                ]
            row = await lease_row(database_url, session_id)
            assert row is not None
            assert row["lease_token"] is None
            assert row["turns"] == 2
            assert row["messages"] == 4
