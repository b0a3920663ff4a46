"""Turns: the runner, its request/result/event types, the per-turn guard, and the names
(graph kinds, ``configurable`` keys, node names) the runner and its graphs share."""

from __future__ import annotations

from runtime.turns.constants import AGENT_NODE, CONFIG_KEY_GUARD
from runtime.turns.events import TurnEvent, TurnRequest, TurnResult, message_to_dict, now_stamp
from runtime.turns.graph_kinds import GRAPH_KINDS, graph_builder
from runtime.turns.guards import (
    BudgetLimits,
    Decision,
    ToolRecords,
    TurnGuard,
    guard_of,
    guarded_tool_call,
    template_tools,
)
from runtime.turns.runner import MAX_MESSAGE_CHARS, GuardOptions, TurnRunner

__all__ = [
    "AGENT_NODE",
    "BudgetLimits",
    "CONFIG_KEY_GUARD",
    "Decision",
    "GRAPH_KINDS",
    "GuardOptions",
    "MAX_MESSAGE_CHARS",
    "ToolRecords",
    "TurnEvent",
    "TurnGuard",
    "TurnRequest",
    "TurnResult",
    "TurnRunner",
    "graph_builder",
    "guard_of",
    "guarded_tool_call",
    "message_to_dict",
    "now_stamp",
    "template_tools",
]
