"""The web widget: ``/widget.js`` and the routes it calls with a publishable key.

A page's widget sends its publishable key (``X-Widget-Key``) from an allowed origin; it may
start a session of the key's agent (getting a per-visitor token back) and, with that token
(``X-Session-Token``), read and chat in that session only. Every request counts against the
key's and the visitor IP's rate limits. The rules are :mod:`runtime.widgets`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import FileResponse

from api.deps import RuntimeDep
from api.routes.sessions import SessionId
from api.schemas import ErrorBody, MessagePublic, Page
from api.streaming import SSE_RESPONSES, respond
from api.widget_schemas import WidgetMessage, WidgetSession
from runtime.db import MAX_LIMIT
from runtime.errors import Unauthenticated
from runtime.turns import TurnRequest
from runtime.widgets import PublishableKey, Visitor, check_origin, client_ip

router = APIRouter(
    tags=["widget"],
    responses={
        401: {"model": ErrorBody},
        403: {"model": ErrorBody, "description": "The page's origin is not allowed"},
        429: {"model": ErrorBody, "description": "Over the key's or the IP's limit"},
    },
)

WIDGET_JS = Path(__file__).resolve().parent.parent / "static" / "widget.js"


@dataclass(frozen=True)
class WidgetCaller:
    key: PublishableKey
    visitor: Visitor


async def get_widget_caller(request: Request, runtime: RuntimeDep) -> WidgetCaller:
    """The publishable key and visitor of a widget request: known key, allowed origin,
    within the rate limits."""
    secret = request.headers.get("x-widget-key")
    key = await runtime.widget_keys.authenticate(secret) if secret else None
    if key is None:
        raise Unauthenticated("missing, unknown or revoked publishable key (X-Widget-Key)")
    origin = request.headers.get("origin")
    check_origin(key, origin)
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    ip = client_ip(peer, forwarded, runtime.settings.trusted_proxies)
    await runtime.widgets.limit(key, ip)
    return WidgetCaller(key, Visitor(origin, ip, request.headers.get("user-agent")))


WidgetDep = Annotated[WidgetCaller, Depends(get_widget_caller)]
SessionToken = Annotated[str | None, Header(alias="x-session-token", max_length=200)]


@router.get("/widget.js", include_in_schema=False)
async def widget_js() -> FileResponse:
    return FileResponse(
        WIDGET_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"}
    )


@router.post("/v1/widget/sessions", status_code=201, summary="Widget: start a visitor's session")
async def start_session(runtime: RuntimeDep, caller: WidgetDep) -> WidgetSession:
    session, token = await runtime.widgets.start(caller.key, caller.visitor)
    return WidgetSession(session_id=session.session_id, token=token, agent_id=session.agent_id)


@router.get("/v1/widget/sessions/{session_id}/messages", summary="Widget: the conversation")
async def widget_history(
    session_id: SessionId, runtime: RuntimeDep, caller: WidgetDep, token: SessionToken = None
) -> Page[MessagePublic]:
    await runtime.widgets.check(caller.key, session_id, token)
    page = await runtime.history_page(
        session_id, owner=caller.key.owner, order="desc", limit=MAX_LIMIT
    )
    return Page(items=[MessagePublic.model_validate(m) for m in reversed(page.items)])


@router.post(
    "/v1/widget/sessions/{session_id}/messages",
    summary="Widget: send a message (JSON, or SSE with Accept: text/event-stream)",
    responses=SSE_RESPONSES,
)
async def widget_send(
    session_id: SessionId,
    body: WidgetMessage,
    request: Request,
    runtime: RuntimeDep,
    caller: WidgetDep,
    token: SessionToken = None,
) -> Any:
    await runtime.widgets.check(caller.key, session_id, token)
    # A visitor has no roles: the agent's tools open to everyone only.
    turn = TurnRequest(content=body.content, roles=frozenset())
    return await respond(runtime, request, caller.key.owner, session_id, turn)
