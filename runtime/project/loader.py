"""Loading the project at start-up: the file, its environment, its graphs and its tools."""

from __future__ import annotations

from contextlib import AsyncExitStack

from langchain_core.runnables import RunnableConfig

from runtime.agents import MAX_TOOLS, ModelSpec, TemplateSpec
from runtime.errors import ConfigError
from runtime.project.config import apply_environment, read_project
from runtime.project.graphs import GraphRegistry
from runtime.settings import Settings
from runtime.tools import SECTION_KEYS, ToolRegistry, load_config_tools

__all__ = ["load_project"]


async def load_project(
    settings: Settings, tools: ToolRegistry, stack: AsyncExitStack
) -> GraphRegistry:
    """Read ``settings.config`` (or ``./langgraph.json``), apply its ``dependencies`` and
    ``env``, import its graphs and register its tools into ``tools``.

    Raises:
        ConfigError: the first entry that cannot be served, named, with its cause.
    """
    project = read_project(settings.config)
    apply_environment(project)
    unknown = sorted(set(project.sessiongraph) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(
            f"sessiongraph.{unknown[0]}", f"unknown key; expected one of {sorted(SECTION_KEYS)}"
        )
    graphs = GraphRegistry.load(project.graphs, project.base_dir)
    await _check_factories(graphs, settings)
    await load_config_tools(project.sessiongraph, project.base_dir, tools, stack)
    declared = tools.declared()
    if len(declared) > MAX_TOOLS:
        raise ConfigError(
            "sessiongraph.tools",
            f"{len(declared)} tools are declared; a graph's system agent holds at most {MAX_TOOLS}",
        )
    return graphs


async def _check_factories(graphs: GraphRegistry, settings: Settings) -> None:
    """Call each graph factory once with its system agent's configuration, so a factory that
    raises, or returns what is not a graph, stops start-up."""
    model = ModelSpec.parse(settings.resolved_default_model())
    for entry in graphs.user_graphs():
        if not entry.is_factory:
            continue
        spec = TemplateSpec(name=entry.name, graph=entry.name, model=model)
        config: RunnableConfig = {
            "configurable": {**spec.configurable_values(), "agent_id": entry.name}
        }
        try:
            graph = await entry.instance(config)
        except Exception as exc:
            raise ConfigError(
                f"graphs.{entry.name}",
                f"the factory {entry.reference} raised {type(exc).__name__}: {exc}",
            ) from exc
        entry.check(graph)
