"""Admin routes (admin keys only): per-agent stats, sessions of every owner, manual sweep,
publishable (widget) keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from api.deps import AdminDep, RuntimeDep
from api.routes.sessions import SessionFilters, session_page
from api.schemas import (
    ErrorBody,
    Page,
    SessionPublic,
    StatsPublic,
    SweepPublic,
    SweepRequest,
    SweptSession,
)
from api.widget_schemas import (
    PublishableKeyCreate,
    PublishableKeyCreated,
    PublishableKeyPublic,
)

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)


@router.get("/stats", summary="Per-agent statistics across every owner")
async def stats(
    runtime: RuntimeDep,
    _: AdminDep,
    agent_id: Annotated[str | None, Query(max_length=128)] = None,
    owner: Annotated[str | None, Query(max_length=128)] = None,
) -> StatsPublic:
    return StatsPublic(items=await runtime.stats(agent_id=agent_id, owner=owner))


@router.get("/sessions", summary="Sessions of every owner")
async def all_sessions(
    runtime: RuntimeDep,
    _: AdminDep,
    filters: SessionFilters,
    owner: Annotated[str | None, Query(max_length=128)] = None,
) -> Page[SessionPublic]:
    return await session_page(runtime, owner, filters)


@router.post("/sweep", summary="Remove expired sessions now, or those idle for max_idle_hours")
async def sweep(
    runtime: RuntimeDep, _: AdminDep, body: Annotated[SweepRequest | None, Body()] = None
) -> SweepPublic:
    hours = body.max_idle_hours if body else None
    result = await runtime.sweep(idle_seconds=None if hours is None else hours * 3600)
    return SweepPublic(
        removed=result.count,
        sessions=[SweptSession(owner=o, session_id=s) for o, s in result.sessions],
    )


@router.post(
    "/publishable-keys", status_code=201, summary="Create a widget key (one agent, origins)"
)
async def create_publishable_key(
    body: PublishableKeyCreate, runtime: RuntimeDep, _: AdminDep
) -> PublishableKeyCreated:
    key, secret = await runtime.widget_keys.create(
        body.owner, body.agent_id, body.allowed_origins, name=body.name
    )
    return PublishableKeyCreated(**PublishableKeyPublic.of(key).model_dump(), key=secret)


@router.get("/publishable-keys", summary="Widget keys, oldest first")
async def list_publishable_keys(
    runtime: RuntimeDep, _: AdminDep, include_revoked: bool = False
) -> list[PublishableKeyPublic]:
    keys = await runtime.widget_keys.list(include_revoked=include_revoked)
    return [PublishableKeyPublic.of(k) for k in keys]


@router.delete("/publishable-keys/{key_id}", summary="Revoke a widget key at once")
async def revoke_publishable_key(
    key_id: Annotated[str, Path(max_length=64)], runtime: RuntimeDep, _: AdminDep
) -> PublishableKeyPublic:
    return PublishableKeyPublic.of(await runtime.widget_keys.revoke(key_id))
