"""A graph that asks a human with LangGraph's ``interrupt()``: draft, review, then send.

The run pauses at ``review`` with the draft; resume it with ``{"approved": true}`` (or
``false`` and a ``note``) through the LangGraph API's ``Command(resume=...)`` or
``POST /v1/sessions/{id}/resume`` with ``{"value": ...}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict


class ReviewState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    draft: str


def draft(state: ReviewState) -> dict[str, Any]:
    return {"draft": f"Thanks for writing about: {state['messages'][-1].text}"}


def review(state: ReviewState) -> dict[str, Any]:
    decision = interrupt({"question": "Send this reply?", "draft": state["draft"]})
    if isinstance(decision, dict) and decision.get("approved"):
        return {"messages": [AIMessage(state["draft"])]}
    note = decision.get("note", "") if isinstance(decision, dict) else ""
    return {"messages": [AIMessage(f"The reply was held back. {note}".strip())]}


def graph_factory() -> StateGraph[ReviewState, Any, ReviewState, ReviewState]:
    builder = StateGraph(ReviewState)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    return builder


# An uncompiled StateGraph: the server compiles it with its own checkpointer.
graph = graph_factory()
