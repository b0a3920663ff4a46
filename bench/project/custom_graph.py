"""The bench's own graph (W1G): a user's graph as the README shows one, not the built-in.

A custom state with a non-message channel, a node that counts the turn, and a node that calls
the agent's model through the kit (:func:`runtime.turns.chat_model`), with no tools.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from runtime.turns import chat_model


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: int


def count(state: State) -> dict[str, Any]:
    return {"turns": state.get("turns", 0) + 1}


async def answer(state: State, config: RunnableConfig) -> dict[str, Any]:
    return {"messages": [await chat_model(config).ainvoke(state["messages"], config)]}


builder = StateGraph(State)
builder.add_node("count", count)
builder.add_node("answer", answer)
builder.add_edge(START, "count")
builder.add_edge("count", "answer")
graph = builder.compile()
