"""Tests for the deterministic OpenAI-compatible test server, driven by the real ChatOpenAI."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import httpx
import openai
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from tests.support.openai_server import OpenAICompatServer


@tool
def calculator(expression: str) -> str:
    """Evaluate a basic arithmetic expression such as '6 * 7'."""
    return str(eval(expression, {"__builtins__": {}}, {}))  # noqa: S307 - test helper


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: OpenAICompatServer) -> Iterator[None]:
    server.reset()
    yield
    server.reset()


def make_llm(server: OpenAICompatServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-test",
        base_url=server.base_url,
        api_key=SecretStr("test"),
        use_responses_api=False,
        stream_usage=True,
        max_retries=0,
        **kwargs,
    )


def as_chunks(messages: Sequence[BaseMessage]) -> list[AIMessageChunk]:
    assert messages, "stream produced no chunks"
    assert all(isinstance(m, AIMessageChunk) for m in messages)
    return cast(list[AIMessageChunk], list(messages))


def sum_chunks(messages: Sequence[BaseMessage]) -> AIMessageChunk:
    chunks = as_chunks(messages)
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


class TestServerBasics:
    """Lifecycle, base_url and the raw HTTP surface."""

    def test_base_url_and_models(self, server: OpenAICompatServer) -> None:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        resp = httpx.get(f"{server.base_url}/models")
        assert resp.status_code == 200
        assert "gpt-test" in [m["id"] for m in resp.json()["data"]]

    def test_context_manager_starts_and_stops(self) -> None:
        with OpenAICompatServer() as srv:
            url = srv.base_url
            assert httpx.get(f"{url}/models").status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/models", timeout=1)

    def test_raw_stream_format(self, server: OpenAICompatServer) -> None:
        body = {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hello there"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        resp = httpx.post(f"{server.base_url}/chat/completions", json=body)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [e for e in resp.text.split("\n\n") if e]
        assert all(e.startswith("data: ") for e in events)
        assert events[-1] == "data: [DONE]"

    def test_unknown_fault_kind_rejected(self, server: OpenAICompatServer) -> None:
        with pytest.raises(ValueError):
            server.enqueue_fault("teapot")

    def test_reset_clears_faults_and_requests(self, server: OpenAICompatServer) -> None:
        make_llm(server).invoke("hi")
        server.enqueue_fault("500")
        server.reset()
        assert server.requests == []
        assert server.pending_faults == []
        assert make_llm(server).invoke("hi").content == "echo: hi"


class TestInvoke:
    """Non-streaming replies through ChatOpenAI.invoke."""

    def test_plain_invoke_with_usage(self, server: OpenAICompatServer) -> None:
        result = make_llm(server).invoke("hello world")
        assert isinstance(result, AIMessage)
        assert result.content == "echo: hello world"
        usage = result.usage_metadata
        assert usage is not None
        assert usage["input_tokens"] > 0
        assert usage["output_tokens"] > 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    def test_invoke_is_deterministic(self, server: OpenAICompatServer) -> None:
        llm = make_llm(server)
        first, second = llm.invoke("same input"), llm.invoke("same input")
        assert first.content == second.content
        assert first.usage_metadata == second.usage_metadata

    def test_memory_recall(self, server: OpenAICompatServer) -> None:
        llm = make_llm(server)
        messages: list[BaseMessage] = [
            SystemMessage("You are a helpful assistant."),
            HumanMessage("Hi, my name is Alice"),
        ]
        greeting = llm.invoke(messages)
        assert greeting.content == "Nice to meet you, Alice."
        messages += [greeting, HumanMessage("What is my name?")]
        answer = llm.invoke(messages)
        assert answer.content == "Your name is Alice."

        sent = server.requests[-1]["messages"]
        assert sent[0] == {"role": "system", "content": "You are a helpful assistant."}
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[1]["content"] == "Hi, my name is Alice"

    def test_name_unknown_echoes(self, server: OpenAICompatServer) -> None:
        assert make_llm(server).invoke("what is my name?").content == "echo: what is my name?"

    def test_tool_call(self, server: OpenAICompatServer) -> None:
        llm = make_llm(server).bind_tools([calculator])
        result = llm.invoke("what is 6 * 7?")
        assert isinstance(result, AIMessage)
        assert len(result.tool_calls) == 1
        call = result.tool_calls[0]
        assert call["name"] == "calculator"
        assert call["args"] == {"expression": "6 * 7"}
        assert call["id"] and call["id"].startswith("call_")
        assert result.response_metadata["finish_reason"] == "tool_calls"

        tools = server.requests[-1]["tools"]
        assert [t["function"]["name"] for t in tools] == ["calculator"]
        assert "expression" in tools[0]["function"]["parameters"]["properties"]

    def test_arithmetic_without_tool_echoes(self, server: OpenAICompatServer) -> None:
        result = make_llm(server).invoke("what is 6 * 7?")
        assert result.content == "echo: what is 6 * 7?"
        assert result.tool_calls == []

    def test_tool_result_round_trip(self, server: OpenAICompatServer) -> None:
        llm = make_llm(server).bind_tools([calculator])
        messages: list[BaseMessage] = [HumanMessage("what is 6 * 7?")]
        ai = llm.invoke(messages)
        assert isinstance(ai, AIMessage)
        call = ai.tool_calls[0]
        tool_msg = ToolMessage(calculator.invoke(call["args"]), tool_call_id=call["id"])
        final = llm.invoke([*messages, ai, tool_msg])
        assert final.content == "The result is 42."

        sent = server.requests[-1]["messages"]
        assert sent[1]["tool_calls"][0]["id"] == call["id"]
        assert sent[2] == {"role": "tool", "content": "42", "tool_call_id": call["id"]}

    def test_several_tool_results_joined(self, server: OpenAICompatServer) -> None:
        ai = AIMessage(
            "",
            tool_calls=[
                {"name": "calculator", "args": {"expression": "1 + 1"}, "id": "call_a"},
                {"name": "calculator", "args": {"expression": "2 + 2"}, "id": "call_b"},
            ],
        )
        final = make_llm(server).invoke(
            [
                HumanMessage("what is 1 + 1 and 2 + 2?"),
                ai,
                ToolMessage("2", tool_call_id="call_a"),
                ToolMessage("4", tool_call_id="call_b"),
            ]
        )
        assert final.content == "The result is 2, 4."


class TestStreaming:
    """Streaming replies through ChatOpenAI.stream."""

    def test_text_stream_matches_invoke(self, server: OpenAICompatServer) -> None:
        llm = make_llm(server)
        prompt = "tell me something nice please"
        chunks = list(llm.stream(prompt))
        content_chunks = [c for c in chunks if c.content]
        assert len(content_chunks) > 1
        total = sum_chunks(chunks)
        assert total.content == llm.invoke(prompt).content
        assert total.usage_metadata is not None
        assert total.usage_metadata["total_tokens"] > 0
        assert server.requests[0]["stream"] is True
        assert server.requests[0]["stream_options"] == {"include_usage": True}

    def test_tool_call_stream(self, server: OpenAICompatServer) -> None:
        llm = make_llm(server).bind_tools([calculator])
        chunks = as_chunks(list(llm.stream("what is 6 * 7?")))
        assert len([c for c in chunks if c.tool_call_chunks]) > 2
        total = sum_chunks(chunks)
        assert len(total.tool_calls) == 1
        call = total.tool_calls[0]
        assert call["name"] == "calculator"
        assert call["args"] == {"expression": "6 * 7"}
        assert call["id"] == llm.invoke("what is 6 * 7?").tool_calls[0]["id"]
        assert total.response_metadata["finish_reason"] == "tool_calls"
        assert total.invalid_tool_calls == []


class TestAsync:
    """Async ainvoke / astream."""

    async def test_ainvoke(self, server: OpenAICompatServer) -> None:
        result = await make_llm(server).ainvoke("async hello")
        assert result.content == "echo: async hello"
        assert result.usage_metadata is not None

    async def test_astream(self, server: OpenAICompatServer) -> None:
        chunks = [c async for c in make_llm(server).astream("async stream me")]
        assert len([c for c in chunks if c.content]) > 1
        assert sum_chunks(chunks).content == "echo: async stream me"

    async def test_astream_tool_call(self, server: OpenAICompatServer) -> None:
        llm = make_llm(server).bind_tools([calculator])
        chunks = [c async for c in llm.astream("compute (2 + 3) * 4 please")]
        call = sum_chunks(chunks).tool_calls[0]
        assert call["name"] == "calculator"
        assert call["args"] == {"expression": "(2 + 3) * 4"}


class TestFaults:
    """Queued faults surface as exceptions from ChatOpenAI, one per request."""

    def test_rate_limit(self, server: OpenAICompatServer) -> None:
        server.enqueue_fault("429", retry_after="7")
        with pytest.raises(openai.RateLimitError) as info:
            make_llm(server).invoke("hi")
        assert info.value.status_code == 429
        assert info.value.response.headers["retry-after"] == "7"
        assert make_llm(server).invoke("hi").content == "echo: hi"

    def test_internal_server_error(self, server: OpenAICompatServer) -> None:
        server.enqueue_fault("500")
        with pytest.raises(openai.InternalServerError):
            make_llm(server).invoke("hi")

    def test_timeout(self, server: OpenAICompatServer) -> None:
        # The server answers after an hour, past any test's timeout: the error can only be
        # the client's own one-second timeout.
        server.enqueue_fault("timeout", seconds=3600)
        with pytest.raises(openai.APITimeoutError):
            make_llm(server, timeout=1).invoke("hi")

    def test_garbage(self, server: OpenAICompatServer) -> None:
        server.enqueue_fault("garbage")
        with pytest.raises(ValueError):  # json.JSONDecodeError
            make_llm(server).invoke("hi")

    def test_garbage_stream(self, server: OpenAICompatServer) -> None:
        server.enqueue_fault("garbage")
        with pytest.raises(ValueError):  # json.JSONDecodeError on the bogus SSE data line
            list(make_llm(server).stream("hi"))

    def test_malformed(self, server: OpenAICompatServer) -> None:
        server.enqueue_fault("malformed")
        with pytest.raises((KeyError, TypeError), match="choices"):
            make_llm(server).invoke("hi")

    def test_malformed_stream(self, server: OpenAICompatServer) -> None:
        server.enqueue_fault("malformed")
        with pytest.raises(ValueError, match="No generation chunks"):
            list(make_llm(server).stream("hi"))

    async def test_async_rate_limit(self, server: OpenAICompatServer) -> None:
        server.enqueue_fault("429")
        with pytest.raises(openai.RateLimitError):
            await make_llm(server).ainvoke("hi")

    def test_faults_consumed_fifo(self, server: OpenAICompatServer) -> None:
        server.enqueue_fault("500")
        server.enqueue_fault("429")
        llm = make_llm(server)
        with pytest.raises(openai.InternalServerError):
            llm.invoke("one")
        with pytest.raises(openai.RateLimitError):
            llm.invoke("two")
        assert llm.invoke("three").content == "echo: three"
        assert [r["messages"][-1]["content"] for r in server.requests] == ["one", "two", "three"]
        assert server.pending_faults == []
