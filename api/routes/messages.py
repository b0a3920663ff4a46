"""A session's messages: send one (a turn, JSON or SSE), or append one without a turn; read
the history or one message, edit or delete one, clear them all."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from api.auth import turn_request
from api.compat.common import state_dict
from api.deps import PrincipalDep, RuntimeDep
from api.message_schemas import MessageChangePublic, MessageEdit, MessageSend, MessagesRemoved
from api.routes.sessions import SessionId
from api.schemas import (
    ErrorBody,
    MessagePublic,
    Page,
    ResumeRequest,
    TurnPublic,
)
from api.streaming import (
    SSE_RESPONSES,
    OnDisconnect,
    first_event_after,
    recorded_sse,
    respond,
)
from runtime.db import DEFAULT_LIMIT, MAX_LIMIT

# What a streamed turn does when its client leaves: go on (rejoin it later), or be cancelled
# and rolled back whole.
OnDisconnectQuery = Annotated[
    OnDisconnect,
    Query(
        description="SSE only: `continue` (the default) or `cancel` the turn (rolled back) "
        "when the client disconnects"
    ),
]

router = APIRouter(
    prefix="/v1/sessions",
    tags=["messages"],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)


@router.post(
    "/{session_id}/messages",
    summary="Send a message: run one turn (JSON, or SSE with Accept: text/event-stream)",
    response_model=TurnPublic,
    responses={
        **SSE_RESPONSES,
        409: {"model": ErrorBody, "description": "Busy, inactive, or awaiting approval"},
        429: {"model": ErrorBody, "description": "The model is rate-limited; see Retry-After"},
        502: {"model": ErrorBody, "description": "The model refused or answered garbage"},
        413: {"model": ErrorBody},
        503: {"model": ErrorBody, "description": "The model failed; the turn was rolled back"},
        201: {"model": MessageChangePublic, "description": "run=false: the appended message"},
    },
)
async def send_message(
    session_id: SessionId,
    body: MessageSend,
    request: Request,
    runtime: RuntimeDep,
    who: PrincipalDep,
    run: Annotated[bool, Query(description="false: append without a turn (201)")] = True,
    on_disconnect: OnDisconnectQuery = "continue",
) -> Any:
    if not run:
        if body.agent_id:
            await runtime.session(session_id, agent_id=body.agent_id, owner=who.owner)
        change = await runtime.messages.append(who.owner, session_id, body.new_message())
        return JSONResponse(change.to_dict(), status_code=201)
    body.check_turn()
    turn = turn_request(who, body, content=body.content, input=body.input, agent_id=body.agent_id)
    return await respond(runtime, request, who.owner, session_id, turn, on_disconnect)


@router.post(
    "/{session_id}/resume",
    summary="Approve, reject or edit the tool calls a paused turn waits for, or give its "
    "interrupt a value, and finish it; an empty body continues from a static breakpoint",
    response_model=TurnPublic,
    responses={
        **SSE_RESPONSES,
        409: {"model": ErrorBody, "description": "Nothing awaits approval, or busy"},
        503: {"model": ErrorBody, "description": "The model failed; the resume was rolled back"},
    },
)
async def resume(
    session_id: SessionId,
    body: ResumeRequest,
    request: Request,
    runtime: RuntimeDep,
    who: PrincipalDep,
    on_disconnect: OnDisconnectQuery = "continue",
) -> Any:
    turn = turn_request(who, body, **body.turn_fields())
    return await respond(runtime, request, who.owner, session_id, turn, on_disconnect)


TurnId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get(
    "/{session_id}/turns/{turn_id}/stream",
    summary="Rejoin a streamed turn (SSE): the events after Last-Event-ID, then the rest live",
    responses={
        200: {
            "description": "The turn's events as sent (each with its `id`), from the one after "
            "`Last-Event-ID` (absent or `-1`: from the first), live until `done` or `error`.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def join_turn_stream(
    session_id: SessionId,
    turn_id: TurnId,
    runtime: RuntimeDep,
    who: PrincipalDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> EventSourceResponse:
    run = await runtime.runs.get(who.owner, session_id, turn_id)
    after = first_event_after(last_event_id) or 0
    return recorded_sse(runtime.runs.follow(run, after))


@router.get(
    "/{session_id}/state",
    summary="The session's whole graph state (every channel), as of its last completed turn",
)
async def get_state(
    session_id: SessionId,
    runtime: RuntimeDep,
    who: PrincipalDep,
    subgraphs: bool = False,
) -> dict[str, Any]:
    session = await runtime.sessions.get(who.owner, session_id)
    return state_dict(await runtime.threads.state(session, subgraphs=subgraphs), session_id)


@router.get("/{session_id}/messages", summary="Read the conversation, one page at a time")
async def list_messages(
    session_id: SessionId,
    runtime: RuntimeDep,
    who: PrincipalDep,
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[MessagePublic]:
    page = await runtime.history_page(
        session_id, owner=who.owner, order=order, limit=limit, cursor=cursor
    )
    return Page(
        items=[MessagePublic.model_validate(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.delete(
    "/{session_id}/messages",
    status_code=204,
    summary="Clear the conversation, keeping the session",
    responses={409: {"model": ErrorBody}},
)
async def clear_messages(session_id: SessionId, runtime: RuntimeDep, who: PrincipalDep) -> Response:
    await runtime.clear_history(session_id, owner=who.owner)
    return Response(status_code=204)


MessageId = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/{session_id}/messages/{message_id}", summary="Read one message")
async def get_message(
    session_id: SessionId, message_id: MessageId, runtime: RuntimeDep, who: PrincipalDep
) -> MessagePublic:
    return MessagePublic.model_validate(
        await runtime.messages.get(who.owner, session_id, message_id)
    )


@router.patch(
    "/{session_id}/messages/{message_id}",
    summary="Edit a message's content or metadata (a new checkpoint; the old content is kept)",
    responses={409: {"model": ErrorBody}},
)
async def edit_message(
    session_id: SessionId,
    message_id: MessageId,
    body: MessageEdit,
    runtime: RuntimeDep,
    who: PrincipalDep,
) -> MessageChangePublic:
    change = await runtime.messages.edit(
        who.owner, session_id, message_id, content=body.content, metadata=body.metadata
    )
    return MessageChangePublic.model_validate(change.to_dict())


@router.delete(
    "/{session_id}/messages/{message_id}",
    summary="Delete a message, with the results of its tool calls (a new checkpoint)",
    responses={409: {"model": ErrorBody, "description": "A tool result alone, or busy"}},
)
async def delete_message(
    session_id: SessionId, message_id: MessageId, runtime: RuntimeDep, who: PrincipalDep
) -> MessagesRemoved:
    change = await runtime.messages.delete(who.owner, session_id, message_id)
    return MessagesRemoved.model_validate(change.to_dict())
