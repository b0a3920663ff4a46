"""Storage modes: one checkpoint per turn, retention, the state cache and the message
encoding cache all leave a session's state exactly as the naive mode does.

"Naive" is LangGraph's default: a checkpoint per step, every checkpoint kept, every turn
loading its state from Postgres. The same scripted conversation (memory, tool calls,
notes, an approval pause) runs in each mode on its own database; the final states must be
equal message for message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from runtime import Runtime, Settings
from runtime.agents import ModelSpec, TemplateSpec
from runtime.checkpoints import MessageCachingSerializer
from tests.conftest import temporary_database

AGENT = "storage-agent"
SESSION = "storage-1"

# Memory, tool calls (a read and a write), notes and plain chatter, repeated: many turns.
SCRIPT = [
    "my name is Alice",
    'use tool calculator with {"expression": "6 * 7"}',
    'use tool save_note with {"text": "likes tea"}',
    "what is my name?",
    "hello there",
]
ROUNDS = 8

NAIVE = {"checkpoint_durability": "async", "checkpoints_kept": 0, "state_cache_messages": 0}
DEFAULT: dict[str, Any] = {}


def comparable(messages: list[BaseMessage]) -> list[tuple[Any, ...]]:
    """A message list without what differs by construction (random ids, clock stamps)."""
    out: list[tuple[Any, ...]] = []
    call_index: dict[str, int] = {}
    for message in messages:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                call_index[call["id"] or ""] = len(call_index)
            calls = tuple((c["name"], repr(c["args"])) for c in message.tool_calls)
            out.append(("ai", message.text, calls, message.usage_metadata))
        elif isinstance(message, ToolMessage):
            out.append(
                (
                    "tool",
                    message.text,
                    message.name,
                    call_index[message.tool_call_id],
                    message.status,
                )
            )
        else:
            out.append((message.type, message.text))
    return out


@asynccontextmanager
async def runtime_on_new_database(
    postgres_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[Runtime]:
    with temporary_database(postgres_url) as url:
        settings = Settings(
            database_url=url, data_dir=tmp_path, sweep_interval_seconds=0, **overrides
        )
        async with Runtime.open(settings, sweeper=False) as rt:
            await rt.templates.create(
                TemplateSpec(
                    name=AGENT,
                    model=ModelSpec(provider="offline"),
                    tools=["calculator", "save_note"],
                    require_approval=["save_note"],
                ),
                owner="local",
                agent_id=AGENT,
            )
            yield rt


async def run_script(rt: Runtime) -> dict[str, Any]:
    """The scripted conversation; returns the final graph state's values."""
    await rt.session(SESSION, agent_id=AGENT)
    for _ in range(ROUNDS):
        for line in SCRIPT:
            result = await rt.chat(SESSION, line)
            if result.status == "awaiting_approval":
                result = await rt.resume(SESSION, [{"action": "approve"}])
            assert result.status == "completed"
    return await state_values(rt)


async def state_values(rt: Runtime) -> dict[str, Any]:
    session = await rt.sessions.get("local", SESSION)
    graph = (await rt.graphs.get(await rt.templates.get(AGENT))).graph
    state = await graph.aget_state({"configurable": {"thread_id": session.thread_id}})
    return dict(state.values)


async def checkpoint_rows(rt: Runtime) -> dict[str, int]:
    session = await rt.sessions.get("local", SESSION)
    counts: dict[str, int] = {}
    async with rt.pool.connection() as conn:
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            cur = await conn.execute(
                f"SELECT count(*) AS n FROM {table} WHERE thread_id = %s", (session.thread_id,)
            )
            row = await cur.fetchone()
            counts[table] = row["n"] if row else 0
    return counts


class TestStorageModes:
    @pytest.mark.timeout(300)
    async def test_default_mode_state_equals_the_naive_mode(
        self, postgres_url: str, tmp_path: Path
    ) -> None:
        """40 turns with tools, notes and approvals: the same state in both modes."""
        async with runtime_on_new_database(postgres_url, tmp_path, **NAIVE) as rt:
            naive = await run_script(rt)
            naive_rows = await checkpoint_rows(rt)
        async with runtime_on_new_database(postgres_url, tmp_path, **DEFAULT) as rt:
            tuned = await run_script(rt)
            tuned_rows = await checkpoint_rows(rt)
            # The cache served the turns (each turn's state was the one this process wrote).
            assert rt.checkpointer.hits >= ROUNDS * len(SCRIPT) - 1

        assert comparable(tuned["messages"]) == comparable(naive["messages"])
        assert tuned["notes"] == naive["notes"] == ["likes tea"] * ROUNDS
        # Per round: three plain turns (2 messages) and two tool turns (4 messages).
        assert len(naive["messages"]) == ROUNDS * (3 * 2 + 2 * 4)
        # The naive mode keeps every step's checkpoint; the default keeps the newest five.
        assert tuned_rows["checkpoints"] == 5
        assert naive_rows["checkpoints"] > ROUNDS * len(SCRIPT) * 3

    async def test_state_cache_off_gives_the_same_state(
        self, postgres_url: str, tmp_path: Path
    ) -> None:
        """Reading every turn's state from Postgres or from memory makes no difference."""
        async with runtime_on_new_database(postgres_url, tmp_path, state_cache_messages=0) as rt:
            uncached = await run_script(rt)
            assert rt.checkpointer.hits == 0
        async with runtime_on_new_database(postgres_url, tmp_path) as rt:
            cached = await run_script(rt)
        assert comparable(cached["messages"]) == comparable(uncached["messages"])


class TestRetention:
    async def test_keeps_the_newest_checkpoints_and_their_blobs_only(
        self, postgres_url: str, tmp_path: Path
    ) -> None:
        """checkpoints_kept=3: three checkpoints, and no blob or write without one."""
        async with runtime_on_new_database(postgres_url, tmp_path, checkpoints_kept=3) as rt:
            await run_script(rt)
            session = await rt.sessions.get("local", SESSION)
            async with rt.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT checkpoint_id, checkpoint FROM checkpoints WHERE thread_id = %s "
                    "ORDER BY checkpoint_id",
                    (session.thread_id,),
                )
                kept = await cur.fetchall()
                cur = await conn.execute(
                    "SELECT channel, version FROM checkpoint_blobs WHERE thread_id = %s",
                    (session.thread_id,),
                )
                blobs = {(r["channel"], r["version"]) for r in await cur.fetchall()}
                cur = await conn.execute(
                    "SELECT DISTINCT checkpoint_id FROM checkpoint_writes WHERE thread_id = %s",
                    (session.thread_id,),
                )
                written = {r["checkpoint_id"] for r in await cur.fetchall()}
            assert len(kept) == 3
            assert kept[-1]["checkpoint_id"] == session.committed_checkpoint_id
            referenced = {
                (channel, version)
                for row in kept
                for channel, version in row["checkpoint"]["channel_versions"].items()
            }
            assert blobs <= referenced, "a blob outlived every checkpoint that used it"
            assert written <= {r["checkpoint_id"] for r in kept}
            # Time travel within what is kept still works, and the session goes on.
            graph = (await rt.graphs.get(await rt.templates.get(AGENT))).graph
            history = [
                s
                async for s in graph.aget_state_history(
                    {"configurable": {"thread_id": session.thread_id}}, limit=10
                )
            ]
            assert len(history) == 3
            result = await rt.chat(SESSION, "what is my name?")
            assert result.reply == "Your name is Alice."

    async def test_zero_keeps_every_checkpoint(self, postgres_url: str, tmp_path: Path) -> None:
        async with runtime_on_new_database(postgres_url, tmp_path, checkpoints_kept=0) as rt:
            await rt.session(SESSION, agent_id=AGENT)
            for i in range(12):
                await rt.chat(SESSION, f"hello {i}")
            # Two per turn (the input applied, the turn's end) and the empty first state.
            assert (await checkpoint_rows(rt))["checkpoints"] == 25


class TestStateCacheAcrossReplicas:
    async def test_alternating_replicas_never_serve_a_stale_state(
        self, postgres_url: str, tmp_path: Path
    ) -> None:
        """Two runtimes on one database take turns: each sees the other's last turn."""
        with temporary_database(postgres_url) as url:
            settings = Settings(database_url=url, data_dir=tmp_path, sweep_interval_seconds=0)
            async with (
                Runtime.open(settings, sweeper=False) as a,
                Runtime.open(settings, sweeper=False) as b,
            ):
                await a.session("alt-1")
                for i in range(6):
                    rt = a if i % 2 == 0 else b
                    result = await rt.chat("alt-1", f"my name is Name{i}")
                    assert result.reply == f"Nice to meet you, Name{i}."
                    recall = await rt.chat("alt-1", "what is my name?")
                    assert recall.reply == f"Your name is Name{i}."
                # Each replica's first turn after the other's missed the cache (a's very
                # first turn had no checkpoint to look for).
                assert a.checkpointer.misses == 2 and b.checkpointer.misses == 3
                assert a.checkpointer.hits >= 3 and b.checkpointer.hits >= 3
                history = await a.history("alt-1")
                assert len(history) == 24


class TestMessageEncodingCache:
    def test_bytes_equal_the_plain_serializer(self) -> None:
        """Cached encodings are byte for byte what LangGraph's serializer writes."""
        messages: list[BaseMessage] = [
            HumanMessage("hello", id="h1", response_metadata={"created_at": "2026-01-01"}),
            AIMessage(
                "",
                id="a1",
                tool_calls=[{"name": "calculator", "args": {"expression": "1+1"}, "id": "c1"}],
            ),
            ToolMessage("2", tool_call_id="c1", name="calculator", id="t1"),
        ]
        plain = JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)
        cached = MessageCachingSerializer(pickle_fallback=False, allowed_msgpack_modules=None)
        state = {"messages": messages, "notes": ["n"]}
        first = cached.dumps_typed(messages)
        assert first == plain.dumps_typed(messages)
        assert cached.dumps_typed(messages) == first  # now from the cache
        assert cached.dumps_typed(state) == plain.dumps_typed(state)
        assert plain.loads_typed(first) == messages
        # An update replaces a message with a copy; the copy is encoded afresh.
        edited = messages[1].model_copy(
            update={
                "tool_calls": [{"name": "calculator", "args": {"expression": "2+2"}, "id": "c1"}]
            }
        )
        assert cached.dumps_typed([edited]) == plain.dumps_typed([edited])
        assert cached.dumps_typed([edited]) != cached.dumps_typed([messages[1]])
