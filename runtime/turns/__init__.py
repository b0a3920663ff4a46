"""Turns: the runner, its request/result/event types, the content rule, the per-turn guard,
the kit that gives any graph the agent's model and guarded tools, and the names
(``configurable`` keys, node names) the runner and its graphs share."""

from __future__ import annotations

from runtime.turns.constants import AGENT_NODE, CONFIG_KEY_AGENT, CONFIG_KEY_GUARD
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
from runtime.turns.guards import (
    BudgetLimits,
    Decision,
    ToolRecords,
    TurnGuard,
    guard_of,
    guarded_tool_call,
    template_tools,
)
from runtime.turns.kit import agent_of, approve_calls, chat_model, tool_node
from runtime.turns.runner import GuardOptions, TurnRunner
from runtime.turns.stream import (
    check_input_keys,
    checked_input,
    split_pending,
    waits_for_value,
)

__all__ = [
    "AGENT_NODE",
    "BLOCK_TYPES",
    "BudgetLimits",
    "CONFIG_KEY_AGENT",
    "CONFIG_KEY_GUARD",
    "Content",
    "Decision",
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
    "agent_of",
    "approve_calls",
    "chat_model",
    "check_content",
    "check_input_keys",
    "checked_input",
    "content_text",
    "guard_of",
    "guarded_tool_call",
    "message_to_dict",
    "now_stamp",
    "split_pending",
    "template_tools",
    "tool_node",
    "waits_for_value",
]
