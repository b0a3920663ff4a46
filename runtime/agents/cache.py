"""The compiled-graph cache: each agent version compiled once, then shared.

An agent version is keyed by :data:`AgentKey` ``(owner, agent_id, version)``: agent ids are
scoped by owner, so two owners' ``support`` agents are two entries, never one.

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
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langgraph.pregel import Pregel

from runtime.agents.spec import AgentTemplate, template_from_row
from runtime.tools import ToolSpec

__all__ = ["AgentKey", "CompiledAgent", "CompiledGraph", "GraphCache", "agent_key"]

CompiledGraph = Pregel[Any, Any, Any, Any]
# (the agent's owner, agent_id, version): one agent version, whoever's it is.
AgentKey = tuple[str, str, int]


def agent_key(template: AgentTemplate) -> AgentKey:
    """The key of a template version (in the cache, and in anything kept per version)."""
    return (template.owner, template.agent_id, template.version)


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
    # The model bound to each set of tools a caller may use (see :meth:`offered`).
    _bound: dict[frozenset[str], Runnable[Any, BaseMessage]] = field(
        default_factory=dict, repr=False
    )

    def offered(self, allowed: frozenset[str]) -> Runnable[Any, BaseMessage]:
        """The model offered the tools named in ``allowed`` (bound once per set)."""
        bound = self._bound.get(allowed)
        if bound is None:
            chosen = [t.tool for t in self.tools if t.name in allowed]
            bound = self.model.bind_tools(chosen) if chosen else self.model
            self._bound[allowed] = bound
        return bound


class GraphCache:
    """Compiled agents keyed by :data:`AgentKey`, built once each (LRU-bounded).

    ``compiles`` counts builds, so tests and metrics can show each version compiled exactly
    once. Old versions fall out as the LRU bound is reached.
    """

    def __init__(
        self, build: Callable[[AgentTemplate], Awaitable[CompiledAgent]], max_entries: int = 256
    ) -> None:
        self._build = build
        self._max_entries = max_entries
        self._agents: OrderedDict[AgentKey, CompiledAgent] = OrderedDict()
        # Builds in progress, each a task of its own: concurrent first uses of one version
        # wait for the same build, and a caller that is cancelled cancels only its own wait.
        self._building: dict[AgentKey, asyncio.Task[CompiledAgent]] = {}
        self.compiles = 0

    def lookup(self, key: AgentKey) -> CompiledAgent | None:
        """The compiled agent for this version if it is cached, else None."""
        agent = self._agents.get(key)
        if agent is not None:
            self._agents.move_to_end(key)
        return agent

    async def for_row(self, row: Mapping[str, Any]) -> CompiledAgent:
        """The compiled agent of an ``agents`` row (a lease's ``agent_row``)."""
        agent = self.lookup((row["owner"], row["agent_id"], row["version"]))
        return agent if agent is not None else await self.get(template_from_row(dict(row)))

    async def get(self, template: AgentTemplate) -> CompiledAgent:
        """The compiled agent for this template version, built on first use."""
        key = agent_key(template)
        agent = self.lookup(key)
        if agent is not None:
            return agent
        build = self._building.get(key)
        if build is None:
            build = asyncio.create_task(self._built(key, template))
            self._building[key] = build
        return await asyncio.shield(build)

    async def _built(self, key: AgentKey, template: AgentTemplate) -> CompiledAgent:
        try:
            agent = await self._build(template)
        finally:
            del self._building[key]
        self.compiles += 1
        self._agents[key] = agent
        while len(self._agents) > self._max_entries:
            self._agents.popitem(last=False)
        return agent
