"""The project a server serves: ``langgraph.json``'s graphs (plus the built-in one) and its
``sessiongraph`` section (tools, MCP servers), loaded once at start-up."""

from __future__ import annotations

from runtime.project.agents import AgentCompiler, ensure_system_agents
from runtime.project.config import PROJECT_FILE, ProjectConfig, apply_environment, read_project
from runtime.project.graphs import (
    BUILTIN_BUILDER,
    BUILTIN_GRAPH,
    GraphRegistry,
    UserGraph,
    compile_graph,
    input_keys,
)
from runtime.project.loader import load_project

__all__ = [
    "AgentCompiler",
    "BUILTIN_BUILDER",
    "BUILTIN_GRAPH",
    "PROJECT_FILE",
    "GraphRegistry",
    "ProjectConfig",
    "UserGraph",
    "apply_environment",
    "compile_graph",
    "ensure_system_agents",
    "input_keys",
    "load_project",
    "read_project",
]
