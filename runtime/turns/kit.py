"""The guardrail kit for your own graphs: the agent's model and a guarded tool node.

A graph from ``langgraph.json`` gets every guard of the built-in graph with two lines::

    from runtime.turns.kit import chat_model, tool_node

    async def call_model(state, config):
        return {"messages": [await chat_model(config).ainvoke(state["messages"], config)]}

    builder.add_node("tools", tool_node())

:func:`chat_model` is the agent's configured model with the caller's permitted tools bound,
called under the turn's guard (``max_steps``, ``deadline_seconds``, retries of malformed
answers). :func:`tool_node` runs the agent's tools through the guard (roles, tool and write
budgets, repeat limits, idempotent writes) and first pauses for approval of calls that need
it, with LangGraph's ``interrupt()``. Under ``langgraph dev`` (no runtime around the graph)
both fall back to the model named in ``config["configurable"]["model"]`` (else the default
one) and the built-in tools, unguarded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt

from runtime.agents import CompiledAgent, ModelSpec
from runtime.models import make_chat_model
from runtime.settings import get_settings
from runtime.tools import ToolSpec, default_registry
from runtime.turns.constants import CONFIG_KEY_AGENT
from runtime.turns.guards import TurnGuard, guard_of, guarded_tool_call

__all__ = ["agent_of", "approve_calls", "chat_model", "tool_node"]


def agent_of(config: Mapping[str, Any]) -> CompiledAgent | None:
    """The running agent version in a graph's config (None: not run by sessiongraph)."""
    agent = (config.get("configurable") or {}).get(CONFIG_KEY_AGENT)
    return agent if isinstance(agent, CompiledAgent) else None


def _parts(config: Mapping[str, Any]) -> tuple[BaseChatModel, Sequence[ToolSpec]]:
    """The agent's model and tools, or (unmanaged) the configured or default ones."""
    agent = agent_of(config)
    if agent is not None:
        return agent.model, agent.tools
    configurable = config.get("configurable") or {}
    settings = get_settings()
    model = configurable.get("model") or settings.resolved_default_model()
    spec = ModelSpec.parse(model) if isinstance(model, str) else ModelSpec.model_validate(model)
    registry = default_registry()
    names = configurable.get("tools")
    tools = registry.resolve(names) if isinstance(names, list) else registry.specs()
    return make_chat_model(spec, settings), tools


def chat_model(config: RunnableConfig) -> Runnable[Any, BaseMessage]:
    """The agent's chat model, offered the tools the caller may use, under the turn's guard.

    When a budget stops the turn, the model is not called and the result is the guard's
    final message (plain text, no tool calls), so a graph that loops on tool calls ends.
    """
    guard = guard_of(config)
    agent = agent_of(config)
    if agent is not None:
        allowed = guard.allowed if guard is not None else frozenset(t.name for t in agent.tools)
        bound = agent.offered(allowed)
    else:  # unmanaged (langgraph dev): every tool, unguarded
        model, tools = _parts(config)
        chosen = [t.tool for t in tools]
        bound = model.bind_tools(chosen) if chosen else model
    if guard is None:
        return bound

    async def invoke(prompt: Any, config: RunnableConfig) -> BaseMessage:
        messages = prompt if isinstance(prompt, list) else [prompt]
        return await guard.invoke_model(bound, messages, config)

    return RunnableLambda(invoke, name="chat_model")


def approve_calls(message: AIMessage, guard: TurnGuard | None) -> AIMessage | None:
    """Pause for a human decision on the calls of ``message`` that need one.

    Returns the message with edited arguments when a decision edits a call, else None.
    Rejections are remembered by the guard, whose tool wrapper then answers "rejected".
    """
    if guard is None:
        return None
    pending = guard.pending_approvals(message.tool_calls)
    if not pending:
        return None
    decisions = guard.accept_decisions(pending, interrupt({"type": "approval", "pending": pending}))
    edits: dict[str | None, Any] = {k: d.args for k, d in decisions.items() if d.action == "edit"}
    if not edits:
        return None
    # The stored call shows the arguments the tool really ran with.
    calls = [{**c, "args": edits.get(c["id"], c["args"])} for c in message.tool_calls]
    return message.model_copy(update={"tool_calls": calls})


class _GuardedTools:
    """A node running the agent's tools (one ``ToolNode`` per tool set, built on first use)."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, ...], ToolNode] = {}

    def _node(self, tools: Sequence[ToolSpec]) -> ToolNode:
        # By the tool objects, not their names: two runtimes may have same-named tools.
        key = tuple(id(t.tool) for t in tools)
        node = self._nodes.get(key)
        if node is None:
            node = ToolNode(
                [t.tool for t in tools], handle_tool_errors=True, awrap_tool_call=guarded_tool_call
            )
            self._nodes[key] = node
        return node

    async def __call__(self, state: Any, config: RunnableConfig) -> Any:
        messages: list[BaseMessage] = (
            state.get("messages", []) if isinstance(state, Mapping) else state
        )
        last = messages[-1] if messages else None
        edited = approve_calls(last, guard_of(config)) if isinstance(last, AIMessage) else None
        _, tools = _parts(config)
        node = self._node(tools)
        if edited is None:
            return await node.ainvoke(state, config)
        result = await node.ainvoke({"messages": [*messages[:-1], edited]}, config)
        return {"messages": [edited, *result["messages"]]}


def tool_node() -> Runnable[Any, Any]:
    """A graph node running the agent's tools under the turn's guard (see the module doc).

    Reads the last message's tool calls from the ``messages`` channel and returns the tool
    results (and, after an edit, the edited call), as LangGraph's ``ToolNode`` does.
    """
    return RunnableLambda(_GuardedTools(), name="tools")
