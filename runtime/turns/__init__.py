"""Turns: the runner, its request/result/event types, and the per-turn guard."""

from __future__ import annotations

from runtime.turns.guards import (
    BudgetLimits,
    Decision,
    ToolRecords,
    TurnGuard,
    effective_budgets,
    guarded_tool_call,
    template_tools,
)
from runtime.turns.runner import (
    MAX_MESSAGE_CHARS,
    GuardOptions,
    TurnEvent,
    TurnRequest,
    TurnResult,
    TurnRunner,
    message_to_dict,
)

__all__ = [
    "BudgetLimits",
    "Decision",
    "GuardOptions",
    "MAX_MESSAGE_CHARS",
    "ToolRecords",
    "TurnEvent",
    "TurnGuard",
    "TurnRequest",
    "TurnResult",
    "TurnRunner",
    "effective_budgets",
    "guarded_tool_call",
    "message_to_dict",
    "template_tools",
]
