"""A summariser keeps what trimming drops from the model's input, in the session's state."""

from __future__ import annotations

from uuid import uuid4

from runtime import Runtime
from runtime.agents import ModelSpec, TemplateSpec

FILLER = "Here is a long aside about the weather, the trains and the price of bread. " * 4


async def small_window_agent(rt: Runtime, *, summary: bool) -> str:
    template = await rt.templates.create(
        TemplateSpec(
            name="small window",
            max_context_tokens=150,
            summary_model=ModelSpec(provider="offline") if summary else None,
        ),
        owner="local",
    )
    return template.agent_id


async def converse(rt: Runtime, agent_id: str) -> str:
    """Say a name, push it out of the window, then ask for it; return the session id."""
    sid = f"sum-{uuid4().hex[:8]}"
    await rt.session(sid, agent_id=agent_id)
    await rt.chat(sid, "my name is Alice")
    for _ in range(3):
        await rt.chat(sid, FILLER)
    return sid


async def summary_of(rt: Runtime, sid: str) -> dict[str, object]:
    session = await rt.sessions.get("local", sid)
    saved = await rt.checkpointer.aget_tuple(
        {"configurable": {"thread_id": session.thread_id, "checkpoint_ns": ""}}
    )
    assert saved is not None
    values = saved.checkpoint["channel_values"]
    return {"summary": values.get("summary"), "summarized": values.get("summarized")}


class TestSummary:
    async def test_without_a_summariser_trimmed_facts_are_gone(self, runtime: Runtime) -> None:
        """The window really drops the early turn: without a summary the name is unknown."""
        sid = await converse(runtime, await small_window_agent(runtime, summary=False))
        assert (await runtime.chat(sid, "what is my name?")).reply == "I don't know your name yet."

    async def test_summary_keeps_what_the_window_dropped(self, runtime: Runtime) -> None:
        """With a summariser the trimmed statement survives in the summary the model sees."""
        sid = await converse(runtime, await small_window_agent(runtime, summary=True))
        assert (await runtime.chat(sid, "what is my name?")).reply == "Your name is Alice."
        kept = await summary_of(runtime, sid)
        assert "my name is Alice" in str(kept["summary"])
        assert isinstance(kept["summarized"], int) and kept["summarized"] >= 2
        history = await runtime.history(sid)
        assert len(history) == 10  # stored history stays complete: 5 turns of 2 messages

    async def test_summary_tokens_are_not_streamed(self, runtime: Runtime) -> None:
        """A streamed turn that updates the summary streams only the reply's tokens."""
        sid = await converse(runtime, await small_window_agent(runtime, summary=True))
        before = await summary_of(runtime, sid)
        events = [e async for e in runtime.stream(sid, FILLER)]
        done = events[-1]
        assert done.type == "done"
        tokens = "".join(e.data["content"] for e in events if e.type == "token")
        assert tokens == done.data["reply"] == f"You said: {FILLER.strip()}"
        after = await summary_of(runtime, sid)
        assert after["summarized"] != before["summarized"]  # the summary moved this turn
