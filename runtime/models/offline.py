"""A deterministic offline chat model for demos and tests (``offline:deterministic``).

:class:`OfflineChatModel` needs no network and no API key, yet it drives an agent runtime the
way a real model does: it supports ``bind_tools``, emits tool calls, answers from tool results,
reads the conversation it is given (so checkpointed memory is visible), streams token by token
and reports token usage. Every reply is a pure function of the input messages and the bound
tools, so the same conversation always produces the same reply and the same tool-call ids.

Rules, in order (the first that applies wins):

0. The system prompt is the summariser's (:data:`~runtime.models.prompts.SUMMARY_PROMPT`): answer
   ``The user said: a | b | ...``, every user statement of the previous summary and of the
   newly trimmed messages. Memory questions (below) also read such a summary.
1. ``always_call_tool`` is set and that tool is bound: *every* reply calls it, even right after
   a tool result (useful for simulating a runaway tool loop). The arguments are ``{}``, or
   ``{"expression": "1+1"}`` for ``calculator``.
2. The conversation ends with tool results (``ToolMessage`` s following the ``AIMessage`` that
   requested them): answer from them, one sentence per result, e.g. ``The result is 42.``
   (``calculator``), ``current_time returned: 2025-01-01T12:00:00+00:00.`` (any other tool) or
   ``The tool calculator failed: division by zero.`` (``status="error"`` or a result starting
   with ``error:``).
3. Otherwise the text of the last human message decides:

   * ``use tool NAME with {json}`` / ``call NAME {json}`` (NAME bound): call NAME with those
     arguments (``{}`` when none are given). Several joined by ``and`` (``use tool a with
     {...} and use tool b with {...}``) make several calls in one message.
   * ``note: ...`` / ``note that ...`` / ``remember that ...`` with ``save_note`` bound: call
     ``save_note`` with ``{"text": "..."}``. ``what are my notes`` / ``read my notes`` /
     ``list my notes`` with ``read_notes`` bound: call ``read_notes``.
   * Memory questions: ``what is my name?``, ``what's my X?``, ``who am I?``,
     ``do you remember my X?``: answer from the *earlier* human messages of the conversation
     (the most recent statement wins): ``Your name is Alice.``, or
     ``I don't know your name yet.``
   * Memory statements: ``my name is Alice`` / ``I am Alice`` / ``call me Alice``:
     ``Nice to meet you, Alice.``; ``my X is Y``: ``Got it: your X is Y.``
   * Time: ``what time is it`` / ``what's the date`` with ``current_time`` bound: call
     ``current_time`` with ``{}``.
   * Arithmetic (digits with ``+ - * / % **`` and parentheses, e.g. ``what is 6 * 7?``): call
     ``calculator`` with ``{"expression": "6 * 7"}``; without a bound ``calculator`` the reply
     is ``I cannot calculate without the calculator tool.``
   * ``what are your instructions`` / ``who are you``: ``My instructions are: <system prompt>``
     (``I have no instructions.`` without a system message).
   * ``how many messages``: ``This conversation has N messages.`` (non-system messages,
     including the current one).
   * Anything else is echoed: ``You said: <text>``.

Tool-call ids are ``call_`` plus 12 hex digits of a SHA-256 over the number of input messages,
the tool name and the arguments, so they are stable across runs and unique within a
conversation. Every reply carries ``usage_metadata`` (approximate counts from
``count_tokens_approximately``) and ``response_metadata`` with ``model_name`` and
``finish_reason`` (``"stop"`` or ``"tool_calls"``). ``delay_seconds`` waits before answering
(``asyncio.sleep`` on the async paths, so an event loop is never blocked).

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> model = OfflineChatModel()
    >>> model.invoke([HumanMessage("hello")]).content
    'You said: hello'
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call, tool_call_chunk
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from runtime.models.prompts import SUMMARY_PREFIX, SUMMARY_PROMPT

__all__ = ["OfflineChatModel"]


# --------------------------------------------------------------------------- patterns

_FLAGS = re.IGNORECASE
# An optional lead-in such as "Hi! " or "OK, " before a question.
_LEAD = r"^(?:.*?[,.!?;:]\s+)?"
_END = r"\s*[?.!]*\s*$"
_KEY = r"(?P<key>[a-z][\w'\- ]{0,40}?)"

_EXPLICIT = re.compile(
    r"^\s*(?:please\s+)?(?:use|call)\s+(?:the\s+)?(?:tool\s+)?(?P<name>[A-Za-z_][\w.\-]*)"
    r"(?:\s+tool)?(?:\s+with)?(?:\s*(?P<args>\{.*\}))?\s*[.!]?\s*$",
    _FLAGS | re.DOTALL,
)
# "use tool a with {...} and use tool b with {...}": several calls in one message.
_AND_CALL = re.compile(r"\s+and\s+(?=(?:please\s+)?(?:use|call)\s)", _FLAGS)
_SAVE_NOTE = re.compile(
    r"^\s*(?:note\s*:|note\s+that\b|remember\s+that\b)\s*(?P<rest>.+?)\s*$", _FLAGS | re.DOTALL
)
_READ_NOTES = re.compile(r"\b(?:what\s+are|read|list|show)\s+(?:me\s+)?my\s+notes\b", _FLAGS)
_MEMORY_QUESTIONS: tuple[re.Pattern[str], ...] = (
    re.compile(
        _LEAD + r"(?:(?:do|can|could)\s+you\s+(?:tell\s+me|remember|recall)\s+)?"
        r"(?:what|who)(?:'s|’s|\s+is|\s+was)\s+my\s+" + _KEY + _END,
        _FLAGS,
    ),
    re.compile(
        _LEAD + r"(?:(?:do|can|could)\s+you\s+)?(?:tell\s+me|remember|recall|know)\s+"
        r"(?:what|who)\s+my\s+" + _KEY + r"\s+(?:is|was)" + _END,
        _FLAGS,
    ),
    re.compile(
        _LEAD + r"(?:(?:do|can|could)\s+you\s+)?(?:remember|recall|know)\s+my\s+" + _KEY + _END,
        _FLAGS,
    ),
)
_WHO_AM_I = re.compile(_LEAD + r"who\s+am\s+i" + _END, _FLAGS)
# "my X is Y": the value runs to the end of the clause ("." inside a token such as "a@b.com"
# or "3.5" does not end it) or up to a following "and my ..." / "and I ...".
_MY_X_IS_Y = re.compile(
    r"\bmy\s+"
    + _KEY
    + r"\s+is\s+(?P<value>(?:(?!\s+and\s+(?:my|i|i'm)\b)(?:[^.!?,;\n]|\.(?=\S)))+)",
    _FLAGS,
)
# "I am Alice" / "I'm Alice" / "call me Alice": only a capitalised value counts as a name, so
# "I am hungry" is not taken for one.
_I_AM = re.compile(
    r"\b(?i:i\s+am|i'm|i’m|call\s+me)\s+(?P<value>[A-Z][\w'\-]*(?:\s+[A-Z][\w'\-]*)*)"
)
_TIME = re.compile(
    r"\bwhat\s+time\s+is\s+it\b"
    r"|\bwhat(?:'s|’s|\s+is)\s+(?:the\s+)?(?:current\s+|today's\s+)?(?:time|date|day)\b"
    r"|\bwhat\s+(?:day|date)\s+is\s+(?:it|today)\b"
    r"|\b(?:current|today's)\s+(?:time|date)\b",
    _FLAGS,
)
_EXPR_CANDIDATE = re.compile(r"[-+*/%().\d\s]+")
_EXPR_OPERATION = re.compile(r"[\d.)]\s*(?:\*\*|[-+*/%])\s*[-+(\s]*[\d.(]")
_INSTRUCTIONS = re.compile(
    r"\bwhat\s+(?:are|were)\s+your\s+(?:instructions|rules)\b|\bwho\s+are\s+you\b"
    r"|\byour\s+system\s+prompt\b",
    _FLAGS,
)
_HOW_MANY_MESSAGES = re.compile(r"\bhow\s+many\s+messages\b", _FLAGS)
_TOKEN = re.compile(r"\s*\S+|\s+")


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Reply:
    """What the model decided to say: text, or tool calls (with empty text)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


def _message_text(message: BaseMessage) -> str:
    """The plain text of a message whose content is a string or a list of content blocks.

    Args:
        message: Any LangChain message.

    Returns:
        The string parts and ``text`` blocks joined with single spaces.
    """
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return " ".join(part for part in parts if part)


def _sentence(text: str) -> str:
    """``text`` stripped and ending with terminal punctuation."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _clean_value(value: str) -> str:
    """A remembered value without surrounding whitespace, quotes or trailing punctuation."""
    return value.strip().rstrip(".,;:!?").strip().strip("\"'").strip()


def _normalize_key(key: str) -> str:
    """A memory key in lower case with single spaces ("Favourite  Colour" -> "favourite colour")."""
    return " ".join(key.lower().split())


def _tool_names(tools: Sequence[Any] | None) -> frozenset[str]:
    """The names of the bound tools (OpenAI tool dicts, plain schemas or ``BaseTool`` s)."""
    names: set[str] = set()
    for item in tools or ():
        if isinstance(item, BaseTool):
            names.add(item.name)
        elif isinstance(item, dict):
            function = item.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names.add(function["name"])
            elif isinstance(item.get("name"), str):
                names.add(item["name"])
    return frozenset(names)


def _tool_call_id(message_count: int, name: str, args: dict[str, Any], index: int = 0) -> str:
    """A deterministic tool-call id, unique per conversation turn, tool and arguments.

    Args:
        message_count: How many messages the model was given.
        name: The tool name.
        args: The tool arguments.
        index: The call's position in its message (calls after the first).

    Returns:
        ``call_`` followed by 12 hex digits.
    """
    key: list[Any] = [message_count, name, args] + ([index] if index else [])
    payload = json.dumps(key, sort_keys=True, ensure_ascii=False)
    return "call_" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def _facts(text: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` facts a message states about its author, in textual order.

    Args:
        text: A human message's text.

    Returns:
        Pairs such as ``("name", "Alice")`` or ``("favourite colour", "blue")``.
    """
    found: list[tuple[int, str, str]] = []
    for match in _MY_X_IS_Y.finditer(text):
        value = _clean_value(match.group("value"))
        if value:
            found.append((match.start(), _normalize_key(match.group("key")), value))
    for match in _I_AM.finditer(text):
        found.append((match.start(), "name", _clean_value(match.group("value"))))
    return [(key, value) for _, key, value in sorted(found)]


def _memory_question_key(text: str) -> str | None:
    """The key a memory question asks about ("what's my name?" -> "name"), or ``None``."""
    if _WHO_AM_I.match(text):
        return "name"
    for pattern in _MEMORY_QUESTIONS:
        match = pattern.match(text)
        if match:
            return _normalize_key(match.group("key"))
    return None


def _user_statements(message: BaseMessage) -> list[str]:
    """What the user said in a message: a human message, or a summary of trimmed ones."""
    if isinstance(message, HumanMessage):
        return [_message_text(message)]
    text = _message_text(message)
    if isinstance(message, SystemMessage) and text.startswith(SUMMARY_PREFIX):
        said = text.removeprefix(SUMMARY_PREFIX).strip().removeprefix(_SAID)
        return [part.strip() for part in said.split(_SAID_SEP) if part.strip()]
    return []


def _recall(earlier: Sequence[BaseMessage], key: str) -> str | None:
    """The most recent value stated for ``key`` by the user earlier (or in a summary)."""
    for message in reversed(earlier):
        for statement in reversed(_user_statements(message)):
            for fact_key, value in reversed(_facts(statement)):
                if fact_key == key:
                    return value
    return None


_SAID = "The user said: "
_SAID_SEP = " | "


def _summary(messages: Sequence[BaseMessage]) -> str:
    """The summariser's answer: every user statement so far (the last 30), in order."""
    request = _message_text(messages[-1]) if messages else ""
    said: list[str] = []
    for line in request.splitlines():
        if line.startswith(_SAID):
            said.extend(p.strip() for p in line.removeprefix(_SAID).split(_SAID_SEP))
        elif line.startswith("human: "):
            said.append(line.removeprefix("human: ").strip()[:200])
    return _SAID + _SAID_SEP.join([s for s in said if s][-30:])


def _arithmetic_expression(text: str) -> str | None:
    """The first arithmetic expression in ``text`` ("what is 6 * 7?" -> "6 * 7"), or ``None``."""
    for match in _EXPR_CANDIDATE.finditer(text):
        candidate = match.group().strip()
        previous = None
        while candidate != previous:  # trim dangling operators, dots and brackets
            previous = candidate
            candidate = candidate.lstrip("*/%). ").rstrip("+-*/%(. ").strip()
            if candidate.startswith("(") and candidate.count("(") > candidate.count(")"):
                candidate = candidate[1:]
            if candidate.endswith(")") and candidate.count(")") > candidate.count("("):
                candidate = candidate[:-1]
        if (
            candidate.count("(") == candidate.count(")")
            and re.search(r"\d", candidate)
            and _EXPR_OPERATION.search(candidate)
        ):
            return candidate
    return None


def _split_tokens(text: str) -> list[str]:
    """Word-ish stream tokens that keep their leading whitespace ("a b" -> ["a", " b"])."""
    return _TOKEN.findall(text) or [""]


def _answer_tool_results(messages: Sequence[BaseMessage]) -> str | None:
    """Answer from the trailing tool results, or ``None`` if the input does not end with any.

    Args:
        messages: The conversation.

    Returns:
        One sentence per tool result, joined with spaces.
    """
    index = len(messages)
    while index > 0 and isinstance(messages[index - 1], ToolMessage):
        index -= 1
    results = [m for m in messages[index:] if isinstance(m, ToolMessage)]
    if not results:
        return None
    requested: dict[str, str] = {}
    request = messages[index - 1] if index > 0 else None
    if isinstance(request, AIMessage):
        requested = {call["id"]: call["name"] for call in request.tool_calls if call["id"]}
    sentences: list[str] = []
    for result in results:
        name = requested.get(result.tool_call_id) or result.name or "tool"
        content = _message_text(result).strip()
        failed = result.status == "error"
        if content.lower().startswith("error:"):
            failed = True
            content = content[len("error:") :].strip()
        content = content or "(no output)"
        if failed:
            sentence = f"The tool {name} failed: {content}"
        elif name == "calculator":
            sentence = f"The result is {content}"
        else:
            sentence = f"{name} returned: {content}"
        sentences.append(_sentence(sentence))
    return " ".join(sentences)


def _decide(
    messages: Sequence[BaseMessage], tools: frozenset[str], always_call_tool: str | None
) -> _Reply:
    """Apply the rules of the module docstring to a conversation.

    Args:
        messages: The conversation, system messages included.
        tools: The names of the bound tools.
        always_call_tool: The tool every reply calls, if it is bound.

    Returns:
        The reply: text, or tool calls.
    """

    def call(name: str, args: dict[str, Any], index: int = 0) -> ToolCall:
        return tool_call(name=name, args=args, id=_tool_call_id(len(messages), name, args, index))

    first_system = next((m for m in messages if isinstance(m, SystemMessage)), None)
    if first_system is not None and _message_text(first_system).startswith(SUMMARY_PROMPT):
        return _Reply(text=_summary(messages))

    if always_call_tool and always_call_tool in tools:
        args = {"expression": "1+1"} if always_call_tool == "calculator" else {}
        return _Reply(tool_calls=(call(always_call_tool, args),))

    answer = _answer_tool_results(messages)
    if answer is not None:
        return _Reply(text=answer)

    last_human = next(
        (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)),
        None,
    )
    if last_human is None:
        return _Reply(text="I have nothing to respond to yet.")
    text = _message_text(messages[last_human]).strip()
    if not text:
        return _Reply(text="You said nothing.")

    parts = _AND_CALL.split(text)
    explicit = [_EXPLICIT.match(part) for part in parts]
    if all(m is not None and m.group("name") in tools for m in explicit):
        calls = []
        for index, match in enumerate(m for m in explicit if m is not None):
            name, raw_args = match.group("name"), match.group("args")
            try:
                parsed: Any = json.loads(raw_args) if raw_args else {}
            except json.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                return _Reply(text=f"The arguments for {name} must be a JSON object.")
            calls.append(call(name, parsed, index))
        return _Reply(tool_calls=tuple(calls))

    if "save_note" in tools and (note := _SAVE_NOTE.match(text)):
        return _Reply(tool_calls=(call("save_note", {"text": note.group("rest")}),))
    if "read_notes" in tools and _READ_NOTES.search(text):
        return _Reply(tool_calls=(call("read_notes", {}),))

    key = _memory_question_key(text)
    if key is not None:
        value = _recall(messages[:last_human], key)
        if value is None:
            return _Reply(text=f"I don't know your {key} yet.")
        return _Reply(text=f"Your {key} is {value}.")
    facts = _facts(text)
    if facts:
        return _Reply(
            text=" ".join(
                f"Nice to meet you, {fact_value}."
                if fact_key == "name"
                else f"Got it: your {fact_key} is {fact_value}."
                for fact_key, fact_value in facts
            )
        )

    if "current_time" in tools and _TIME.search(text):
        return _Reply(tool_calls=(call("current_time", {}),))

    expression = _arithmetic_expression(text)
    if expression is not None:
        if "calculator" not in tools:
            return _Reply(text="I cannot calculate without the calculator tool.")
        return _Reply(tool_calls=(call("calculator", {"expression": expression}),))

    if _INSTRUCTIONS.search(text):
        system = [_message_text(m).strip() for m in messages if isinstance(m, SystemMessage)]
        system = [s for s in system if s]
        if not system:
            return _Reply(text="I have no instructions.")
        return _Reply(text="My instructions are: " + " ".join(system))

    if _HOW_MANY_MESSAGES.search(text):
        count = sum(1 for m in messages if not isinstance(m, SystemMessage))
        noun = "message" if count == 1 else "messages"
        return _Reply(text=f"This conversation has {count} {noun}.")

    return _Reply(text=f"You said: {text}")


# --------------------------------------------------------------------------- the model


class OfflineChatModel(BaseChatModel):
    """A deterministic, offline chat model that supports tools, streaming and usage.

    See the module docstring for the rules that pick a reply.

    Attributes:
        model_name: Reported as ``response_metadata["model_name"]``.
        delay_seconds: Seconds to wait before answering (``time.sleep`` on the sync paths,
            ``asyncio.sleep`` on the async ones).
        always_call_tool: If set and bound, every reply calls this tool (a runaway loop).

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_core.tools import tool
        >>> @tool
        ... def calculator(expression: str) -> str:
        ...     '''Evaluate an arithmetic expression.'''
        ...     return "42"
        >>> model = OfflineChatModel().bind_tools([calculator])
        >>> model.invoke([HumanMessage("what is 6 * 7?")]).tool_calls[0]["args"]
        {'expression': '6 * 7'}
    """

    model_name: str = "deterministic"
    delay_seconds: float = 0.0
    always_call_tool: str | None = None

    @property
    def _llm_type(self) -> str:
        """The LangChain model type identifier."""
        return "sessiongraph-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """The parameters that identify this model (used by caches and tracing)."""
        return {
            "model_name": self.model_name,
            "delay_seconds": self.delay_seconds,
            "always_call_tool": self.always_call_tool,
        }

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools, converted to OpenAI tool schemas, to the model.

        Args:
            tools: Tools as ``BaseTool`` s, functions, Pydantic models or schema dicts.
            tool_choice: Accepted for compatibility and passed along; the rules ignore it.
            **kwargs: Further arguments bound to every call.

        Returns:
            The model with ``tools`` (a list of OpenAI tool dicts) bound.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # ------------------------------------------------------------------ reply building

    def _reply_message(self, messages: list[BaseMessage], **kwargs: Any) -> AIMessage:
        """Decide the reply and build the complete ``AIMessage`` with usage and metadata.

        Args:
            messages: The conversation.
            **kwargs: Call arguments; ``tools`` lists the bound tools.

        Returns:
            The reply message.
        """
        tools = kwargs.get("tools") or []
        reply = _decide(messages, _tool_names(tools), self.always_call_tool)
        calls = list(reply.tool_calls)
        message = AIMessage(content=reply.text, tool_calls=calls)
        countable_tools: list[BaseTool | dict[str, Any]] = [
            t for t in tools if isinstance(t, BaseTool | dict)
        ]
        input_tokens = count_tokens_approximately(messages, tools=countable_tools or None)
        output_tokens = count_tokens_approximately([message])
        message.usage_metadata = UsageMetadata(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )
        message.response_metadata = {
            "model_name": self.model_name,
            "finish_reason": "tool_calls" if calls else "stop",
        }
        return message

    @staticmethod
    def _chunks(message: AIMessage) -> list[ChatGenerationChunk]:
        """Split a reply into stream chunks that merge back into ``message``.

        Text streams as word-ish tokens; a tool call streams as a chunk carrying its name and
        id, then its JSON arguments in pieces. Only the last chunk carries the usage, the
        response metadata and ``chunk_position="last"``.

        Args:
            message: The complete reply.

        Returns:
            The chunks, in order.
        """
        pieces: list[AIMessageChunk] = []
        for index, call in enumerate(message.tool_calls):
            pieces.append(
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        tool_call_chunk(name=call["name"], args="", id=call["id"], index=index)
                    ],
                )
            )
            for part in _split_tokens(json.dumps(call["args"], ensure_ascii=False)):
                pieces.append(
                    AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            tool_call_chunk(name=None, args=part, id=None, index=index)
                        ],
                    )
                )
        if not message.tool_calls:
            text = message.content if isinstance(message.content, str) else message.text
            pieces = [AIMessageChunk(content=token) for token in _split_tokens(text)]
        last = pieces[-1]
        last.usage_metadata = message.usage_metadata
        last.response_metadata = dict(message.response_metadata)
        last.chunk_position = "last"
        return [ChatGenerationChunk(message=piece) for piece in pieces]

    # ------------------------------------------------------------------ LangChain hooks

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Answer synchronously (after ``time.sleep(delay_seconds)``).

        Args:
            messages: The conversation.
            stop: Ignored.
            run_manager: Callback manager for the run.
            **kwargs: Call arguments; ``tools`` lists the bound tools.

        Returns:
            A single generation holding the reply.
        """
        if self.delay_seconds > 0:
            time.sleep(self.delay_seconds)
        return ChatResult(
            generations=[ChatGeneration(message=self._reply_message(messages, **kwargs))]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Answer asynchronously (after ``asyncio.sleep(delay_seconds)``).

        Args:
            messages: The conversation.
            stop: Ignored.
            run_manager: Callback manager for the run.
            **kwargs: Call arguments; ``tools`` lists the bound tools.

        Returns:
            A single generation holding the reply.
        """
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        return ChatResult(
            generations=[ChatGeneration(message=self._reply_message(messages, **kwargs))]
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Stream the reply synchronously (after ``time.sleep(delay_seconds)``).

        Args:
            messages: The conversation.
            stop: Ignored.
            run_manager: Callback manager for the run; told about every token.
            **kwargs: Call arguments; ``tools`` lists the bound tools.

        Yields:
            The reply's chunks; the last one carries the usage.
        """
        if self.delay_seconds > 0:
            time.sleep(self.delay_seconds)
        for chunk in self._chunks(self._reply_message(messages, **kwargs)):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Stream the reply asynchronously (after ``asyncio.sleep(delay_seconds)``).

        Args:
            messages: The conversation.
            stop: Ignored.
            run_manager: Callback manager for the run; told about every token.
            **kwargs: Call arguments; ``tools`` lists the bound tools.

        Yields:
            The reply's chunks; the last one carries the usage.
        """
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        for chunk in self._chunks(self._reply_message(messages, **kwargs)):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            await asyncio.sleep(0)  # let other tasks run between tokens
