"""The tool-calling ReAct agent graph: ``agent`` (model) ⇄ ``tools`` until a plain reply.

:func:`build_graph` turns a template's spec, a chat model and its tools into an
uncompiled :class:`StateGraph`; the runtime compiles it once per template version with
its Postgres checkpointer. :func:`graph` is a factory returning the default agent compiled
*without* a checkpointer, for ``langgraph.json`` (``langgraph dev`` and LangGraph Studio
bring their own persistence and refuse a graph that has one).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    SystemMessage,
    convert_to_messages,
    trim_messages,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from typing_extensions import TypedDict

if TYPE_CHECKING:  # graphs import nothing from runtime at import time (no cycle)
    from runtime.templates import TemplateSpec
    from runtime.tools import ToolSpec

__all__ = ["AgentState", "add_stamped_messages", "build_graph", "graph", "model_input"]


def add_stamped_messages(left: Any, right: Any) -> Any:
    """``add_messages``, stamping each new message with ``response_metadata["created_at"]``.

    History shows when each message was written; the stamp rides in ``response_metadata``,
    which chat-model clients never send back to the provider. Existing stamps are kept.
    """
    added = convert_to_messages(right if isinstance(right, list) else [right])
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for message in added:
        message.response_metadata.setdefault("created_at", now)
    return add_messages(left, list(added))  # type: ignore[arg-type]


class AgentState(TypedDict, total=False):
    """A session's conversation state."""

    messages: Annotated[list[AnyMessage], add_stamped_messages]
    # The per-session notepad written by the ``save_note`` tool.
    notes: Annotated[list[str], operator.add]


def model_input(
    system_prompt: str, messages: Sequence[BaseMessage], max_context_tokens: int | None
) -> list[BaseMessage]:
    """What the model sees: the system prompt plus the most recent messages that fit.

    Trimming starts on a human message, so an assistant tool call is never separated from
    its results; the stored history is untouched.
    """
    history = list(messages)
    if max_context_tokens is not None:
        budget = max_context_tokens - count_tokens_approximately([SystemMessage(system_prompt)])
        history = trim_messages(
            history,
            max_tokens=max(budget, 1),
            token_counter=count_tokens_approximately,
            strategy="last",
            start_on="human",
            allow_partial=False,
        )
    return [SystemMessage(system_prompt), *history]


def build_graph(
    spec: TemplateSpec, *, model: BaseChatModel, tools: Sequence[ToolSpec]
) -> StateGraph[AgentState, Any, AgentState, AgentState]:
    """Build (not compile) the ReAct graph for one template, its model and its tools."""
    system_prompt, max_context_tokens = spec.system_prompt, spec.max_context_tokens
    lc_tools = [tool_spec.tool for tool_spec in tools]
    bound = model.bind_tools(lc_tools) if lc_tools else model

    async def agent(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        prompt = model_input(system_prompt, state.get("messages", []), max_context_tokens)
        response = await bound.ainvoke(prompt, config)
        return {"messages": [response]}

    builder = StateGraph(AgentState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    if lc_tools:
        builder.add_node("tools", ToolNode(lc_tools, handle_tool_errors=True))
        builder.add_conditional_edges("agent", tools_condition)
        builder.add_edge("tools", "agent")
    return builder


@functools.cache
def _default_graph() -> CompiledStateGraph[AgentState, Any, AgentState, AgentState]:
    from runtime.models import make_chat_model
    from runtime.settings import Settings
    from runtime.templates import default_template_spec
    from runtime.tools import default_registry

    settings = Settings()
    spec = default_template_spec(settings.resolved_default_model())
    return build_graph(
        spec,
        model=make_chat_model(spec.model, settings),
        tools=default_registry().resolve(spec.tools),
    ).compile(name="agent")


def graph(config: RunnableConfig) -> CompiledStateGraph[AgentState, Any, AgentState, AgentState]:
    """The default agent compiled without a checkpointer: the ``langgraph.json`` entry.

    A factory taking a ``RunnableConfig``, as ``langgraph dev`` accepts, so importing this
    module builds nothing; the graph is built once, on first use, from the environment's
    settings (``SESSIONGRAPH_DEFAULT_MODEL``, ``SESSIONGRAPH_OPENAI_*``).
    """
    return _default_graph()
