"""The project file: LangGraph's ``langgraph.json``, read as ``langgraph dev`` reads it.

:func:`read_project` finds and parses the file; :func:`apply_environment` honours its
``dependencies`` (local folders put on ``sys.path``) and ``env`` (a dotenv file or a mapping,
never overriding what the environment already sets). Our own settings live under the top-level
``sessiongraph`` key, which ``langgraph dev`` drops as unknown.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime.errors import ConfigError

__all__ = ["PROJECT_FILE", "ProjectConfig", "apply_environment", "read_project"]

# The file ``langgraph dev`` reads, looked for in the working directory by default.
PROJECT_FILE = "langgraph.json"


class ProjectConfig(BaseModel):
    """What sessiongraph reads from ``langgraph.json`` (other LangGraph keys are ignored)."""

    model_config = ConfigDict(extra="ignore")

    graphs: dict[str, str] = Field(default_factory=dict)
    dependencies: list[str] = Field(default_factory=list)
    env: str | dict[str, str] | None = None
    sessiongraph: dict[str, Any] = Field(default_factory=dict)
    # The folder the file is in: relative paths in it are relative to this.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    path: Path | None = Field(default=None, exclude=True)


def read_project(path: Path | None) -> ProjectConfig:
    """The project file at ``path``, or ``./langgraph.json`` when there is one, or nothing.

    Raises:
        ConfigError: a named file that is missing, or a file that is not valid JSON or has
            the wrong shape.
    """
    if path is None:
        default = Path.cwd() / PROJECT_FILE
        if not default.is_file():
            return ProjectConfig()
        path = default
    path = path.expanduser().resolve()
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.is_file():
        raise ConfigError(str(path), "no such file")
    try:
        raw = json.loads(path.read_text(), object_pairs_hook=_unique_keys)
    except ConfigError as exc:
        raise ConfigError(str(path), exc.message) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot be read as JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "must hold a JSON object")
    try:
        return ProjectConfig.model_validate({**raw, "base_dir": path.parent, "path": path})
    except ValidationError as exc:
        error = exc.errors()[0]
        entry = ".".join(str(p) for p in error["loc"]) or str(path)
        raise ConfigError(entry, error["msg"]) from exc


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats (JSON would silently keep the last)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(key, f"the name {key!r} appears twice in one object")
        seen[key] = value
    return seen


def apply_environment(project: ProjectConfig) -> None:
    """Put ``dependencies`` that are local folders on ``sys.path``, and load ``env``.

    Variables already set in the environment win over the file's, so a deployment can
    override what the project ships.
    """
    for dependency in project.dependencies:
        folder = (project.base_dir / dependency).resolve()
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    env = project.env
    if env is None:
        return
    if isinstance(env, str):
        file = (project.base_dir / env).resolve()
        if not file.is_file():
            raise ConfigError("env", f"no such file {env!r}")
        values = {k: v for k, v in dotenv_values(file).items() if v is not None}
    else:
        values = env
    for name, value in values.items():
        os.environ.setdefault(name, str(value))
