"""The graphs shipped with sessiongraph: the built-in ReAct graph (``react``).

The runtime finds its builder by import reference (``runtime.project.BUILTIN_BUILDER``,
``"graphs.react:build_graph"``), so it never imports this package. ``graphs.react:graph``
is the same graph compiled without a checkpointer, for ``langgraph.json`` and
``langgraph dev``; a project's own graphs come from its ``langgraph.json``.
"""

from __future__ import annotations
