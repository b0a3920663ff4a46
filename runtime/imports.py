"""Importing what ``langgraph.json`` names: ``"package.module:attr"`` or ``"./file.py:attr"``.

One loader for graphs and tools alike. A file is imported as a module of its own whose name is
derived from its path (the same in every process, so state types defined there deserialize on
every replica and after a restart); ``package.module`` is found on ``sys.path`` (the project
loader has put langgraph.json's ``dependencies`` there). Every failure is a
:class:`~runtime.errors.ConfigError` naming the configuration entry.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from runtime.errors import ConfigError

__all__ = ["import_object"]


def import_object(entry: str, reference: str, base_dir: Path) -> Any:
    """The object ``"package.module:attr"`` or ``"./file.py:attr"`` names (attr may be dotted).

    A file path is relative to ``base_dir``; ``package.module`` is found on ``sys.path``
    (the project loader has added langgraph.json's ``dependencies`` to it).
    """
    module_ref, _, attr_path = reference.rpartition(":")
    if not module_ref or not attr_path:
        raise ConfigError(entry, f"{reference!r} is not 'module:attr' or './file.py:attr'")
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
    name = f"_sessiongraph_project_{path.stem}_{digest}"
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
