"""Sessions: get-or-create, list, get, update, delete, activate and deactivate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from api.deps import PrincipalDep, RuntimeDep
from api.schemas import ID_PATTERN, ErrorBody, Page, SessionPublic, SessionUpdate, SessionUpsert
from runtime.errors import InvalidInput

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
    runtime: RuntimeDep,
    who: PrincipalDep,
    agent_id: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[str | None, Query(pattern="^(active|inactive)$")] = None,
    metadata: MetadataFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[SessionPublic]:
    page = await runtime.sessions.list(
        owner=who.owner,
        agent_id=agent_id,
        status=status,  # type: ignore[arg-type]
        metadata=parse_metadata_filter(metadata),
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[SessionPublic.of(s) for s in page.items], next_cursor=page.next_cursor)


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
