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
3. Otherwise the text of the last human message decides. When that message also has image,
   file, audio or video blocks, a text reply starts with what the model was shown, e.g.
   ``I see 1 image. You said: what is this?`` or, with no text at all,
   ``I see 2 images and 1 file.`` (tool calls are made as usual):

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
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from runtime.models.offline_rules import decide, tool_names

__all__ = ["OfflineChatModel"]

_TOKEN = re.compile(r"\s*\S+|\s+")


def _split_tokens(text: str) -> list[str]:
    """Word-ish stream tokens that keep their leading whitespace ("a b" -> ["a", " b"])."""
    return _TOKEN.findall(text) or [""]


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
        reply = decide(messages, tool_names(tools), self.always_call_tool)
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
