"""The compiled-graph cache: each ``(agent_id, version)`` compiled once, then shared.

:class:`GraphCache` builds each template version once (its graph compiled with the process's
checkpointer, its chat model and its tools) and shares the :class:`CompiledAgent` among every
session of that version: a session is only ``(graph, thread_id)``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.pregel import Pregel

from runtime.agents.spec import AgentTemplate, template_from_row
from runtime.tools import ToolSpec

__all__ = ["CompiledAgent", "CompiledGraph", "GraphCache"]

CompiledGraph = Pregel[Any, Any, Any, Any]


@dataclass(frozen=True, eq=False)
class CompiledAgent:
    """One agent version, ready to run: its compiled graph, chat model and tools.

    Graphs that use the runtime's kit (:mod:`runtime.turns.kit`) find it in their config
    and take the model and tools from here.
    """

    template: AgentTemplate
    graph: CompiledGraph
    model: BaseChatModel
    tools: tuple[ToolSpec, ...]
    # The keys its input takes (None: any), so a run's unknown keys are refused, not dropped.
    input_keys: frozenset[str] | None = None
    # What its runs find in config["configurable"] (TemplateSpec.configurable_values), once.
    configurable: Mapping[str, Any] = field(default_factory=dict)


class GraphCache:
    """Compiled agents keyed by ``(agent_id, version)``, built once each (LRU-bounded).

    ``compiles`` counts builds, so tests and metrics can show each version compiled exactly
    once. Old versions fall out as the LRU bound is reached.
    """

    def __init__(
        self, build: Callable[[AgentTemplate], Awaitable[CompiledAgent]], max_entries: int = 256
    ) -> None:
        self._build = build
        self._max_entries = max_entries
        self._agents: OrderedDict[tuple[str, int], CompiledAgent] = OrderedDict()
        # Builds in progress: concurrent first uses of one version wait for the same one.
        self._building: dict[tuple[str, int], asyncio.Future[CompiledAgent]] = {}
        self.compiles = 0

    def lookup(self, agent_id: str, version: int) -> CompiledAgent | None:
        """The compiled agent for this version if it is cached, else None."""
        agent = self._agents.get((agent_id, version))
        if agent is not None:
            self._agents.move_to_end((agent_id, version))
        return agent

    async def for_row(self, row: Mapping[str, Any]) -> CompiledAgent:
        """The compiled agent of an ``agents`` row (a lease's ``agent_row``)."""
        agent = self.lookup(row["agent_id"], row["version"])
        return agent if agent is not None else await self.get(template_from_row(dict(row)))

    async def get(self, template: AgentTemplate) -> CompiledAgent:
        """The compiled agent for this template version, built on first use."""
        key = (template.agent_id, template.version)
        agent = self.lookup(*key)
        if agent is not None:
            return agent
        pending = self._building.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[CompiledAgent] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            agent = await self._build(template)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # seen: waiters re-raise it
            raise
        finally:
            del self._building[key]
        future.set_result(agent)
        self.compiles += 1
        self._agents[key] = agent
        while len(self._agents) > self._max_entries:
            self._agents.popitem(last=False)
        return agent
