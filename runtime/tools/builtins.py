"""The built-in tools, and :func:`default_registry` holding them.

``calculator``
    Evaluates an arithmetic expression safely (an AST walk, never ``eval``).
``current_time``
    The current date and time in UTC or a named IANA time zone.
``save_note`` / ``read_notes``
    A per-session notepad. Notes live in the session's graph state (the ``notes`` channel),
    so they are checkpointed, isolated per session and deleted with it.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain_core.messages import ToolMessage
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command

from runtime.tools.registry import ToolRegistry, ToolSpec

__all__ = [
    "calculator",
    "current_time",
    "default_registry",
    "read_notes",
    "save_note",
]


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
}


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large")
        result: float | int = _BINOPS[type(node.op)](left, right)
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        unary: float | int = _UNARY[type(node.op)](_evaluate(node.operand))
        return unary
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCS
        and not node.keywords
    ):
        value: float | int = _FUNCS[node.func.id](*(_evaluate(a) for a in node.args))
        return value
    raise ValueError(f"unsupported expression element: {type(node).__name__}")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. "(2 + 3) * 4" or "sqrt(16) / 2"."""
    if len(expression) > 200:
        return "error: expression too long"
    try:
        value = _evaluate(ast.parse(expression.replace("^", "**"), mode="eval"))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        return f"error: {exc}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@tool
def current_time(timezone: str = "UTC") -> str:
    """Return the current date and time (ISO 8601) in an IANA time zone such as "Europe/Paris"."""
    try:
        zone = UTC if timezone.upper() == "UTC" else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"error: unknown time zone {timezone!r}"
    return datetime.now(zone).isoformat(timespec="seconds")


@tool
def save_note(text: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> Command[Any]:
    """Save a short note in this conversation's notepad, to read back later."""
    note = text.strip()[:1000]
    return Command(
        update={
            "notes": [note],
            "messages": [
                ToolMessage(f"Saved note: {note}", tool_call_id=tool_call_id, name="save_note")
            ],
        }
    )


@tool
def read_notes(state: Annotated[dict[str, Any], InjectedState]) -> str:
    """Read every note saved in this conversation's notepad."""
    notes = state.get("notes") or []
    if not notes:
        return "No notes yet."
    return "; ".join(notes)


_BUILTINS: tuple[ToolSpec, ...] = (
    ToolSpec(calculator, source="builtin"),
    ToolSpec(current_time, source="builtin"),
    # Its effect lives in the session's own state, which is committed or rolled back with
    # the turn; a record outside that transaction would survive a rollback and swallow the
    # retried note, so it is not recorded.
    ToolSpec(save_note, writes=True, idempotent=False, source="builtin"),
    ToolSpec(read_notes, source="builtin"),
)


def default_registry() -> ToolRegistry:
    """A registry holding the built-in tools."""
    return ToolRegistry(_BUILTINS)
