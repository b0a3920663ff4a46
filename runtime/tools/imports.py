"""Python tools named in ``langgraph.json``: import ``"module:attr"`` or ``"./file.py:attr"``.

The attribute is a LangChain ``BaseTool`` (used as it is, under the configured name) or a
plain function, sync or async, wrapped with ``StructuredTool.from_function``: its docstring
(or the configured ``description``) tells the model what it does, and a parameter typed
``RunnableConfig`` receives the turn's config (``config["configurable"]`` holds
``session_id``, ``owner`` and ``session_metadata``), as LangChain injects it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from runtime.errors import ConfigError
from runtime.tools.config import PythonToolConfig
from runtime.tools.registry import ToolSpec

__all__ = ["import_object", "python_tool"]


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


def import_object(entry: str, reference: str, base_dir: Path) -> Any:
    """The object ``"package.module:attr"`` or ``"./file.py:attr"`` names (attr may be dotted).

    A file path is relative to ``base_dir``; ``package.module`` is found on ``sys.path``
    (the project loader has added langgraph.json's ``dependencies`` to it).
    """
    module_ref, _, attr_path = reference.rpartition(":")
    if module_ref.endswith(".py"):
        module = _load_file(entry, base_dir / module_ref)
    else:
        module = _import_module(entry, module_ref)
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                entry, f"module {module_ref!r} has no attribute {attr_path!r}"
            ) from None
    return target


def _import_module(entry: str, module_ref: str) -> ModuleType:
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as exc:
        # Missing itself (or a parent package) vs. missing something it imports.
        if exc.name is not None and (module_ref + ".").startswith(exc.name + "."):
            raise ConfigError(entry, f"module {module_ref!r} not found") from None
        raise ConfigError(entry, f"importing {module_ref!r} failed: {_describe(exc)}") from None
    except Exception as exc:
        raise ConfigError(entry, f"importing {module_ref!r} failed: {_describe(exc)}") from None


def _load_file(entry: str, path: Path) -> ModuleType:
    """Import a source file as a module of its own (kept in ``sys.modules``)."""
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(entry, f"file {str(path)!r} not found")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"_sessiongraph_tools_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(entry, f"file {str(path)!r} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(entry, f"importing {str(path)!r} failed: {_describe(exc)}") from None
    return module


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
