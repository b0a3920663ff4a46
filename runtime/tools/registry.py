"""The tool registry: Python tools (LangChain ``@tool``) that templates name.

A template lists tool *names*; :class:`ToolRegistry` resolves them when the template is
compiled. Each entry records whether the tool writes and which roles may use it, so the
guardrails can filter the offered tools per caller without recompiling the graph.

Built-ins:

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command

from runtime.errors import InvalidInput

__all__ = ["BUILTIN_TOOLS", "ToolRegistry", "ToolSpec", "default_registry"]


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool and the facts the runtime needs about it."""

    tool: BaseTool
    # Changes something. Counts against max_write_calls; and, if `idempotent`, its result is
    # recorded per session so the same call (same canonical arguments, or the same
    # `idempotency_key` argument) returns the record instead of acting twice.
    writes: bool = False
    roles: frozenset[str] = field(default_factory=frozenset)  # empty: everyone
    requires_approval: bool = False  # pause the turn for a human decision before running
    idempotent: bool = True

    @property
    def name(self) -> str:
        return self.tool.name


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


BUILTIN_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(calculator),
    ToolSpec(current_time),
    # Its effect lives in the session's own state, which is committed or rolled back with
    # the turn; a record outside that transaction would survive a rollback and swallow the
    # retried note, so it is not recorded.
    ToolSpec(save_note, writes=True, idempotent=False),
    ToolSpec(read_notes),
)


class ToolRegistry:
    """Tools by name. Register your own before the runtime compiles templates."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ToolSpec | BaseTool, *, replace: bool = False) -> ToolSpec:
        """Add a tool; a bare ``BaseTool`` is registered as read-only and open to all."""
        if isinstance(spec, BaseTool):
            spec = ToolSpec(spec)
        if spec.name in self._specs and not replace:
            raise ValueError(f"tool {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[ToolSpec]:
        """Every registered tool, by name."""
        return [self._specs[name] for name in self.names()]

    def get(self, name: str) -> ToolSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise InvalidInput(
                f"unknown tool {name!r}", tool=name, available=self.names()
            ) from None

    def resolve(self, names: Iterable[str]) -> list[ToolSpec]:
        """The specs for ``names``, in order; an unknown name is ``InvalidInput``."""
        return [self.get(n) for n in names]


def default_registry() -> ToolRegistry:
    """A registry holding the built-in tools."""
    return ToolRegistry(BUILTIN_TOOLS)
