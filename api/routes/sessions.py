"""Sessions: get-or-create, list, get, update, delete, activate and deactivate."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from api.deps import PrincipalDep, RuntimeDep
from api.schemas import ErrorBody, Page, SessionPublic, SessionUpdate, SessionUpsert
from runtime import Runtime
from runtime.db import DEFAULT_LIMIT, MAX_LIMIT
from runtime.errors import InvalidInput
from runtime.ids import ID_PATTERN

router = APIRouter(
    prefix="/v1/sessions",
    tags=["sessions"],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)

SessionId = Annotated[str, Path(pattern=ID_PATTERN, description="Your id for the session")]
MetadataFilter = Annotated[
    list[str] | None,
    Query(
        description="`key:value`; repeat to require several (e.g. `domain:shop.example`)",
        max_length=16,
    ),
]


def parse_metadata_filter(values: list[str] | None) -> dict[str, Any] | None:
    """``["domain:a.com", "user:7"]`` → ``{"domain": "a.com", "user": "7"}``."""
    if not values:
        return None
    out: dict[str, Any] = {}
    for value in values:
        key, sep, wanted = value.partition(":")
        if not sep or not key:
            raise InvalidInput("metadata filters look like key:value", field="metadata")
        out[key] = wanted
    return out


def session_filters(
    agent_id: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[Literal["active", "inactive"] | None, Query()] = None,
    metadata: MetadataFilter = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    """The list filters both session lists share, as ``SessionStore.list`` arguments."""
    return {
        "agent_id": agent_id,
        "status": status,
        "metadata": parse_metadata_filter(metadata),
        "limit": limit,
        "cursor": cursor,
    }


SessionFilters = Annotated[dict[str, Any], Depends(session_filters)]


async def session_page(
    runtime: Runtime, owner: str | None, filters: dict[str, Any]
) -> Page[SessionPublic]:
    page = await runtime.sessions.list(owner=owner, **filters)
    return Page(items=[SessionPublic.of(s) for s in page.items], next_cursor=page.next_cursor)


@router.put(
    "/{session_id}",
    summary="Get or create a session (201 created, 200 existing)",
    responses={201: {"model": SessionPublic}, 409: {"model": ErrorBody}, 413: {"model": ErrorBody}},
)
async def upsert_session(
    session_id: SessionId,
    body: SessionUpsert,
    response: Response,
    runtime: RuntimeDep,
    who: PrincipalDep,
) -> SessionPublic:
    session, created = await runtime.sessions.get_or_create(
        who.owner, session_id, **body.model_dump()
    )
    response.status_code = 201 if created else 200
    return SessionPublic.of(session)


@router.get("", summary="List sessions, newest first")
async def list_sessions(
    runtime: RuntimeDep, who: PrincipalDep, filters: SessionFilters
) -> Page[SessionPublic]:
    return await session_page(runtime, who.owner, filters)


@router.get("/{session_id}", summary="Get a session")
async def get_session(
    session_id: SessionId, runtime: RuntimeDep, who: PrincipalDep
) -> SessionPublic:
    return SessionPublic.of(await runtime.sessions.get(who.owner, session_id))


@router.patch("/{session_id}", summary="Update a session's name, description, metadata or TTL")
async def update_session(
    session_id: SessionId, body: SessionUpdate, runtime: RuntimeDep, who: PrincipalDep
) -> SessionPublic:
    changes = body.model_dump(exclude_unset=True)
    return SessionPublic.of(await runtime.sessions.update(who.owner, session_id, **changes))


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Delete a session and its checkpoints",
    responses={409: {"model": ErrorBody}},
)
async def delete_session(session_id: SessionId, runtime: RuntimeDep, who: PrincipalDep) -> Response:
    await runtime.sessions.delete(who.owner, session_id)
    return Response(status_code=204)


@router.post("/{session_id}/activate", summary="Activate a session (it accepts turns again)")
async def activate(session_id: SessionId, runtime: RuntimeDep, who: PrincipalDep) -> SessionPublic:
    return SessionPublic.of(await runtime.sessions.set_status(who.owner, session_id, "active"))


@router.post("/{session_id}/deactivate", summary="Deactivate a session (turns answer 409)")
async def deactivate(
    session_id: SessionId, runtime: RuntimeDep, who: PrincipalDep
) -> SessionPublic:
    return SessionPublic.of(await runtime.sessions.set_status(who.owner, session_id, "inactive"))
