"""A support-desk graph of your own: a custom state, a non-message channel, and the kit.

``classify`` files each user message under a topic (a channel of its own that persists with
the session); ``agent`` calls the agent's model through :func:`runtime.turns.chat_model`, and
``tools`` runs the agent's tools through :func:`runtime.turns.tool_node` — so permissions,
budgets, approvals and idempotent writes apply here as they do in the built-in graph.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AnyMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import tools_condition
from typing_extensions import TypedDict

from runtime.turns import chat_model, tool_node

TOPICS = {"refund": "billing", "invoice": "billing", "file": "docs", "faq": "docs"}


class DeskState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    topic: str  # the last message's topic
    turns: int  # how many user messages this conversation has had


def classify(state: DeskState) -> dict[str, Any]:
    """File the newest user message under a topic, and count it."""
    text = state["messages"][-1].text.lower()
    topic = next((t for word, t in TOPICS.items() if word in text), "general")
    return {"topic": topic, "turns": state.get("turns", 0) + 1}


async def agent(state: DeskState, config: RunnableConfig) -> dict[str, Any]:
    """Answer with the agent's model, offered the tools this caller may use."""
    prompt = config["configurable"].get("system_prompt", "You are a support agent.")
    system = SystemMessage(f"{prompt} The topic is {state.get('topic', 'general')}.")
    reply = await chat_model(config).ainvoke([system, *state["messages"]], config)
    return {"messages": [reply]}


builder = StateGraph(DeskState)
builder.add_node("classify", classify)
builder.add_node("agent", agent)
builder.add_node("tools", tool_node())
builder.add_edge(START, "classify")
builder.add_edge("classify", "agent")
builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
builder.add_edge("tools", "agent")
graph = builder.compile()
