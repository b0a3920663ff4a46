"""LangGraph graph builders, one module per graph kind.

:data:`GRAPH_KINDS` maps a template's ``graph_kind`` to its builder. Each module also
exports ``graph``, compiled without a checkpointer, for ``langgraph.json``.
"""

from __future__ import annotations

from graphs.react import build_graph as build_react

__all__ = ["GRAPH_KINDS"]

GRAPH_KINDS = {"react": build_react}
