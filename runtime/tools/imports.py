"""Python tools named in ``langgraph.json``: import ``"module:attr"`` or ``"./file.py:attr"``.

The attribute is a LangChain ``BaseTool`` (used as it is, under the configured name) or a
plain function, sync or async, wrapped with ``StructuredTool.from_function``: its docstring
(or the configured ``description``) tells the model what it does, and a parameter typed
``RunnableConfig`` receives the turn's config (``config["configurable"]`` holds
``session_id``, ``owner`` and ``session_metadata``), as LangChain injects it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from runtime.errors import ConfigError
from runtime.imports import import_object
from runtime.tools.config import PythonToolConfig
from runtime.tools.registry import ToolSpec

__all__ = ["python_tool"]


def python_tool(entry: str, name: str, config: PythonToolConfig, base_dir: Path) -> ToolSpec:
    """The registry entry for ``sessiongraph.tools.<name>``.

    Raises:
        ConfigError: the module or attribute is missing, fails to import, or is neither a
            LangChain tool nor a function.
    """
    target = import_object(entry, config.import_, base_dir)
    if isinstance(target, BaseTool):
        tool = target if target.name == name else target.model_copy(update={"name": name})
    elif callable(target) and not inspect.isclass(target):
        tool = _wrap_function(entry, name, target, config.description)
    else:
        raise ConfigError(
            entry,
            f"{config.import_!r} is a {type(target).__name__}, "
            "neither a LangChain tool nor a function",
        )
    return ToolSpec(
        tool,
        writes=config.writes,
        roles=frozenset(config.roles),
        requires_approval=config.requires_approval,
        idempotent=config.idempotent,
        source=f"python:{config.import_}",
    )


def _wrap_function(entry: str, name: str, func: Any, description: str | None) -> BaseTool:
    """A plain function as a LangChain tool named ``name``."""
    is_async = inspect.iscoroutinefunction(func)
    try:
        return StructuredTool.from_function(
            func=None if is_async else func,
            coroutine=func if is_async else None,
            name=name,
            description=description,
        )
    except Exception as exc:  # from_function raises ValueError for a missing docstring …
        raise ConfigError(entry, f"cannot be made a tool: {exc}") from None
