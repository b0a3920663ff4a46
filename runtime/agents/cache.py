"""The compiled-graph cache: each ``(agent_id, version)`` compiled once, then shared.

:class:`GraphCache` compiles each template version once, with the process's checkpointer,
and shares the result among every session of that version: a session is only
``(graph, thread_id)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from runtime.agents.spec import AgentTemplate

__all__ = ["CompiledGraph", "GraphCache"]

CompiledGraph = CompiledStateGraph[Any, Any, Any, Any]


class GraphCache:
    """Compiled graphs keyed by ``(agent_id, version)``, compiled once each (LRU-bounded).

    ``compiles`` counts compilations, so tests and metrics can show each version compiled
    exactly once. Old versions fall out as the LRU bound is reached.
    """

    def __init__(
        self,
        build: Callable[[AgentTemplate], Any],
        checkpointer: BaseCheckpointSaver[Any],
        max_entries: int = 256,
    ) -> None:
        self._build = build
        self._checkpointer = checkpointer
        self._max_entries = max_entries
        self._graphs: OrderedDict[tuple[str, int], CompiledGraph] = OrderedDict()
        self.compiles = 0

    def lookup(self, agent_id: str, version: int) -> CompiledGraph | None:
        """The compiled graph for this version if it is cached, else None."""
        graph = self._graphs.get((agent_id, version))
        if graph is not None:
            self._graphs.move_to_end((agent_id, version))
        return graph

    def get(self, template: AgentTemplate) -> CompiledGraph:
        """The compiled graph for this template version, compiling it on first use."""
        key = (template.agent_id, template.version)
        graph = self._graphs.get(key)
        if graph is not None:
            self._graphs.move_to_end(key)
            return graph
        # Compiling is synchronous and takes a few ms; concurrent first uses of one version
        # cannot interleave here because no await separates the check from the insert.
        graph = self._build(template).compile(
            checkpointer=self._checkpointer, name=template.agent_id
        )
        self.compiles += 1
        self._graphs[key] = graph
        while len(self._graphs) > self._max_entries:
            self._graphs.popitem(last=False)
        return graph
