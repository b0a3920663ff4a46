"""``agents apply FILE.yaml``: create or update agent templates from YAML, idempotently."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from api.cli._common import Failure, Subparsers, open_runtime
from runtime import DEFAULT_OWNER, NotFound, Runtime, SessiongraphError
from runtime.agents import AgentTemplate, ModelSpec, TemplateSpec
from runtime.ids import validate_id

__all__ = ["add_parsers"]


def _describe(exc: ValidationError) -> str:
    """A pydantic error as one readable line: ``field.path: problem; ...``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'spec'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where it was found."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem}{where}"
    return " ".join(str(exc).split())


def _agent_items(document: Any, path: Path) -> list[Any]:
    """The agent mappings of a file: one mapping, or a list under a top-level ``agents:``."""
    if isinstance(document, dict) and "agents" in document:
        if set(document) != {"agents"} or not isinstance(document["agents"], list):
            raise Failure(f"{path}: 'agents' must be the only top-level key and hold a list")
        items: list[Any] = document["agents"]
    elif isinstance(document, dict):
        items = [document]
    elif isinstance(document, list):
        items = document
    else:
        raise Failure(f"{path}: expected an agent mapping or a list under 'agents:'")
    if not items:
        raise Failure(f"{path}: no agents found")
    return items


def _agent_spec(item: Any, index: int) -> tuple[str, TemplateSpec]:
    """Validate one agent mapping: its ``id`` and the :class:`TemplateSpec` of the rest."""
    if not isinstance(item, dict):
        raise Failure(f"agent #{index + 1}: expected a mapping")
    fields = dict(item)
    agent_id = fields.pop("id", None)
    if not isinstance(agent_id, str):
        raise Failure(f"agent #{index + 1}: 'id' is required and must be a string")
    try:
        validate_id(agent_id, kind="agent_id")
        if isinstance(fields.get("model"), str):
            fields["model"] = ModelSpec.parse(fields["model"])
        return agent_id, TemplateSpec.model_validate(fields)
    except SessiongraphError as exc:
        raise Failure(f"agent {agent_id!r}: {exc.message}") from exc
    except ValidationError as exc:
        raise Failure(f"agent {agent_id!r}: {_describe(exc)}") from exc


def _load_agents(path: Path) -> list[tuple[str, TemplateSpec]]:
    """Every agent of a YAML file, validated; any problem fails the whole file."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise Failure(f"invalid YAML in {path}: {_yaml_problem(exc)}") from exc
    agents = [_agent_spec(item, i) for i, item in enumerate(_agent_items(document, path))]
    ids = [agent_id for agent_id, _ in agents]
    for agent_id in ids:
        if ids.count(agent_id) > 1:
            raise Failure(f"agent {agent_id!r} appears more than once in {path}")
    return agents


async def _apply_agent(
    rt: Runtime, agent_id: str, spec: TemplateSpec, owner: str
) -> tuple[str, AgentTemplate]:
    """Create, update or leave one template; return what was done and the result."""
    try:
        current = await rt.templates.get(agent_id, owner=owner)
    except NotFound:
        return "created", await rt.templates.create(spec, owner=owner, agent_id=agent_id)
    new = spec.model_dump(mode="json")
    if current.spec.model_dump(mode="json") == new:
        return "unchanged", current
    return "updated", await rt.templates.update(agent_id, new, owner=owner, system=True)


async def _agents_apply(path: Path, owner: str) -> int:
    agents = _load_agents(path)
    async with open_runtime(project=True) as rt:
        # Tools, graph kind and model are checked for every agent before any is written.
        for agent_id, spec in agents:
            try:
                await rt.validate_template(spec)
            except SessiongraphError as exc:
                raise Failure(f"agent {agent_id!r}: {exc.message}") from exc
        for agent_id, spec in agents:
            action, template = await _apply_agent(rt, agent_id, spec, owner)
            print(f"{action} {template.agent_id} (version {template.version})", flush=True)
    return 0


def add_parsers(sub: Subparsers) -> None:
    """The ``agents`` command."""
    agents = sub.add_parser("agents", help="manage agent templates")
    actions = agents.add_subparsers(dest="action", required=True)

    apply = actions.add_parser("apply", help="create or update agents from a YAML file")
    apply.add_argument("file", metavar="FILE.yaml", type=Path)
    apply.add_argument(
        "--owner", default=DEFAULT_OWNER, help=f"owner of the agents (default: {DEFAULT_OWNER})"
    )
    apply.set_defaults(run=lambda a: asyncio.run(_agents_apply(a.file, a.owner)))
