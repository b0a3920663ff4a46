"""Load the tools a project declares in ``langgraph.json`` into the runtime's registry.

:func:`load_config_tools` is the one entry point: the project loader calls it while the
runtime opens, with the ``sessiongraph`` section (schema: :mod:`runtime.tools.config`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from runtime.errors import ConfigError
from runtime.tools.config import (
    MAX_TOOL_NAME,
    SERVER_ADAPTER,
    TOOL_NAME,
    PythonToolConfig,
    validate_entry,
)
from runtime.tools.imports import python_tool
from runtime.tools.registry import ToolRegistry, ToolSpec

__all__ = ["load_config_tools"]


def _named_table(section: Mapping[str, Any], key: str) -> dict[str, Any]:
    raw = section.get(key) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"sessiongraph.{key}", "must be an object keyed by name")
    return dict(raw)


async def load_config_tools(
    section: Mapping[str, Any], base_dir: Path, registry: ToolRegistry, stack: AsyncExitStack
) -> None:
    """Register the tools of ``langgraph.json``'s ``sessiongraph`` section into ``registry``.

    Python tools (``tools``) are imported; each MCP server (``mcp_servers``) is connected
    once to list its tools, registered as ``<server>_<tool>``. Calls open their own MCP
    session, so a server that dies is reconnected on the next call and ``stack`` owns
    nothing today (it is there for a long-lived client, should one be needed).

    Nothing is registered unless every entry loads. Only ``tools`` and ``mcp_servers``
    (:data:`SECTION_KEYS`) are read; other keys of the section are the caller's.

    Args:
        section: the ``sessiongraph`` object of ``langgraph.json``.
        base_dir: the folder of ``langgraph.json`` (``./file.py`` imports, stdio ``cwd``).
        registry: the runtime's registry, holding the built-in tools already.
        stack: the runtime's exit stack.

    Raises:
        ConfigError: naming the entry (``sessiongraph.tools.<name>`` or
            ``sessiongraph.mcp_servers.<server>``) and the cause: a bad field, a missing
            module or attribute, something that is not a tool, a duplicate name, an unset
            ``${VAR}``, an MCP server that cannot be started or reached.
    """
    # Imported here: it pulls in mcp (starlette, httpx …), which a runtime without MCP
    # servers never needs.
    from runtime.tools.mcp import server_tools

    del stack  # MCP sessions are per call (see above)
    found: list[tuple[str, ToolSpec]] = []
    python = TypeAdapter(PythonToolConfig)
    for name, raw in _named_table(section, "tools").items():
        entry = f"sessiongraph.tools.{name}"
        config = validate_entry(entry, python, raw)
        found.append((entry, python_tool(entry, name, config, base_dir)))
    for server, raw in _named_table(section, "mcp_servers").items():
        entry = f"sessiongraph.mcp_servers.{server}"
        config = validate_entry(entry, SERVER_ADAPTER, raw)
        found += [(entry, spec) for spec in await server_tools(entry, server, config, base_dir)]
    _check_names(found, registry)
    for _, spec in found:
        registry.register(spec)


def _check_names(found: list[tuple[str, ToolSpec]], registry: ToolRegistry) -> None:
    """Every new tool name is valid and unique, among the new ones and the registry's."""
    taken = {spec.name: spec.source for spec in registry.specs()}
    for entry, spec in found:
        if not re.fullmatch(TOOL_NAME, spec.name):
            raise ConfigError(
                entry,
                f"tool name {spec.name!r} must be 1 to {MAX_TOOL_NAME} letters, digits, _ or -",
            )
        if spec.name in taken:
            raise ConfigError(
                entry, f"tool name {spec.name!r} is already taken ({taken[spec.name]})"
            )
        taken[spec.name] = spec.source
