"""Agents: template specs, their store, the compiled-graph cache, and per-agent stats."""

from __future__ import annotations

from runtime.agents.cache import AgentKey, CompiledAgent, CompiledGraph, GraphCache, agent_key
from runtime.agents.spec import (
    BUILTIN_GRAPH,
    CONFIGURABLE_FIELDS,
    DEFAULT_AGENT_ID,
    MAX_STEPS,
    MAX_TOOLS,
    SYSTEM_OWNER,
    AgentTemplate,
    Budgets,
    ModelSpec,
    TemplateSpec,
    default_template_spec,
    is_reserved_key,
    template_from_row,
)
from runtime.agents.stats import AgentStats, agent_stats, prune_turn_log
from runtime.agents.store import TemplateStore

__all__ = [
    "AgentKey",
    "AgentStats",
    "BUILTIN_GRAPH",
    "AgentTemplate",
    "Budgets",
    "CONFIGURABLE_FIELDS",
    "CompiledAgent",
    "CompiledGraph",
    "DEFAULT_AGENT_ID",
    "MAX_STEPS",
    "MAX_TOOLS",
    "GraphCache",
    "ModelSpec",
    "SYSTEM_OWNER",
    "TemplateSpec",
    "TemplateStore",
    "agent_key",
    "agent_stats",
    "default_template_spec",
    "is_reserved_key",
    "prune_turn_log",
    "template_from_row",
]
