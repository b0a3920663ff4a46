"""Tools: the registry templates draw on, and the built-in tools."""

from __future__ import annotations

from runtime.tools.builtins import (
    calculator,
    current_time,
    default_registry,
    read_notes,
    save_note,
)
from runtime.tools.registry import ToolRegistry, ToolSpec

__all__ = [
    "ToolRegistry",
    "ToolSpec",
    "calculator",
    "current_time",
    "default_registry",
    "read_notes",
    "save_note",
]
