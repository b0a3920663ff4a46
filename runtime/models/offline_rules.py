"""The offline model's reply rules: a pure function of the conversation and the bound tools.

:func:`decide` applies the rules listed in :mod:`runtime.models.offline`'s docstring, in
order; the first that applies wins. Nothing here touches LangChain's model machinery.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call
from langchain_core.tools import BaseTool

from runtime.models.prompts import SUMMARY_PREFIX, SUMMARY_PROMPT

__all__ = ["Reply", "decide", "tool_names"]


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


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Reply:
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


def tool_names(tools: Sequence[Any] | None) -> frozenset[str]:
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


def decide(
    messages: Sequence[BaseMessage], tools: frozenset[str], always_call_tool: str | None
) -> Reply:
    """Apply the rules of :mod:`runtime.models.offline`'s docstring to a conversation.

    Args:
        messages: The conversation, system messages included.
        tools: The names of the bound tools.
        always_call_tool: The tool every reply calls, if it is bound.

    Returns:
        The reply: text, or tool calls.
    """
    count = len(messages)
    first_system = next((m for m in messages if isinstance(m, SystemMessage)), None)
    if first_system is not None and _message_text(first_system).startswith(SUMMARY_PROMPT):
        return Reply(text=_summary(messages))

    if always_call_tool and always_call_tool in tools:
        args = {"expression": "1+1"} if always_call_tool == "calculator" else {}
        return Reply(tool_calls=(_call(count, always_call_tool, args),))

    answer = _answer_tool_results(messages)
    if answer is not None:
        return Reply(text=answer)

    last_human = next(
        (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)),
        None,
    )
    if last_human is None:
        return Reply(text="I have nothing to respond to yet.")
    text = _message_text(messages[last_human]).strip()
    seen = _seen(messages[last_human])
    if seen and not text:
        return Reply(text=seen)
    if not text:
        return Reply(text="You said nothing.")
    reply = _reply_to(text, messages, last_human, tools)
    if seen and not reply.tool_calls:
        return Reply(text=f"{seen} {reply.text}")
    return reply


# Block types the model reports seeing, by the noun it uses (OpenAI's and LangChain's names).
_SEEN_KINDS = {
    "image": "image",
    "image_url": "image",
    "file": "file",
    "audio": "audio clip",
    "input_audio": "audio clip",
    "video": "video",
}


def _seen(message: BaseMessage) -> str:
    """What a message shows besides text: ``I see 2 images and 1 file.``, or ``""``."""
    counts: dict[str, int] = {}
    for block in message.content if isinstance(message.content, list) else ():
        kind = block.get("type") if isinstance(block, dict) else None
        noun = _SEEN_KINDS.get(kind) if isinstance(kind, str) else None
        if noun is not None:
            counts[noun] = counts.get(noun, 0) + 1
    parts = [
        f"{counts[noun]} {noun}{'' if counts[noun] == 1 else 's'}"
        for noun in dict.fromkeys(_SEEN_KINDS.values())
        if noun in counts
    ]
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"I see {listed}."


def _call(message_count: int, name: str, args: dict[str, Any], index: int = 0) -> ToolCall:
    """A tool call with its deterministic id."""
    return tool_call(name=name, args=args, id=_tool_call_id(message_count, name, args, index))


def _reply_to(
    text: str, messages: Sequence[BaseMessage], last_human: int, tools: frozenset[str]
) -> Reply:
    """Rule 3: the text of the last human message (``messages[last_human]``) decides."""
    count = len(messages)
    if (reply := _explicit_calls(text, count, tools)) is not None:
        return reply
    if "save_note" in tools and (note := _SAVE_NOTE.match(text)):
        return Reply(tool_calls=(_call(count, "save_note", {"text": note.group("rest")}),))
    if "read_notes" in tools and _READ_NOTES.search(text):
        return Reply(tool_calls=(_call(count, "read_notes", {}),))
    if (reply := _memory_reply(text, messages[:last_human])) is not None:
        return reply
    if "current_time" in tools and _TIME.search(text):
        return Reply(tool_calls=(_call(count, "current_time", {}),))
    expression = _arithmetic_expression(text)
    if expression is not None:
        if "calculator" not in tools:
            return Reply(text="I cannot calculate without the calculator tool.")
        return Reply(tool_calls=(_call(count, "calculator", {"expression": expression}),))
    if _INSTRUCTIONS.search(text):
        system = [_message_text(m).strip() for m in messages if isinstance(m, SystemMessage)]
        system = [s for s in system if s]
        if not system:
            return Reply(text="I have no instructions.")
        return Reply(text="My instructions are: " + " ".join(system))
    if _HOW_MANY_MESSAGES.search(text):
        count = sum(1 for m in messages if not isinstance(m, SystemMessage))
        noun = "message" if count == 1 else "messages"
        return Reply(text=f"This conversation has {count} {noun}.")
    return Reply(text=f"You said: {text}")


def _explicit_calls(text: str, message_count: int, tools: frozenset[str]) -> Reply | None:
    """``use tool NAME with {json}`` (several joined by ``and``), every NAME bound."""
    explicit = [_EXPLICIT.match(part) for part in _AND_CALL.split(text)]
    if not all(m is not None and m.group("name") in tools for m in explicit):
        return None
    calls = []
    for index, match in enumerate(m for m in explicit if m is not None):
        name, raw_args = match.group("name"), match.group("args")
        try:
            parsed: Any = json.loads(raw_args) if raw_args else {}
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            return Reply(text=f"The arguments for {name} must be a JSON object.")
        calls.append(_call(message_count, name, parsed, index))
    return Reply(tool_calls=tuple(calls))


def _memory_reply(text: str, earlier: Sequence[BaseMessage]) -> Reply | None:
    """A memory question answered from ``earlier``, or a memory statement acknowledged."""
    key = _memory_question_key(text)
    if key is not None:
        value = _recall(earlier, key)
        if value is None:
            return Reply(text=f"I don't know your {key} yet.")
        return Reply(text=f"Your {key} is {value}.")
    facts = _facts(text)
    if not facts:
        return None
    return Reply(
        text=" ".join(
            f"Nice to meet you, {fact_value}."
            if fact_key == "name"
            else f"Got it: your {fact_key} is {fact_value}."
            for fact_key, fact_value in facts
        )
    )
