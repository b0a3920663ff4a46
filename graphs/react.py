"""The tool-calling ReAct agent graph: ``agent`` (model) ⇄ ``tools`` until a plain reply.

:func:`build_graph` turns a template's spec, a chat model and its tools into an
uncompiled :class:`StateGraph`; the runtime compiles it once per template version with
its Postgres checkpointer. :func:`graph` is a factory returning the default agent compiled
*without* a checkpointer, for ``langgraph.json`` (``langgraph dev`` and LangGraph Studio
bring their own persistence and refuse a graph that has one).
"""

from __future__ import annotations

import functools
import json
import operator
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Protocol, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from typing_extensions import TypedDict

from runtime.agents import CONFIGURABLE_FIELDS, ModelSpec, TemplateSpec, default_template_spec
from runtime.models import SUMMARY_PREFIX, SUMMARY_PROMPT, make_chat_model
from runtime.settings import Settings
from runtime.tools import ToolSpec, default_registry
from runtime.turns import AGENT_NODE, approve_calls, guard_of, guarded_tool_call, now_stamp

__all__ = [
    "AgentState",
    "add_stamped_messages",
    "build_graph",
    "graph",
    "model_input",
]


def add_stamped_messages(left: Any, right: Any) -> Any:
    """``add_messages``, stamping each new message with ``response_metadata["created_at"]``.

    History shows when each message was written; the stamp rides in ``response_metadata``,
    which chat-model clients never send back to the provider. Existing stamps are kept.
    """
    added = [
        message_chunk_to_message(m)
        for m in convert_to_messages(right if isinstance(right, list) else [right])
    ]
    now = now_stamp()
    for message in added:
        message.response_metadata.setdefault("created_at", now)
    appended = _appended(left, added)
    if appended is not None:
        return appended
    return add_messages(left, added)  # type: ignore[arg-type]


_PLAIN = frozenset({HumanMessage, AIMessage, ToolMessage, SystemMessage})


def _appended(left: Any, added: list[BaseMessage]) -> list[BaseMessage] | None:
    """``left + added`` when that is what ``add_messages`` would return, else None.

    The usual update appends new messages to a stored list. ``add_messages`` normalises and
    indexes the whole list for that, which made every step cost time in proportion to the
    history; here the stored list is only checked (plain message types, ids set) and the
    new messages are appended when none replaces, removes or repeats one.
    """
    if not isinstance(left, list) or any(isinstance(m, RemoveMessage) for m in added):
        return None
    known: set[str] = set()
    for message in left:
        if type(message) not in _PLAIN or message.id is None:
            return None
        known.add(message.id)
    fresh: set[str] = set()
    for message in added:
        if message.id is None:
            message.id = str(uuid.uuid4())
        if message.id in known or message.id in fresh:
            return None
        fresh.add(message.id)
    return [*left, *added]


class AgentState(TypedDict, total=False):
    """A session's conversation state."""

    messages: Annotated[list[AnyMessage], add_stamped_messages]
    # The per-session notepad written by the ``save_note`` tool.
    notes: Annotated[list[str], operator.add]
    # With a summariser: the summary of the messages trimmed from the model's input, and how
    # many leading messages it covers.
    summary: str
    summarized: int


def _answered(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages, with a "not executed" result after any tool call left without one.

    Guards never store such a call, but a history can still hold one (a template changed
    while a turn awaited approval, a state edited by hand); chat APIs refuse it. Only the
    model's input is patched, never the stored history.
    """
    results = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    out: list[BaseMessage] = []
    for message in messages:
        out.append(message)
        if isinstance(message, AIMessage):
            out.extend(
                ToolMessage("not executed", tool_call_id=c["id"], name=c["name"], status="error")
                for c in message.tool_calls
                if c["id"] not in results
            )
    return out


def _units(messages: Sequence[BaseMessage]) -> list[list[BaseMessage]]:
    """Messages grouped so that an assistant tool call and its results stay together."""
    units: list[list[BaseMessage]] = []
    i = 0
    while i < len(messages):
        j = i + 1
        if isinstance(messages[i], AIMessage) and messages[i].tool_calls:  # type: ignore[attr-defined]
            while j < len(messages) and isinstance(messages[j], ToolMessage):
                j += 1
        units.append(list(messages[i:j]))
        i = j
    return units


def fit_context(
    system_prompt: str,
    messages: Sequence[BaseMessage],
    max_context_tokens: int | None,
    reserved_tokens: int = 0,
) -> tuple[list[BaseMessage], list[BaseMessage]]:
    """Split the conversation into ``(trimmed, kept)``: the model sees only ``kept``.

    Messages are kept in whole units (an assistant tool call with all its results), newest
    first, until the next unit would pass ``max_context_tokens`` (less the system prompt and
    ``reserved_tokens``); the newest unit is always kept, and the kept part starts on a user
    message when it holds one. Tokens are counted offline (``count_tokens_approximately``).
    """
    messages = _answered(messages)
    if max_context_tokens is None:
        return [], messages
    budget = (
        max_context_tokens
        - count_tokens_approximately([SystemMessage(system_prompt)])
        - reserved_tokens
    )
    kept: list[BaseMessage] = []
    used = 0
    for unit in reversed(_units(messages)):
        cost = count_tokens_approximately(unit)
        if kept and used + cost > budget:
            break
        kept[:0] = unit
        used += cost
    # Start on a user message when one is kept (a history opening on an answer confuses
    # models); never on a tool result, which the API would refuse without its call.
    if any(isinstance(m, HumanMessage) for m in kept):
        while not isinstance(kept[0], HumanMessage):
            kept.pop(0)
    while kept and isinstance(kept[0], ToolMessage):
        kept.pop(0)
    return messages[: len(messages) - len(kept)], kept


def model_input(
    system_prompt: str,
    messages: Sequence[BaseMessage],
    max_context_tokens: int | None,
    summary: str | None = None,
) -> list[BaseMessage]:
    """What the model sees: the system prompt, the summary of what was trimmed (if any), and
    the most recent messages that fit (see :func:`fit_context`).

    The stored history is untouched: only the model's input is trimmed.
    """
    head = [SystemMessage(system_prompt)]
    if summary:
        head.append(SystemMessage(SUMMARY_PREFIX + summary))
    reserved = count_tokens_approximately(head[1:]) if summary else 0
    _, kept = fit_context(system_prompt, messages, max_context_tokens, reserved)
    return [*head, *kept]


async def summarize(
    model: Runnable[Any, BaseMessage],
    previous: str | None,
    trimmed: Sequence[BaseMessage],
    config: RunnableConfig,
) -> str:
    """Fold newly trimmed messages into the running summary with the summariser model."""
    transcript = "\n".join(f"{m.type}: {m.text}" for m in trimmed if m.text)
    request = (f"Summary so far:\n{previous}\n\n" if previous else "") + (
        f"Newly trimmed messages:\n{transcript}"
    )
    # nostream: the summary is not part of the reply, so its tokens are not streamed.
    result = await model.with_config(tags=[TAG_NOSTREAM]).ainvoke(
        [SystemMessage(SUMMARY_PROMPT), HumanMessage(request)], config
    )
    return result.text.strip()


def build_graph(
    spec: TemplateSpec,
    *,
    model: BaseChatModel,
    tools: Sequence[ToolSpec],
    summarizer: BaseChatModel | None = None,
) -> StateGraph[AgentState, Any, AgentState, AgentState]:
    """Build (not compile) the ReAct graph for one template, its model and its tools.

    Per-turn guards (budgets, permissions, approvals, idempotent writes) come from the
    guard the turn runner puts in ``config["configurable"][CONFIG_KEY_GUARD]``; without one
    (``langgraph dev``) the graph runs unguarded. With a ``summarizer`` and
    ``max_context_tokens``, what trimming drops from the model's input is summarised into
    the ``summary`` channel.
    """
    lc_tools = [tool_spec.tool for tool_spec in tools]
    builder = StateGraph(AgentState)
    builder.add_node(AGENT_NODE, _agent_node(spec, model, lc_tools, summarizer))
    builder.add_edge(START, AGENT_NODE)
    if lc_tools:
        needs_approval = any(t.requires_approval for t in tools)
        builder.add_node(
            "tools",
            ToolNode(lc_tools, handle_tool_errors=True, awrap_tool_call=guarded_tool_call),
        )
        first = "approve" if needs_approval else "tools"
        builder.add_conditional_edges(AGENT_NODE, _after_agent, {"tools": first, END: END})
        if needs_approval:
            builder.add_node("approve", _approve)
            builder.add_edge("approve", "tools")
        builder.add_edge("tools", AGENT_NODE)
    return builder


async def _after_agent(state: AgentState) -> str:
    """``tools_condition`` as a coroutine: LangGraph runs a plain function given as an edge
    in a worker thread, a thread hop on every turn for a check of the last message."""
    return tools_condition(cast(dict[str, Any], state))


class _Node(Protocol):
    """A node function taking the state and the config, as LangGraph calls it."""

    async def __call__(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]: ...


def _agent_node(
    spec: TemplateSpec,
    model: BaseChatModel,
    lc_tools: Sequence[BaseTool],
    summarizer: BaseChatModel | None,
) -> _Node:
    """The ``agent`` node: fold what trimming dropped into the summary, then call the model."""
    system_prompt, max_context_tokens = spec.system_prompt, spec.max_context_tokens
    bound: dict[frozenset[str], Runnable[Any, BaseMessage]] = {}

    def offered(allowed: frozenset[str]) -> Runnable[Any, BaseMessage]:
        # The model is offered only the tools this caller may use; one binding per set.
        if allowed not in bound:
            chosen = [t for t in lc_tools if t.name in allowed]
            bound[allowed] = model.bind_tools(chosen) if chosen else model
        return bound[allowed]

    every_tool = frozenset(t.name for t in lc_tools)

    async def agent(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        messages = state.get("messages", [])
        update = (
            await _fold_trimmed(summarizer, spec, state, messages, config) if summarizer else {}
        )
        summary = update.get("summary", state.get("summary"))
        prompt = model_input(system_prompt, messages, max_context_tokens, summary)
        guard = guard_of(config)
        if guard is None:
            response = await offered(every_tool).ainvoke(prompt, config)
        else:
            response = await guard.invoke_model(offered(guard.allowed), prompt, config)
        return {**update, "messages": [response]}

    return agent


async def _fold_trimmed(
    summarizer: BaseChatModel,
    spec: TemplateSpec,
    state: AgentState,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
) -> dict[str, Any]:
    """The ``summary`` update for messages newly trimmed from the model's input (or none)."""
    summary = state.get("summary")
    reserved = (
        count_tokens_approximately([SystemMessage(SUMMARY_PREFIX + summary)]) if (summary) else 0
    )
    trimmed, _ = fit_context(spec.system_prompt, messages, spec.max_context_tokens, reserved)
    stored = {id(m) for m in messages}
    trimmed = [m for m in trimmed if id(m) in stored]  # not the synthetic results
    done = state.get("summarized", 0)
    if len(trimmed) <= done:
        return {}
    summary = await summarize(summarizer, summary, trimmed[done:], config)
    return {"summary": summary, "summarized": len(trimmed)}


async def _approve(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    """The ``approve`` node: pause for a human decision on calls that need one."""
    messages = state.get("messages") or []
    last = messages[-1] if messages else None
    if not isinstance(last, AIMessage):
        return {}
    edited = approve_calls(last, guard_of(config))
    return {} if edited is None else {"messages": [edited]}


@functools.lru_cache(maxsize=32)
def _graph_for(fields: str) -> CompiledStateGraph[AgentState, Any, AgentState, AgentState]:
    settings = Settings()
    spec = default_template_spec(settings.resolved_default_model())
    spec = TemplateSpec.model_validate({**spec.model_dump(), **json.loads(fields)})
    return build_graph(
        spec,
        model=make_chat_model(spec.model, settings),
        tools=default_registry().resolve(spec.tools),
    ).compile(name="react")


def graph(config: RunnableConfig) -> CompiledStateGraph[AgentState, Any, AgentState, AgentState]:
    """The built-in agent compiled without a checkpointer: the ``langgraph.json`` entry.

    A factory taking a ``RunnableConfig``, as ``langgraph dev`` accepts, so importing this
    module builds nothing. The agent's fields in ``config["configurable"]`` (``system_prompt``,
    ``model`` as ``"provider:name"`` or an object, built-in ``tools``, ``max_context_tokens``,
    ``budgets``) are how it reads its configuration, over the default agent's and the
    environment's settings (``SESSIONGRAPH_DEFAULT_MODEL``, ``SESSIONGRAPH_OPENAI_*``); each
    configuration is built once.
    """
    configurable = (config or {}).get("configurable") or {}
    fields = {k: configurable[k] for k in CONFIGURABLE_FIELDS if k in configurable}
    if isinstance(fields.get("model"), str):
        fields["model"] = ModelSpec.split(fields["model"])
    return _graph_for(json.dumps(fields, sort_keys=True, default=str))
