"""LangGraph graph builders, one module per graph kind.

The runtime finds a kind's builder by import reference (``runtime.turns.GRAPH_KINDS``:
``"react"`` is ``"graphs.react:build_graph"``), so it never imports this package. Each
module also exports ``graph``, compiled without a checkpointer, for ``langgraph.json``.
"""

from __future__ import annotations
