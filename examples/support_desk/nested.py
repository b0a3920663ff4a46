"""A graph with a subgraph: ``research`` (a compiled graph used as a node) gathers findings
from the desk's files, pausing to confirm when asked to; ``answer`` reports them.

A factory taking the agent's ``RunnableConfig``: ``configurable["max_findings"]`` (set on
the agent) bounds what research keeps.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict


class ResearchState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    findings: list[str]


def _research(max_findings: int) -> Any:
    def search(state: ResearchState) -> dict[str, Any]:
        words = [w.strip("?.,!") for w in state["messages"][-1].text.split() if len(w) > 3]
        return {"findings": [f"note on {w.lower()}" for w in words][:max_findings]}

    def check(state: ResearchState) -> dict[str, Any]:
        if "confirm" in state["messages"][-1].text.lower():
            answer = interrupt({"question": "Keep these findings?", "findings": state["findings"]})
            if not (isinstance(answer, dict) and answer.get("keep")):
                return {"findings": []}
        return {}

    builder = StateGraph(ResearchState)
    builder.add_node("search", search)
    builder.add_node("check", check)
    builder.add_edge(START, "search")
    builder.add_edge("search", "check")
    return builder.compile()


def answer(state: ResearchState) -> dict[str, Any]:
    findings = state.get("findings") or []
    return {"messages": [AIMessage(f"I found {len(findings)}: {'; '.join(findings)}.")]}


async def graph(config: RunnableConfig) -> Any:
    """Built per agent version, from the agent's configuration."""
    max_findings = int(config.get("configurable", {}).get("max_findings", 3))
    builder = StateGraph(ResearchState)
    builder.add_node("research", _research(max_findings))
    builder.add_node("answer", answer)
    builder.add_edge(START, "research")
    builder.add_edge("research", "answer")
    return builder.compile()
