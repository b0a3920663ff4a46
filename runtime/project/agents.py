"""Agents over the project's graphs: each agent version compiled into a :class:`CompiledAgent`,
and each project graph's system agent kept in step with ``langgraph.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from runtime.agents import (
    SYSTEM_OWNER,
    AgentTemplate,
    CompiledAgent,
    ModelSpec,
    TemplateSpec,
    TemplateStore,
)
from runtime.errors import ConfigError, Conflict
from runtime.imports import import_object
from runtime.models import make_chat_model
from runtime.project.graphs import (
    BUILTIN_BUILDER,
    BUILTIN_GRAPH,
    GraphRegistry,
    check_breakpoints,
    compile_graph,
    input_keys,
)
from runtime.settings import Settings
from runtime.tools import ToolRegistry
from runtime.turns import template_tools

__all__ = ["AgentCompiler", "ensure_system_agents"]


class AgentCompiler:
    """Builds one agent version: its chat model, its tools, and its graph compiled with the
    runtime's checkpointer and store (the built-in ``react`` graph, or a project graph)."""

    def __init__(
        self,
        settings: Settings,
        tools: ToolRegistry,
        graphs: GraphRegistry,
        checkpointer: BaseCheckpointSaver[Any],
        store: BaseStore | None,
    ) -> None:
        self._settings = settings
        self._tools = tools
        self._graphs = graphs
        self._checkpointer = checkpointer
        self._store = store

    async def __call__(self, template: AgentTemplate) -> CompiledAgent:
        spec = template.spec
        model = make_chat_model(spec.model, self._settings)
        tools = template_tools(self._tools, spec)
        configurable = spec.configurable_values()
        if spec.graph == BUILTIN_GRAPH:
            build: Any = import_object("graphs.react", BUILTIN_BUILDER, Path.cwd())
            summarizer = spec.summary_model and make_chat_model(spec.summary_model, self._settings)
            graph = build(spec, model=model, tools=tools, summarizer=summarizer or None)
        else:
            config: RunnableConfig = {
                "configurable": {**configurable, "agent_id": template.agent_id}
            }
            graph = await self._graphs.instance(spec.graph, config)
        breakpoints = (spec.interrupt_before, spec.interrupt_after)
        check_breakpoints(graph, breakpoints)
        compiled = compile_graph(
            graph, self._checkpointer, self._store, template.agent_id, breakpoints
        )
        return CompiledAgent(
            template, compiled, model, tuple(tools), input_keys(compiled), configurable
        )


async def ensure_system_agents(
    templates: TemplateStore, graphs: GraphRegistry, tools: ToolRegistry, settings: Settings
) -> None:
    """Give every project graph a system agent of its own (agent id = graph name, its
    LangGraph assistant), offered every tool the project declares; kept in step with the
    file on each start (a new version only when something changed)."""
    model = ModelSpec.parse(settings.resolved_default_model())
    declared = tools.declared()
    for entry in graphs.user_graphs():
        spec = TemplateSpec(
            name=entry.name,
            description=f"The {entry.name!r} graph of langgraph.json ({entry.reference}).",
            graph=entry.name,
            model=model,
            tools=declared,
        )
        try:
            template = await templates.ensure(spec, owner=SYSTEM_OWNER, agent_id=entry.name)
        except Conflict:
            template = None
        if template is None or template.owner != SYSTEM_OWNER or template.spec.graph != entry.name:
            raise ConfigError(
                f"graphs.{entry.name}",
                f"an agent with the id {entry.name!r} already exists (not this graph's system "
                "agent); rename the graph",
            )
        changes = {"tools": declared, "description": spec.description}
        await templates.update(entry.name, changes, owner=SYSTEM_OWNER, system=True)
