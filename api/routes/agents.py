"""Agents (templates): create, list, get, update, delete, and chat with one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from api.auth import turn_request
from api.deps import PrincipalDep, RuntimeDep
from api.schemas import (
    AgentChat,
    AgentCreate,
    AgentPublic,
    AgentUpdate,
    ErrorBody,
    Page,
    TurnPublic,
)
from api.streaming import IDEMPOTENCY_HEADER, SSE_RESPONSES, respond
from runtime.agents import TemplateSpec
from runtime.db import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET_LIMIT
from runtime.ids import new_id
from runtime.sessions.idempotency import keyed_session_id

router = APIRouter(
    prefix="/v1/agents",
    tags=["agents"],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)


@router.post("", status_code=201, summary="Create an agent", responses={409: {"model": ErrorBody}})
async def create_agent(body: AgentCreate, runtime: RuntimeDep, who: PrincipalDep) -> AgentPublic:
    spec = TemplateSpec.model_validate(body.model_dump(exclude={"id"}))
    template = await runtime.templates.create(spec, owner=who.owner, agent_id=body.id)
    return AgentPublic.of(template)


@router.get("", summary="List agents (yours and the shared system ones)")
async def list_agents(
    runtime: RuntimeDep,
    who: PrincipalDep,
    name: Annotated[str | None, Query(max_length=200, description="Name contains")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[AgentPublic]:
    page = await runtime.templates.list(owner=who.owner, name=name, limit=limit, cursor=cursor)
    return Page(items=[AgentPublic.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{agent_id}", summary="Get an agent")
async def get_agent(agent_id: str, runtime: RuntimeDep, who: PrincipalDep) -> AgentPublic:
    return AgentPublic.of(await runtime.templates.get(agent_id, owner=who.owner))


@router.patch(
    "/{agent_id}",
    summary="Update an agent (bumps its version)",
    responses={403: {"model": ErrorBody}},
)
async def update_agent(
    agent_id: str, body: AgentUpdate, runtime: RuntimeDep, who: PrincipalDep
) -> AgentPublic:
    changes = body.model_dump(exclude_unset=True, mode="json")
    template = await runtime.templates.update(
        agent_id, changes, owner=who.owner, system=who.is_admin
    )
    return AgentPublic.of(template)


@router.get("/{agent_id}/versions", summary="An agent's kept versions, newest first")
async def list_agent_versions(
    agent_id: str,
    runtime: RuntimeDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_OFFSET_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AgentPublic]:
    versions = await runtime.templates.versions(
        agent_id, owner=who.owner, limit=limit, offset=offset
    )
    return [AgentPublic.of(t) for t in versions]


@router.post(
    "/{agent_id}/versions/{version}/current",
    summary="Make a kept version the agent's current one",
    responses={403: {"model": ErrorBody}},
)
async def set_agent_version(
    agent_id: str,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    runtime: RuntimeDep,
    who: PrincipalDep,
) -> AgentPublic:
    template = await runtime.templates.set_version(
        agent_id, version, owner=who.owner, system=who.is_admin
    )
    return AgentPublic.of(template)


@router.delete(
    "/{agent_id}",
    status_code=204,
    summary="Delete an agent (409 while it has live sessions, unless force)",
    responses={403: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def delete_agent(
    agent_id: str,
    runtime: RuntimeDep,
    who: PrincipalDep,
    force: Annotated[bool, Query(description="Also delete its sessions")] = False,
) -> Response:
    await runtime.templates.delete(agent_id, owner=who.owner, force=force, system=who.is_admin)
    return Response(status_code=204)


@router.post(
    "/{agent_id}/chat",
    summary="Send a message to an agent, in a given or a new session",
    response_model=TurnPublic,
    responses={**SSE_RESPONSES, 409: {"model": ErrorBody}, 413: {"model": ErrorBody}},
)
async def chat(
    agent_id: str, body: AgentChat, request: Request, runtime: RuntimeDep, who: PrincipalDep
) -> Any:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    # A retry must reach its first attempt's session: a new one is named after the key.
    session_id = body.session_id or (keyed_session_id(key) if key else new_id("ses"))
    turn = turn_request(who, body, content=body.content, input=body.input, agent_id=agent_id)
    return await respond(runtime, request, who.owner, session_id, turn)
