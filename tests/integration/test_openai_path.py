"""The real ``ChatOpenAI`` client through the runtime, against an OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime import InvalidInput, ModelUnavailable, Runtime, Settings
from runtime.agents import ModelSpec, TemplateSpec
from tests.support.openai_server import OpenAICompatServer


@pytest.fixture(scope="module")
def openai_server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as server:
        yield server


@pytest.fixture
async def openai_agent(runtime: Runtime, openai_server: OpenAICompatServer) -> str:
    openai_server.reset()
    agent = await runtime.templates.create(
        TemplateSpec(
            name="openai",
            system_prompt="You are terse.",
            model=ModelSpec(
                provider="openai",
                name="gpt-test",
                params={"base_url": openai_server.base_url, "max_retries": 0},
            ),
            tools=["calculator"],
        ),
        owner="local",
    )
    return agent.agent_id


class TestOpenAIPath:
    async def test_memory_through_chat_openai(
        self, runtime: Runtime, openai_server: OpenAICompatServer, openai_agent: str
    ) -> None:
        """The whole stored conversation and the system prompt reach the model."""
        await runtime.session("oa-1", agent_id=openai_agent)
        await runtime.chat("oa-1", "my name is Alice")
        result = await runtime.chat("oa-1", "what is my name?")
        assert result.reply == "Your name is Alice."
        assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0
        sent = openai_server.requests[-1]
        assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
        assert [m["role"] for m in sent["messages"][1:]] == ["user", "assistant", "user"]
        assert [t["function"]["name"] for t in sent["tools"]] == ["calculator"]

    async def test_streamed_tool_call(
        self, runtime: Runtime, openai_server: OpenAICompatServer, openai_agent: str
    ) -> None:
        """A tool call streamed by the server is parsed, executed and answered."""
        await runtime.session("oa-2", agent_id=openai_agent)
        events = [e async for e in runtime.stream("oa-2", "what is 6 * 7?")]
        call = next(e.data for e in events if e.type == "tool_call")
        assert call["name"] == "calculator" and call["args"] == {"expression": "6 * 7"}
        result = next(e.data for e in events if e.type == "tool_result")
        assert result["content"] == "42" and result["tool_call_id"] == call["id"]
        done = events[-1]
        assert done.type == "done" and done.data["reply"] == "The result is 42."
        tokens = "".join(e.data["content"] for e in events if e.type == "token")
        assert tokens == "The result is 42."
        assert all(r.get("stream") for r in openai_server.requests)
        history = await runtime.history("oa-2")
        assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]

    async def test_settings_base_url(
        self, settings: Settings, openai_server: OpenAICompatServer
    ) -> None:
        """SESSIONGRAPH_OPENAI_BASE_URL makes the default agent use that server."""
        configured = settings.model_copy(
            update={"openai_base_url": openai_server.base_url, "default_model": "openai:gpt-x"}
        )
        async with Runtime.open(configured) as rt:
            agent = await rt.templates.create(
                TemplateSpec(name="via-settings", model=ModelSpec.parse("openai:gpt-x")),
                owner="local",
            )
            await rt.session("oa-3", agent_id=agent.agent_id)
            assert (await rt.chat("oa-3", "hello there")).reply == "echo: hello there"
        assert openai_server.requests[-1]["model"] == "gpt-x"

    async def test_openai_without_credentials_is_refused(self, runtime: Runtime) -> None:
        """An openai template with neither key nor base URL is refused up front, as bad input."""
        with pytest.raises(InvalidInput, match="SESSIONGRAPH_OPENAI_API_KEY"):
            await runtime.templates.create(
                TemplateSpec(name="nokey", model=ModelSpec.parse("openai:gpt-4o")),
                owner="local",
            )


class TestFailedTurns:
    async def test_failed_turn_leaves_the_session_as_it_was(
        self, runtime: Runtime, openai_server: OpenAICompatServer, openai_agent: str
    ) -> None:
        """A model failure after a tool call rolls the whole turn back; resending works."""
        await runtime.session("oa-fail", agent_id=openai_agent)
        await runtime.chat("oa-fail", "my name is Alice")
        before = await runtime.history("oa-fail")
        counters = await runtime.sessions.get("local", "oa-fail")
        openai_server.enqueue_fault("pass")  # the tool call goes through
        openai_server.enqueue_fault("500")  # the answer after the tool fails
        with pytest.raises(ModelUnavailable, match="HTTP 500"):
            await runtime.chat("oa-fail", "what is 6 * 7?")
        assert await runtime.history("oa-fail") == before
        after = await runtime.sessions.get("local", "oa-fail")
        assert (after.turns, after.messages) == (counters.turns, counters.messages)
        retry = await runtime.chat("oa-fail", "what is 6 * 7?")
        assert retry.reply == "The result is 42."
        history = await runtime.history("oa-fail")
        assert [m["role"] for m in history] == ["user", "assistant"] * 1 + [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]

    async def test_failed_stream_reports_an_error_event(
        self, runtime: Runtime, openai_server: OpenAICompatServer, openai_agent: str
    ) -> None:
        """A failing streamed turn ends with an error event and writes nothing."""
        await runtime.session("oa-fail-2", agent_id=openai_agent)
        openai_server.enqueue_fault("500")
        events = [e async for e in runtime.stream("oa-fail-2", "hello")]
        assert events[-1].type == "error"
        assert events[-1].data["error"] == "model_unavailable"
        assert await runtime.history("oa-fail-2") == []
        assert (await runtime.chat("oa-fail-2", "hello")).reply == "echo: hello"
