"""Unit tests for the deterministic offline chat model."""

from __future__ import annotations

import ast
import asyncio
import operator
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from runtime.models import OfflineChatModel

_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    raise ValueError(f"unsupported: {type(node).__name__}")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as "6 * 7"."""
    value = _evaluate(ast.parse(expression, mode="eval"))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@tool
def current_time() -> str:
    """Return the current time."""
    return "2025-01-01T12:00:00+00:00"


@tool
def save_note(text: str) -> str:
    """Save a note."""
    return f"Saved note: {text}"


@tool
def read_notes() -> str:
    """Read the notes."""
    return "buy milk"


ALL_TOOLS = [calculator, current_time, save_note, read_notes]


def _merge(chunks: Sequence[BaseMessage]) -> AIMessageChunk:
    pieces = [c for c in chunks if isinstance(c, AIMessageChunk)]
    assert pieces and len(pieces) == len(chunks)
    merged = pieces[0]
    for piece in pieces[1:]:
        merged = merged + piece
    return merged


def _human(text: str) -> list[BaseMessage]:
    return [HumanMessage(text)]


@pytest.fixture
def model() -> OfflineChatModel:
    return OfflineChatModel()


class TestBasics:
    def test_llm_type_and_defaults(self, model: OfflineChatModel) -> None:
        """The model identifies itself and has the documented defaults."""
        assert model._llm_type == "sessiongraph-offline"
        assert model.model_name == "deterministic"
        assert model.delay_seconds == 0.0
        assert model.always_call_tool is None

    def test_echo(self, model: OfflineChatModel) -> None:
        """Unrecognised text is echoed back."""
        assert model.invoke(_human("hello there")).content == "You said: hello there"

    def test_content_blocks_are_read(self, model: OfflineChatModel) -> None:
        """Human content given as a list of content blocks is read as text."""
        message = HumanMessage(content=[{"type": "text", "text": "hello"}, "world"])
        assert model.invoke([message]).content == "You said: hello world"

    def test_media_blocks_are_seen(self, model: OfflineChatModel) -> None:
        """Image and file blocks are counted, images first, before the usual text reply."""
        image = {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
        standard = {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"}
        pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}
        cases: list[tuple[list[Any], str]] = [
            ([image], "I see 1 image."),
            ([pdf, image, standard], "I see 2 images and 1 file."),
            (
                [{"type": "text", "text": "my name is Bo"}, pdf],
                "I see 1 file. Nice to meet you, Bo.",
            ),
            (
                [{"type": "text", "text": ""}, {"type": "reasoning", "reasoning": "hm"}],
                "You said nothing.",
            ),
        ]
        for content, reply in cases:
            assert model.invoke([HumanMessage(content=content)]).content == reply

    def test_media_beside_a_tool_request(self, model: OfflineChatModel) -> None:
        """A tool request beside an image still calls the tool."""
        image = {"type": "image", "url": "https://x.test/a.png"}
        message = HumanMessage(content=[{"type": "text", "text": "what is 6 * 7?"}, image])
        reply = model.bind_tools([calculator]).invoke([message])
        assert isinstance(reply, AIMessage)
        assert reply.tool_calls[0]["args"] == {"expression": "6 * 7"}

    def test_message_count(self, model: OfflineChatModel) -> None:
        """The non-system messages are counted, the current one included."""
        conversation = [
            SystemMessage("Be brief."),
            HumanMessage("hi"),
            AIMessage("You said: hi"),
            HumanMessage("how many messages have we exchanged?"),
        ]
        assert model.invoke(conversation).content == "This conversation has 3 messages."


class TestMemory:
    def test_recalls_name_from_conversation(self, model: OfflineChatModel) -> None:
        """A name stated earlier in the conversation is recalled."""
        conversation = [
            HumanMessage("Hi, my name is Alice."),
            AIMessage("Nice to meet you, Alice."),
            HumanMessage("what is my name?"),
        ]
        assert model.invoke(conversation).content == "Your name is Alice."

    def test_statement_replies(self, model: OfflineChatModel) -> None:
        """Statements about the user are acknowledged."""
        assert model.invoke(_human("My name is Alice.")).content == "Nice to meet you, Alice."
        assert model.invoke(_human("I am Bob")).content == "Nice to meet you, Bob."
        reply = model.invoke(_human("my favourite colour is blue!"))
        assert reply.content == "Got it: your favourite colour is blue."

    def test_unknown_name(self, model: OfflineChatModel) -> None:
        """Without an earlier statement the model says it does not know."""
        conversation = [
            HumanMessage("hello"),
            AIMessage("You said: hello"),
            HumanMessage("who am I?"),
        ]
        assert model.invoke(conversation).content == "I don't know your name yet."

    def test_most_recent_statement_wins(self, model: OfflineChatModel) -> None:
        """A later statement overrides an earlier one; other keys are recalled too."""
        conversation = [
            HumanMessage("my name is Alice and my favourite colour is green"),
            AIMessage("ok"),
            HumanMessage("Actually, I'm Carol."),
            AIMessage("ok"),
            HumanMessage("Who am I?"),
        ]
        assert model.invoke(conversation).content == "Your name is Carol."
        conversation[-1] = HumanMessage("what's my favourite colour?")
        assert model.invoke(conversation).content == "Your favourite colour is green."

    def test_current_message_is_not_memory(self, model: OfflineChatModel) -> None:
        """Only earlier human messages count as memory."""
        assert model.invoke(_human("what is my name?")).content == "I don't know your name yet."


class TestInstructions:
    def test_instructions_from_system_prompt(self, model: OfflineChatModel) -> None:
        """The system prompt is reported as the model's instructions."""
        conversation = [
            SystemMessage("You are a pirate."),
            HumanMessage("What are your instructions?"),
        ]
        assert model.invoke(conversation).content == "My instructions are: You are a pirate."

    def test_no_instructions(self, model: OfflineChatModel) -> None:
        """Without a system message the model has no instructions."""
        assert model.invoke(_human("who are you?")).content == "I have no instructions."


class TestToolCalls:
    def test_calculator_call_only_when_bound(self, model: OfflineChatModel) -> None:
        """Arithmetic becomes a calculator call only if the calculator is bound."""
        unbound = model.invoke(_human("what is 6 * 7?"))
        assert unbound.tool_calls == []
        assert unbound.content == "I cannot calculate without the calculator tool."

        bound = model.bind_tools([calculator]).invoke(_human("what is 6 * 7?"))
        assert isinstance(bound, AIMessage)
        assert bound.content == ""
        assert len(bound.tool_calls) == 1
        call = bound.tool_calls[0]
        assert call["name"] == "calculator"
        assert call["args"] == {"expression": "6 * 7"}
        assert call["id"] is not None and call["id"].startswith("call_")
        assert bound.response_metadata["finish_reason"] == "tool_calls"

    def test_calculator_with_parentheses(self, model: OfflineChatModel) -> None:
        """Parenthesised expressions are extracted whole."""
        reply = model.bind_tools([calculator]).invoke(_human("calculate (2+3)*4"))
        assert reply.tool_calls[0]["args"] == {"expression": "(2+3)*4"}

    @pytest.mark.parametrize(
        ("text", "name", "args"),
        [
            ("what time is it?", "current_time", {}),
            ("note: buy milk", "save_note", {"text": "buy milk"}),
            ("remember that the door code is 1234", "save_note", {"text": "the door code is 1234"}),
            ("what are my notes?", "read_notes", {}),
            ('use tool save_note with {"text": "hi"}', "save_note", {"text": "hi"}),
            ('call calculator {"expression": "1 + 2"}', "calculator", {"expression": "1 + 2"}),
            ("call current_time", "current_time", {}),
        ],
    )
    def test_tool_rules(
        self, model: OfflineChatModel, text: str, name: str, args: dict[str, Any]
    ) -> None:
        """Time, notes and explicit requests call the matching bound tool."""
        reply = model.bind_tools(ALL_TOOLS).invoke(_human(text))
        assert [(c["name"], c["args"]) for c in reply.tool_calls] == [(name, args)]

    def test_several_calls_in_one_message(self, model: OfflineChatModel) -> None:
        """Explicit requests joined by `and` become several calls with distinct ids."""
        text = 'use tool save_note with {"text": "a"} and use tool save_note with {"text": "a"}'
        bound = model.bind_tools(ALL_TOOLS)
        reply = bound.invoke(_human(text))
        assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
            ("save_note", {"text": "a"}),
            ("save_note", {"text": "a"}),
        ]
        assert len({c["id"] for c in reply.tool_calls}) == 2
        assert _merge(list(bound.stream(_human(text)))).tool_calls == reply.tool_calls

    def test_unbound_tool_is_not_called(self, model: OfflineChatModel) -> None:
        """An explicit request for a tool that is not bound falls through to the echo."""
        reply = model.bind_tools([calculator]).invoke(_human("call current_time"))
        assert reply.tool_calls == []
        assert reply.content == "You said: call current_time"

    def test_tool_choice_is_accepted(self, model: OfflineChatModel) -> None:
        """``tool_choice`` is accepted and does not change the rules."""
        reply = model.bind_tools([calculator], tool_choice="auto").invoke(_human("2 + 2"))
        assert reply.tool_calls[0]["args"] == {"expression": "2 + 2"}

    def test_answer_from_tool_message(self, model: OfflineChatModel) -> None:
        """Trailing tool results are turned into the answer."""
        conversation: list[BaseMessage] = [
            HumanMessage("what is 6 * 7?"),
            AIMessage(
                "",
                tool_calls=[
                    {"name": "calculator", "args": {"expression": "6 * 7"}, "id": "c1"},
                    {"name": "current_time", "args": {}, "id": "c2"},
                ],
            ),
            ToolMessage("42", tool_call_id="c1"),
            ToolMessage("2025-01-01T12:00:00+00:00", tool_call_id="c2"),
        ]
        assert model.invoke(conversation[:3]).content == "The result is 42."
        assert model.invoke(conversation).content == (
            "The result is 42. current_time returned: 2025-01-01T12:00:00+00:00."
        )

    def test_answer_from_failed_tool(self, model: OfflineChatModel) -> None:
        """A tool result with status="error" is reported as a failure."""
        conversation = [
            HumanMessage("what is 1/0?"),
            AIMessage("", tool_calls=[{"name": "calculator", "args": {}, "id": "c1"}]),
            ToolMessage("division by zero", tool_call_id="c1", status="error"),
        ]
        assert model.invoke(conversation).content == "The tool calculator failed: division by zero."

    def test_always_call_tool(self) -> None:
        """``always_call_tool`` calls the tool every turn, even after a tool result."""
        model = OfflineChatModel(always_call_tool="current_time").bind_tools(ALL_TOOLS)
        conversation: list[BaseMessage] = [HumanMessage("my name is Alice")]
        ids = []
        for _ in range(3):
            reply = model.invoke(conversation)
            assert isinstance(reply, AIMessage)
            assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("current_time", {})]
            call_id = reply.tool_calls[0]["id"]
            assert call_id is not None
            ids.append(call_id)
            conversation += [reply, ToolMessage("now", tool_call_id=call_id)]
        assert len(set(ids)) == 3

    def test_always_call_calculator_args(self) -> None:
        """The calculator is always called with a fixed expression."""
        model = OfflineChatModel(always_call_tool="calculator").bind_tools([calculator])
        assert model.invoke(_human("hi")).tool_calls[0]["args"] == {"expression": "1+1"}

    def test_always_call_tool_needs_binding(self) -> None:
        """``always_call_tool`` does nothing when that tool is not bound."""
        model = OfflineChatModel(always_call_tool="current_time")
        assert model.invoke(_human("hi")).content == "You said: hi"


class TestDeterminism:
    def test_same_input_same_output(self) -> None:
        """Two models given the same input reply identically, tool-call ids included."""
        conversation = [SystemMessage("Be terse."), HumanMessage("what is (1 + 2) * 3?")]
        first = OfflineChatModel().bind_tools(ALL_TOOLS).invoke(conversation)
        second = OfflineChatModel().bind_tools(ALL_TOOLS).invoke(conversation)
        assert first.content == second.content
        assert first.tool_calls == second.tool_calls
        assert first.usage_metadata == second.usage_metadata

    def test_ids_differ_between_turns(self, model: OfflineChatModel) -> None:
        """The same request later in the conversation gets a different tool-call id."""
        bound = model.bind_tools([calculator])
        first = bound.invoke(_human("2 + 2"))
        later = bound.invoke(
            [
                HumanMessage("2 + 2"),
                first,
                ToolMessage("4", tool_call_id="x"),
                HumanMessage("2 + 2"),
            ]
        )
        assert first.tool_calls[0]["id"] != later.tool_calls[0]["id"]


class TestStreaming:
    @pytest.mark.parametrize(
        "conversation",
        [
            _human("tell me something nice, please   "),
            [HumanMessage("my name is Alice"), AIMessage("hi"), HumanMessage("what is my name?")],
            [SystemMessage("Line one.\nLine two."), HumanMessage("who are you")],
        ],
    )
    def test_chunks_concatenate_to_invoke(
        self, model: OfflineChatModel, conversation: list[BaseMessage]
    ) -> None:
        """Streamed text arrives in several chunks that join to the invoke() reply."""
        chunks = list(model.stream(conversation))
        assert len([c for c in chunks if c.content]) > 1
        assert "".join(str(c.content) for c in chunks) == model.invoke(conversation).content

    def test_streamed_tool_call_merges(self, model: OfflineChatModel) -> None:
        """Streamed tool-call chunks merge into a valid tool call equal to invoke()'s."""
        bound = model.bind_tools([calculator])
        chunks = list(bound.stream(_human("what is 6 * 7?")))
        merged = _merge(chunks)
        invoked = bound.invoke(_human("what is 6 * 7?"))
        assert merged.tool_calls == invoked.tool_calls
        assert merged.tool_calls[0]["args"] == {"expression": "6 * 7"}
        assert merged.invalid_tool_calls == []
        assert merged.response_metadata["finish_reason"] == "tool_calls"

    @pytest.mark.parametrize("text", ["hello world", "what is 6 * 7?"])
    def test_usage_equal_between_stream_and_invoke(
        self, model: OfflineChatModel, text: str
    ) -> None:
        """Usage is reported once when streaming and sums to the invoke() usage."""
        bound = model.bind_tools([calculator])
        invoked = bound.invoke(_human(text))
        usage = invoked.usage_metadata
        assert usage is not None
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        chunks = list(bound.stream(_human(text)))
        assert sum(1 for c in chunks if c.usage_metadata) == 1
        assert _merge(chunks).usage_metadata == usage
        assert invoked.response_metadata["model_name"] == "deterministic"

    def test_token_callbacks(self, model: OfflineChatModel) -> None:
        """Callback handlers see every streamed token."""

        class Collector(BaseCallbackHandler):
            def __init__(self) -> None:
                self.tokens: list[str] = []

            def on_llm_new_token(
                self, token: str | list[str | dict[str, Any]], **kwargs: Any
            ) -> None:
                self.tokens.append(str(token))

        collector = Collector()
        chunks = list(model.stream(_human("one two three"), config={"callbacks": [collector]}))
        assert "".join(collector.tokens) == "You said: one two three"
        assert len(collector.tokens) == len(chunks)


class TestAsync:
    async def test_ainvoke_matches_invoke(self, model: OfflineChatModel) -> None:
        """ainvoke() gives the same reply as invoke()."""
        conversation = [
            HumanMessage("my name is Alice"),
            AIMessage("hi"),
            HumanMessage("who am I?"),
        ]
        reply = await model.ainvoke(conversation)
        assert reply.content == model.invoke(conversation).content == "Your name is Alice."

    async def test_astream(self, model: OfflineChatModel) -> None:
        """astream() yields chunks that join to the reply and carry usage once."""
        chunks = [c async for c in model.astream(_human("alpha beta gamma"))]
        assert len(chunks) > 1
        assert "".join(str(c.content) for c in chunks) == "You said: alpha beta gamma"
        assert (
            _merge(chunks).usage_metadata == model.invoke(_human("alpha beta gamma")).usage_metadata
        )

    async def test_astream_tool_call(self, model: OfflineChatModel) -> None:
        """An async-streamed tool call merges into a valid tool call."""
        bound = model.bind_tools([calculator])
        chunks = [c async for c in bound.astream(_human("calculate (2+3)*4"))]
        assert _merge(chunks).tool_calls[0]["args"] == {"expression": "(2+3)*4"}

    async def test_async_token_callbacks(self, model: OfflineChatModel) -> None:
        """Async callback handlers see every streamed token."""

        class Collector(AsyncCallbackHandler):
            def __init__(self) -> None:
                self.tokens: list[str] = []

            async def on_llm_new_token(
                self, token: str | list[str | dict[str, Any]], **kwargs: Any
            ) -> None:
                self.tokens.append(str(token))

        collector = Collector()
        chunks = [
            c async for c in model.astream(_human("one two"), config={"callbacks": [collector]})
        ]
        assert chunks
        assert "".join(collector.tokens) == "You said: one two"

    async def test_delay_with_asyncio(self) -> None:
        """A delayed model answers concurrent async calls."""
        model = OfflineChatModel(delay_seconds=0.05)
        replies = await asyncio.gather(
            model.ainvoke(_human("one")),
            model.ainvoke(_human("two")),
            *[model.ainvoke(_human("three")) for _ in range(3)],
        )
        assert [r.content for r in replies[:2]] == ["You said: one", "You said: two"]
        chunks = [c async for c in model.astream(_human("four"))]
        assert "".join(str(c.content) for c in chunks) == "You said: four"

    def test_delay_sync(self) -> None:
        """A delayed model still answers on the sync paths."""
        model = OfflineChatModel(delay_seconds=0.01)
        assert model.invoke(_human("x")).content == "You said: x"
        assert "".join(str(c.content) for c in model.stream(_human("x"))) == "You said: x"


class TestAgentLoop:
    def test_manual_tool_round_trip(self, model: OfflineChatModel) -> None:
        """Model -> tool executed by hand -> model answers with the calculator's result."""
        bound = model.bind_tools([calculator])
        messages: list[BaseMessage] = [HumanMessage("what is 6 * 7?")]
        request = bound.invoke(messages)
        assert isinstance(request, AIMessage) and len(request.tool_calls) == 1
        messages.append(request)
        result = calculator.invoke(request.tool_calls[0])
        assert isinstance(result, ToolMessage) and result.content == "42"
        messages.append(result)
        final = bound.invoke(messages)
        assert final.content == "The result is 42."
        assert final.tool_calls == []

    @staticmethod
    def _graph(model: OfflineChatModel) -> Any:
        bound = model.bind_tools([calculator])

        def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
            return {"messages": [bound.invoke(state["messages"])]}

        builder = StateGraph(MessagesState)
        builder.add_node("agent", agent)
        builder.add_node("tools", ToolNode([calculator], handle_tool_errors=True))
        builder.add_edge(START, "agent")
        builder.add_conditional_edges("agent", tools_condition)
        builder.add_edge("tools", "agent")
        builder.add_edge("agent", END)
        return builder.compile()

    def test_state_graph(self, model: OfflineChatModel) -> None:
        """A tiny ReAct graph ends with the calculator's answer."""
        result = self._graph(model).invoke({"messages": [HumanMessage("what is 6 * 7?")]})
        assert [type(m).__name__ for m in result["messages"]] == [
            "HumanMessage",
            "AIMessage",
            "ToolMessage",
            "AIMessage",
        ]
        assert result["messages"][-1].content == "The result is 42."

    def test_state_graph_tool_error(self, model: OfflineChatModel) -> None:
        """A tool failure (status="error" from ToolNode) is reported as a failure."""
        result = self._graph(model).invoke({"messages": [HumanMessage("what is 1/0?")]})
        assert result["messages"][-2].status == "error"
        assert str(result["messages"][-1].content).startswith("The tool calculator failed:")

    async def test_state_graph_streams_tokens(self, model: OfflineChatModel) -> None:
        """Graph message streaming yields the model's tokens and a parseable tool call."""
        graph = self._graph(model)
        pieces: list[AIMessageChunk] = []
        async for message, _meta in graph.astream(
            {"messages": [HumanMessage("what is 6 * 7?")]}, stream_mode="messages"
        ):
            if isinstance(message, AIMessageChunk):
                pieces.append(message)
        text = "".join(str(p.content) for p in pieces)
        assert text == "The result is 42."
        tool_chunks = [p for p in pieces if p.tool_call_chunks]
        assert _merge(tool_chunks).tool_calls[0]["args"] == {"expression": "6 * 7"}
