"""Turns: the runner, its request/result/event types, the content rule, the per-turn guard,
and the names (graph kinds, ``configurable`` keys, node names) the runner and its graphs
share."""

from __future__ import annotations

from runtime.turns.constants import AGENT_NODE, CONFIG_KEY_GUARD
from runtime.turns.content import (
    BLOCK_TYPES,
    MAX_CONTENT_BLOCKS,
    MAX_CONTENT_BYTES,
    MAX_MESSAGE_CHARS,
    Content,
    check_content,
    content_text,
)
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
from runtime.turns.runner import GuardOptions, TurnRunner

__all__ = [
    "AGENT_NODE",
    "BLOCK_TYPES",
    "BudgetLimits",
    "CONFIG_KEY_GUARD",
    "Content",
    "Decision",
    "GRAPH_KINDS",
    "GuardOptions",
    "MAX_CONTENT_BLOCKS",
    "MAX_CONTENT_BYTES",
    "MAX_MESSAGE_CHARS",
    "ToolRecords",
    "TurnEvent",
    "TurnGuard",
    "TurnRequest",
    "TurnResult",
    "TurnRunner",
    "check_content",
    "content_text",
    "graph_builder",
    "guard_of",
    "guarded_tool_call",
    "message_to_dict",
    "now_stamp",
    "template_tools",
]
