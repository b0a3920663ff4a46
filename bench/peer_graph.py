"""The one-node graph the peers serve: a ``StateGraph`` over messages whose node appends an
instant ``AIMessage``. It depends only on ``langgraph`` (and the ``langchain-core`` it brings),
so it loads in every peer's environment; ``langgraph.json`` / ``aegra.json`` point at ``graph``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, MessagesState, StateGraph

__all__ = ["graph", "reply"]


def reply(state: MessagesState) -> dict[str, Any]:
    """Answer the last message at once, like sessiongraph's offline model echoing it."""
    messages: list[AnyMessage] = state["messages"]
    last = messages[-1].content if messages else ""
    return {"messages": [AIMessage(content=f"You said: {last}")]}


_builder = StateGraph(MessagesState)
_builder.add_node("reply", reply)
_builder.add_edge(START, "reply")
_builder.add_edge("reply", END)

graph = _builder.compile()
