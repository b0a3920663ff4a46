"""Agents: template specs, their store, the compiled-graph cache, and per-agent stats."""

from __future__ import annotations

from runtime.agents.stats import AgentStats, agent_stats, prune_turn_log
from runtime.agents.store import (
    DEFAULT_AGENT_ID,
    SYSTEM_OWNER,
    AgentTemplate,
    Budgets,
    CompiledGraph,
    GraphCache,
    ModelSpec,
    TemplateSpec,
    TemplateStore,
    default_template_spec,
    template_from_row,
)

__all__ = [
    "AgentStats",
    "AgentTemplate",
    "Budgets",
    "CompiledGraph",
    "DEFAULT_AGENT_ID",
    "GraphCache",
    "ModelSpec",
    "SYSTEM_OWNER",
    "TemplateSpec",
    "TemplateStore",
    "agent_stats",
    "default_template_spec",
    "prune_turn_log",
    "template_from_row",
]
