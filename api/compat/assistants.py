"""LangGraph Server API: assistants, which are agent templates.

An assistant id is an agent id, scoped by owner as agent ids are: each owner names its own
assistants and the system ones, and another owner's id is free for it (``NotFound``, never a
conflict); ids made here are UUIDs. A graph id stands for that graph's system agent (``react``:
the default agent). Every assistant runs one of the server's graphs (its ``graph_id``: the
built-in ``react`` or a ``langgraph.json`` entry). ``config.configurable`` (or ``context``)
carries template fields (system prompt, model, tools, ...) on create and patch, and the
graph's own keys besides; only the current version of a template is kept, so the version
endpoints list that one.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.compat.common import (
    assistant_dict,
    jsonable,
    resolve_assistant_id,
)
from api.deps import PrincipalDep, RuntimeDep
from runtime import Runtime
from runtime.agents import (
    CONFIGURABLE_FIELDS,
    SYSTEM_OWNER,
    AgentTemplate,
    ModelSpec,
    TemplateSpec,
)
from runtime.db import MAX_OFFSET_LIMIT
from runtime.errors import Conflict, InvalidInput, NotFound
from runtime.ids import validate_id
from runtime.keys import Principal
from runtime.project import BUILTIN_GRAPH

router = APIRouter(tags=["langgraph: assistants"])

AssistantId = Annotated[str, Path(min_length=1, max_length=128)]
SortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]
# The LangGraph assistant sort keys and the TemplateStore.search keys they stand for.
ASSISTANT_SORT_KEYS: dict[str, str] = {
    "assistant_id": "agent_id",
    "graph_id": "agent_id",
    "name": "name",
    "created_at": "created_at",
    "updated_at": "updated_at",
}


class _Lenient(BaseModel):
    # Clients send fields this server has no use for (select, ttl, ...): ignore them.
    model_config = ConfigDict(extra="ignore")


class AssistantSearch(_Lenient):
    """``POST /assistants/search``."""

    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=10, ge=1, le=MAX_OFFSET_LIMIT)
    offset: int = Field(default=0, ge=0)
    sort_by: SortBy | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class AssistantCount(_Lenient):
    """``POST /assistants/count``."""

    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = Field(default=None, max_length=200)


class AssistantCreate(_Lenient):
    """``POST /assistants``."""

    graph_id: str = BUILTIN_GRAPH
    assistant_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class AssistantPatch(_Lenient):
    """``PATCH /assistants/{assistant_id}``."""

    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class VersionsSearch(_Lenient):
    """``POST /assistants/{assistant_id}/versions``."""

    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=MAX_OFFSET_LIMIT)
    offset: int = Field(default=0, ge=0)


class LatestVersion(_Lenient):
    """``POST /assistants/{assistant_id}/latest``."""

    version: int


def _check_graph(runtime: Runtime, graph_id: str | None) -> None:
    """Raises NotFound for a graph this server does not serve."""
    if graph_id is not None:
        runtime.project.check_name(graph_id)


def _select(item: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k in select} if select else item


def _template_fields(
    config: dict[str, Any] | None, context: dict[str, Any] | None
) -> dict[str, Any]:
    """Template fields from ``config.configurable`` and ``context`` (context wins); the
    other keys are the graph's own ``configurable`` and ``context``."""
    configurable = (config or {}).get("configurable")
    if configurable is None:
        configurable = {}
    if not isinstance(configurable, dict):
        raise InvalidInput("config.configurable must be an object", field="config")
    context = context or {}
    given = {**configurable, **context}
    fields = {k: v for k, v in given.items() if k in CONFIGURABLE_FIELDS}
    if isinstance(fields.get("model"), str):
        fields["model"] = ModelSpec.parse(fields["model"]).model_dump()
    own = {k: v for k, v in configurable.items() if k not in CONFIGURABLE_FIELDS}
    if own:
        fields["configurable"] = own
    if context:
        fields["context"] = {k: v for k, v in context.items() if k not in CONFIGURABLE_FIELDS}
    return fields


def _spec(data: dict[str, Any]) -> TemplateSpec:
    try:
        return TemplateSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(
            f"invalid assistant: {where + ': ' if where else ''}{first['msg']}",
            errors=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from exc


def _sort_key(sort_by: str) -> str:
    """The runtime's sort key for a LangGraph one."""
    if sort_by not in ASSISTANT_SORT_KEYS:
        raise InvalidInput(
            f"cannot sort by {sort_by!r}", field="sort_by", allowed=sorted(ASSISTANT_SORT_KEYS)
        )
    return ASSISTANT_SORT_KEYS[sort_by]


async def _get(runtime: Runtime, principal: Principal, assistant_id: str) -> AgentTemplate:
    agent_id = resolve_assistant_id(runtime, assistant_id)
    return await runtime.templates.get(agent_id, owner=principal.owner)


@router.post("/assistants/search", summary="Search assistants (agent templates)")
async def search_assistants(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    response: Response,
    body: Annotated[AssistantSearch | None, Body()] = None,
) -> list[dict[str, Any]]:
    body = body or AssistantSearch()
    items, more = await runtime.templates.search(
        owner=principal.owner,
        name=body.name,
        metadata=body.metadata,
        graph=body.graph_id,
        limit=body.limit,
        offset=body.offset,
        sort_by=_sort_key(body.sort_by or "created_at"),
        sort_order=body.sort_order or "desc",
    )
    if more:
        response.headers["X-Pagination-Next"] = str(body.offset + len(items))
        response.headers["X-Pagination-Total"] = str(body.offset + len(items) + 1)
    else:
        response.headers["X-Pagination-Total"] = str(body.offset + len(items))
    return [_select(assistant_dict(t), body.select) for t in items]


@router.post("/assistants/count", summary="Count assistants")
async def count_assistants(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    body: Annotated[AssistantCount | None, Body()] = None,
) -> int:
    body = body or AssistantCount()
    return await runtime.templates.count(
        owner=principal.owner, name=body.name, metadata=body.metadata, graph=body.graph_id
    )


@router.post("/assistants", summary="Create an assistant (an agent template)")
async def create_assistant(
    runtime: RuntimeDep, principal: PrincipalDep, body: AssistantCreate
) -> dict[str, Any]:
    _check_graph(runtime, body.graph_id)
    agent_id = validate_id(body.assistant_id or str(uuid.uuid4()), kind="assistant_id")
    # A new assistant of a graph is its system agent, changed by what the request gives.
    graph_agent = resolve_assistant_id(runtime, body.graph_id)
    system = await runtime.templates.get(graph_agent, owner=SYSTEM_OWNER)
    if system.owner != SYSTEM_OWNER:  # never an owner's agent as the base
        raise NotFound(f"graph {body.graph_id!r} has no system assistant")
    base = system.spec.model_dump(mode="json")
    base.update(_template_fields(body.config, body.context), graph=body.graph_id)
    base.update(name=body.name or "Untitled", metadata=body.metadata or {})
    base["description"] = body.description or ""
    spec = _spec(base)
    try:
        template = await runtime.templates.create(spec, owner=principal.owner, agent_id=agent_id)
    except Conflict:
        if body.if_exists != "do_nothing":
            raise
        try:
            template = await runtime.templates.get(agent_id, owner=principal.owner)
        except NotFound:
            raise Conflict(f"assistant {agent_id!r} already exists", agent_id=agent_id) from None
    return assistant_dict(template)


@router.get("/assistants/{assistant_id}", summary="Get an assistant")
async def get_assistant(
    runtime: RuntimeDep, principal: PrincipalDep, assistant_id: AssistantId
) -> dict[str, Any]:
    return assistant_dict(await _get(runtime, principal, assistant_id))


@router.patch("/assistants/{assistant_id}", summary="Change an assistant (a new version)")
async def patch_assistant(
    runtime: RuntimeDep, principal: PrincipalDep, assistant_id: AssistantId, body: AssistantPatch
) -> dict[str, Any]:
    _check_graph(runtime, body.graph_id)
    template = await _get(runtime, principal, assistant_id)
    changes = _template_fields(body.config, body.context)
    if body.graph_id is not None:
        changes["graph"] = body.graph_id
    if body.name is not None:
        changes["name"] = body.name
    if body.description is not None:
        changes["description"] = body.description
    if body.metadata is not None:
        changes["metadata"] = {**template.spec.metadata, **body.metadata}
    updated = await runtime.templates.update(
        template.agent_id, changes, owner=principal.owner, system=principal.is_admin
    )
    return assistant_dict(updated)


@router.delete("/assistants/{assistant_id}", status_code=204, summary="Delete an assistant")
async def delete_assistant(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    assistant_id: AssistantId,
    delete_threads: Annotated[bool, Query()] = False,
) -> Response:
    # Threads cannot outlive their assistant here (a session belongs to its agent), so they
    # go with it whatever delete_threads says; runs in flight on them are cancelled first.
    template = await _get(runtime, principal, assistant_id)  # NotFound: another owner's
    delete = partial(
        runtime.templates.delete,
        template.agent_id,
        owner=principal.owner,
        force=True,
        system=principal.is_admin,
    )
    await runtime.runs.delete_agent(template.owner, template.agent_id, delete)
    return Response(status_code=204)


def _xray(value: str | None) -> bool | int:
    if value is None or value in ("false", "False"):
        return False
    if value in ("true", "True"):
        return True
    try:
        depth = int(value)
    except ValueError:
        depth = 0
    if depth <= 0:
        raise InvalidInput("xray must be true, false or a positive integer", field="xray")
    return depth


@router.get("/assistants/{assistant_id}/graph", summary="The assistant's graph, for drawing")
async def get_assistant_graph(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    assistant_id: AssistantId,
    xray: Annotated[str | None, Query(max_length=10)] = None,
) -> dict[str, Any]:
    depth = _xray(xray)
    graph = (await runtime.graphs.get(await _get(runtime, principal, assistant_id))).graph
    drawing: dict[str, Any] = graph.get_graph(xray=depth).to_json()
    for node in drawing.get("nodes", []):
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)
    result: dict[str, Any] = jsonable(drawing)
    return result


def _config_schema() -> dict[str, Any]:
    """The JSON schema of the template fields an assistant's config may carry."""
    full = TemplateSpec.model_json_schema()
    properties = full["properties"]
    model = {"anyOf": [{"type": "string", "description": "provider:name"}, properties["model"]]}
    schema: dict[str, Any] = {
        "title": "Configurable",
        "type": "object",
        "properties": {
            name: model if name == "model" else properties[name] for name in CONFIGURABLE_FIELDS
        },
    }
    if "$defs" in full:
        schema["$defs"] = full["$defs"]
    return schema


def _schemas(graph: Any, graph_id: str) -> dict[str, Any]:
    """A graph's schemas as LangGraph's ``GraphSchema``."""
    output = graph.get_output_jsonschema()
    context = graph.get_context_jsonschema() if graph.context_schema is not None else None
    return {
        "graph_id": graph_id,
        "input_schema": graph.get_input_jsonschema(),
        "output_schema": output,
        "state_schema": output,
        "config_schema": _config_schema(),
        "context_schema": context,
    }


@router.get("/assistants/{assistant_id}/schemas", summary="The assistant's graph schemas")
async def get_assistant_schemas(
    runtime: RuntimeDep, principal: PrincipalDep, assistant_id: AssistantId
) -> dict[str, Any]:
    template = await _get(runtime, principal, assistant_id)
    return _schemas((await runtime.graphs.get(template)).graph, template.spec.graph)


async def _subgraphs(
    runtime: Runtime, template: AgentTemplate, namespace: str | None, recurse: bool
) -> dict[str, Any]:
    graph = (await runtime.graphs.get(template)).graph
    return {
        ns: _schemas(subgraph, template.spec.graph)
        async for ns, subgraph in graph.aget_subgraphs(namespace=namespace, recurse=recurse)
    }


@router.get("/assistants/{assistant_id}/subgraphs", summary="The graph's subgraphs and schemas")
async def get_assistant_subgraphs(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    assistant_id: AssistantId,
    recurse: bool = False,
) -> dict[str, Any]:
    template = await _get(runtime, principal, assistant_id)
    return await _subgraphs(runtime, template, None, recurse)


@router.get(
    "/assistants/{assistant_id}/subgraphs/{namespace}",
    summary="The graph's subgraphs under a namespace",
)
async def get_assistant_subgraphs_in(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    assistant_id: AssistantId,
    namespace: Annotated[str, Path(max_length=500)],
    recurse: bool = False,
) -> dict[str, Any]:
    template = await _get(runtime, principal, assistant_id)
    return await _subgraphs(runtime, template, namespace, recurse)


@router.post(
    "/assistants/{assistant_id}/versions", summary="The assistant's versions, newest first"
)
async def list_assistant_versions(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    assistant_id: AssistantId,
    body: Annotated[VersionsSearch | None, Body()] = None,
) -> list[dict[str, Any]]:
    body = body or VersionsSearch()
    agent_id = resolve_assistant_id(runtime, assistant_id)
    versions = await runtime.templates.versions(
        agent_id,
        owner=principal.owner,
        metadata=body.metadata,
        limit=body.limit,
        offset=body.offset,
    )
    return [assistant_dict(v) for v in versions]


@router.post("/assistants/{assistant_id}/latest", summary="Make a kept version current")
async def set_latest_assistant_version(
    runtime: RuntimeDep, principal: PrincipalDep, assistant_id: AssistantId, body: LatestVersion
) -> dict[str, Any]:
    agent_id = resolve_assistant_id(runtime, assistant_id)
    template = await runtime.templates.set_version(
        agent_id, body.version, owner=principal.owner, system=principal.is_admin
    )
    return assistant_dict(template)
