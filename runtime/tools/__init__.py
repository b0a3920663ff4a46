"""Tools: the registry templates draw on, the built-in tools, and the tools a project declares
in ``langgraph.json`` (:func:`load_config_tools`)."""

from __future__ import annotations

from runtime.tools.builtins import (
    calculator,
    current_time,
    default_registry,
    read_notes,
    save_note,
)
from runtime.tools.config import SECTION_KEYS
from runtime.tools.loader import load_config_tools
from runtime.tools.registry import ToolRegistry, ToolSpec

__all__ = [
    "SECTION_KEYS",
    "ToolRegistry",
    "ToolSpec",
    "calculator",
    "current_time",
    "default_registry",
    "load_config_tools",
    "read_notes",
    "save_note",
]
