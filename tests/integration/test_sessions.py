"""Sessions and turns on a real Postgres: memory, isolation, versions, concurrency, tools."""

from __future__ import annotations

import asyncio

import pytest

from runtime import (
    Conflict,
    InvalidInput,
    NotFound,
    Runtime,
    SessionBusy,
    SessionInactive,
    Settings,
)
from runtime.agents import ModelSpec, TemplateSpec
from tests.support.checks import eventually

# Run a second time through pgbouncer in transaction mode (tests/conftest.py).
BEHIND_PGBOUNCER = True


async def slow_agent(rt: Runtime, agent_id: str, delay: float) -> None:
    await rt.templates.create(
        TemplateSpec(
            name=agent_id,
            model=ModelSpec(provider="offline", params={"delay_seconds": delay}),
            tools=["calculator"],
        ),
        owner="local",
        agent_id=agent_id,
    )


def roles(history: list[dict]) -> list[str]:
    return [m["role"] for m in history]


class TestMemory:
    async def test_multi_turn_memory(self, runtime: Runtime) -> None:
        """A later turn answers from what an earlier turn said."""
        await runtime.session("mem-1")
        first = await runtime.chat("mem-1", "my name is Alice")
        assert "Alice" in first.reply
        second = await runtime.chat("mem-1", "what is my name?")
        assert second.reply == "Your name is Alice."
        assert roles(await runtime.history("mem-1")) == ["user", "assistant"] * 2

    async def test_memory_survives_restart(self, settings: Settings) -> None:
        """A full shutdown and restart on the same database keeps the conversation."""
        async with Runtime.open(settings) as rt:
            await rt.session("restart-1")
            await rt.chat("restart-1", "my favourite colour is green")
        async with Runtime.open(settings) as rt:
            reply = await rt.chat("restart-1", "what is my favourite colour?")
            assert reply.reply == "Your favourite colour is green."
            session = await rt.sessions.get("local", "restart-1")
            assert session.turns == 2


class TestIsolation:
    async def test_two_sessions_of_one_agent(self, runtime: Runtime) -> None:
        """Two sessions of the same agent never see each other's messages."""
        await runtime.session("alice-site-a", metadata={"domain": "a.example"})
        await runtime.session("bob-site-b", metadata={"domain": "b.example"})
        await runtime.chat("alice-site-a", "my name is Alice")
        other = await runtime.chat("bob-site-b", "what is my name?")
        assert other.reply == "I don't know your name yet."
        mine = await runtime.chat("alice-site-a", "what is my name?")
        assert mine.reply == "Your name is Alice."
        assert all("Alice" not in m["content"] for m in await runtime.history("bob-site-b"))

    async def test_two_owners_same_session_id(self, runtime: Runtime) -> None:
        """The same session_id under two owners is two threads."""
        a, _ = await runtime.sessions.get_or_create("owner-a", "shared", agent_id="default")
        b, _ = await runtime.sessions.get_or_create("owner-b", "shared", agent_id="default")
        assert a.thread_id != b.thread_id
        await runtime.chat("shared", "my name is Alice", owner="owner-a")
        reply = await runtime.chat("shared", "what is my name?", owner="owner-b")
        assert reply.reply == "I don't know your name yet."
        assert len(await runtime.history("shared", owner="owner-a")) == 2
        assert len(await runtime.history("shared", owner="owner-b")) == 2
        with pytest.raises(NotFound):
            await runtime.chat("shared", "hi", owner="owner-c")


class TestTemplateVersions:
    async def test_update_changes_new_turns_and_compiles_once(self, runtime: Runtime) -> None:
        """An update bumps the version; new turns use it; each version compiles once."""
        agent = await runtime.templates.create(
            TemplateSpec(name="v", system_prompt="Speak like a pirate."), owner="local"
        )
        await runtime.session("ver-1", agent_id=agent.agent_id)
        before = runtime.graphs.compiles
        for _ in range(3):
            r = await runtime.chat("ver-1", "what are your instructions?")
            assert r.reply == "My instructions are: Speak like a pirate."
        assert runtime.graphs.compiles == before + 1
        updated = await runtime.templates.update(
            agent.agent_id, {"system_prompt": "Speak like a poet."}
        )
        assert updated.version == agent.version + 1
        for _ in range(3):
            r = await runtime.chat("ver-1", "what are your instructions?")
            assert r.reply == "My instructions are: Speak like a poet."
        assert runtime.graphs.compiles == before + 2

    async def test_invalid_template_is_refused(self, runtime: Runtime) -> None:
        """Unknown tools and graph kinds are rejected before anything is stored."""
        with pytest.raises(InvalidInput):
            await runtime.templates.create(TemplateSpec(name="x", tools=["rm_rf"]), owner="local")
        with pytest.raises(InvalidInput):
            await runtime.templates.create(TemplateSpec(name="x", graph_kind="dag"), owner="local")
        agent = await runtime.templates.create(TemplateSpec(name="ok"), owner="local")
        with pytest.raises(InvalidInput):
            await runtime.templates.update(agent.agent_id, {"tools": ["nope"]})
        assert (await runtime.templates.get(agent.agent_id)).version == 1


class TestConcurrentTurns:
    async def test_second_turn_is_refused_while_one_runs(self, runtime: Runtime) -> None:
        """A concurrent turn on a busy session is refused and the history is not forked."""
        await slow_agent(runtime, "slow-a", 0.5)
        await runtime.session("busy-1", agent_id="slow-a")
        results = await asyncio.gather(
            runtime.chat("busy-1", "first"),
            runtime.chat("busy-1", "second"),
            return_exceptions=True,
        )
        busy = [r for r in results if isinstance(r, SessionBusy)]
        done = [r for r in results if not isinstance(r, BaseException)]
        assert len(busy) == 1 and len(done) == 1
        assert roles(await runtime.history("busy-1")) == ["user", "assistant"]

    async def test_waiting_turns_are_serialised(self, settings: Settings) -> None:
        """With a wait bound, concurrent turns run one after another, never interleaved."""
        waiting = settings.model_copy(update={"lease_wait_seconds": 10})
        async with Runtime.open(waiting) as rt:
            await slow_agent(rt, "slow-b", 0.2)
            await rt.session("serial-1", agent_id="slow-b")
            texts = [f"message {i}" for i in range(4)]
            await asyncio.gather(*(rt.chat("serial-1", t) for t in texts))
            history = await rt.history("serial-1")
        assert roles(history) == ["user", "assistant"] * 4
        for user, assistant in zip(history[::2], history[1::2], strict=True):
            assert assistant["content"] == f"You said: {user['content']}"
        assert sorted(m["content"] for m in history[::2]) == texts

    async def test_long_turn_renews_its_lease(self, settings: Settings) -> None:
        """A turn longer than the lease timeout keeps the session to itself until it ends."""
        short = settings.model_copy(update={"lease_timeout_seconds": 1.2})
        async with Runtime.open(short) as a, Runtime.open(short) as b:
            await slow_agent(a, "slow-r", 4.0)
            await a.session("renew-1", agent_id="slow-r")
            turn = asyncio.create_task(a.chat("renew-1", "hello"))

            async def leased() -> bool:
                assert not turn.done(), turn
                return (await b.session("renew-1", agent_id="slow-r")).state == "running"

            await eventually(leased, "a's turn to take its lease", interval=0.02)
            for _ in range(4):  # well past the 1.2 s timeout, the lease is still held
                await asyncio.sleep(0.6)
                with pytest.raises(SessionBusy):
                    await b.chat("renew-1", "intruder")
            assert (await turn).reply == "You said: hello"
            assert roles(await b.history("renew-1")) == ["user", "assistant"]


class TestSessionLifecycle:
    async def test_get_or_create_and_agent_conflict(self, runtime: Runtime) -> None:
        """The second get-or-create returns the same session; another agent is a conflict."""
        first, created = await runtime.sessions.get_or_create(
            "local", "goc-1", agent_id="default", name="n", metadata={"ip": "10.0.0.1"}
        )
        again, created_again = await runtime.sessions.get_or_create(
            "local", "goc-1", agent_id="default"
        )
        assert created and not created_again
        assert again.thread_id == first.thread_id and again.metadata == {"ip": "10.0.0.1"}
        await runtime.templates.create(TemplateSpec(name="other"), owner="local", agent_id="other")
        with pytest.raises(Conflict):
            await runtime.sessions.get_or_create("local", "goc-1", agent_id="other")

    async def test_generated_ids_and_validation(self, runtime: Runtime) -> None:
        """No id gets a generated one; malformed ids and oversized metadata are refused."""
        session = await runtime.session()
        assert session.session_id.startswith("ses_")
        for bad in ["", "has space", "x" * 129, "../etc", "-leading"]:
            with pytest.raises(InvalidInput):
                await runtime.sessions.get_or_create("local", bad, agent_id="default")
        with pytest.raises(InvalidInput):
            await runtime.session("big-meta", metadata={"blob": "x" * 20_000})
        with pytest.raises(NotFound):
            await runtime.session("s", agent_id="no-such-agent")

    async def test_bad_messages_are_refused_without_a_trace(self, runtime: Runtime) -> None:
        """Empty or oversized messages are refused and leave the session untouched."""
        await runtime.session("bad-msg")
        for content in ["", "   ", "x" * 40_000]:
            with pytest.raises(InvalidInput):
                await runtime.chat("bad-msg", content)
        session = await runtime.sessions.get("local", "bad-msg")
        assert session.turns == 0 and await runtime.history("bad-msg") == []

    async def test_counters_and_activity(self, runtime: Runtime) -> None:
        """Turns update the counters, last activity and the sliding expiry."""
        created = await runtime.session("count-1")
        await runtime.chat("count-1", "hello")
        result = await runtime.chat("count-1", "what is 6 * 7?")
        session = await runtime.sessions.get("local", "count-1")
        assert session.turns == 2
        assert session.messages == 2 + len(result.messages) == 6
        assert session.tokens_in > 0 and session.tokens_out > 0
        assert session.model_latency_ms >= 0
        assert session.last_activity_at > created.last_activity_at
        assert session.expires_at > created.expires_at

    async def test_inactive_session_refuses_turns(self, runtime: Runtime) -> None:
        """A deactivated session refuses turns until it is activated again."""
        await runtime.session("inactive-1")
        await runtime.sessions.set_status("local", "inactive-1", "inactive")
        with pytest.raises(SessionInactive):
            await runtime.chat("inactive-1", "hello")
        await runtime.sessions.set_status("local", "inactive-1", "active")
        assert (await runtime.chat("inactive-1", "hello")).reply == "You said: hello"


class TestTools:
    async def test_calculator_round_trip(self, runtime: Runtime) -> None:
        """The model calls the calculator and answers with its result, all in history."""
        await runtime.session("calc-1")
        result = await runtime.chat("calc-1", "what is (2 + 3) * 4?")
        assert result.reply == "The result is 20."
        call, tool_result = result.messages[1], result.messages[2]
        assert call["tool_calls"][0]["name"] == "calculator"
        assert tool_result["role"] == "tool" and tool_result["content"] == "20"
        assert tool_result["tool_call_id"] == call["tool_calls"][0]["id"]
        assert roles(await runtime.history("calc-1")) == ["user", "assistant", "tool", "assistant"]

    async def test_notes_are_per_session(self, runtime: Runtime) -> None:
        """The notes tool writes to its own session's state only."""
        await runtime.session("notes-a")
        await runtime.session("notes-b")
        await runtime.chat("notes-a", "note: the code is 1234")
        mine = await runtime.chat("notes-a", "what are my notes?")
        theirs = await runtime.chat("notes-b", "what are my notes?")
        assert "the code is 1234" in mine.reply
        assert "No notes yet" in theirs.reply


class TestStreaming:
    async def test_tokens_concatenate_to_reply(self, runtime: Runtime) -> None:
        """Streamed tokens add up to the final reply, then usage and done arrive."""
        await runtime.session("stream-1")
        events = [e async for e in runtime.stream("stream-1", "my name is Bob")]
        types = [e.type for e in events]
        assert types[-2:] == ["usage", "done"]
        tokens = "".join(e.data["content"] for e in events if e.type == "token")
        assert types.count("token") > 1
        assert tokens == events[-1].data["reply"] == "Nice to meet you, Bob."

    async def test_tool_events(self, runtime: Runtime) -> None:
        """A tool turn streams its tool call and tool result before the answer."""
        await runtime.session("stream-2")
        events = [e async for e in runtime.stream("stream-2", "calculate 6 * 7")]
        types = [e.type for e in events]
        assert types.index("tool_call") < types.index("tool_result") < types.index("done")
        call = next(e for e in events if e.type == "tool_call").data
        assert call["name"] == "calculator" and call["args"] == {"expression": "6 * 7"}
        assert events[-1].data["reply"] == "The result is 42."

    async def test_abandoned_stream_still_completes(self, runtime: Runtime) -> None:
        """A consumer that stops reading does not leave the session half-written."""
        await slow_agent(runtime, "slow-c", 0.3)
        await runtime.session("stream-3", agent_id="slow-c")
        stream = runtime.stream("stream-3", "calculate 1 + 1")
        first = await anext(stream)
        assert first.type in ("tool_call", "message", "token")
        await stream.aclose()
        for _ in range(100):
            if runtime.turns.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        history = await runtime.history("stream-3")
        assert roles(history) == ["user", "assistant", "tool", "assistant"]
        assert (await runtime.chat("stream-3", "hello")).reply == "You said: hello"

    async def test_errors_before_start_are_raised(self, runtime: Runtime) -> None:
        """An unknown session fails when the stream starts, before any event."""
        with pytest.raises(NotFound):
            await anext(runtime.stream("nope", "hello"))
