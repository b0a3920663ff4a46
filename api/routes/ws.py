"""WebSocket chat: several turns per connection, with the SSE event vocabulary as frames.

Client frames:

- ``{"type": "message", "content": "..."}`` (optionally ``budgets``, and ``roles`` from
  trusted keys);
- ``{"type": "resume", "decisions": [...]}`` to finish a turn paused for approval;
- ``{"type": "ping"}``, answered ``{"type": "pong"}``.

Server frames, each ``{"type", "data"}``: ``session`` once on connect, then per turn
``token``, ``tool_call``, ``tool_result``, ``message``, ``approval_required``, ``usage``,
and ``done`` or ``error``. A bad frame or a refused turn answers an ``error`` frame and the
connection stays open. Authentication failures close with 4401, a missing session with
4404. The key goes in the ``Authorization`` header or ``?token=``.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from api.auth import authenticate, turn_request
from api.schemas import MessageCreate, ResumeRequest, SessionPublic
from runtime import Runtime
from runtime.agents import DEFAULT_AGENT_ID
from runtime.errors import InvalidInput, NotFound, SessiongraphError, Unauthenticated
from runtime.ids import ID_PATTERN, new_id
from runtime.keys import Principal
from runtime.sessions import Session

router = APIRouter(tags=["messages"])

log = logging.getLogger(__name__)

AgentQuery = Annotated[str | None, Query(pattern=ID_PATTERN)]


@router.websocket("/v1/sessions/{session_id}/ws")
async def session_socket(
    websocket: WebSocket, session_id: str, agent_id: AgentQuery = None
) -> None:
    """Chat in one session; with ``?agent_id=`` the session is created if missing."""
    await _serve(websocket, session_id, agent_id)


@router.websocket("/v1/ws")
async def agent_socket(websocket: WebSocket, agent_id: AgentQuery = None) -> None:
    """Chat with an agent in a new session per connection (``?agent_id=``, default agent)."""
    await _serve(websocket, new_id("ses"), agent_id or DEFAULT_AGENT_ID)


async def _send(websocket: WebSocket, type_: str, data: dict[str, Any]) -> None:
    await websocket.send_text(
        json.dumps({"type": type_, "data": data}, separators=(",", ":"), default=str)
    )


async def _open(
    websocket: WebSocket, runtime: Runtime, session_id: str, agent_id: str | None
) -> tuple[Principal, Session]:
    principal = await authenticate(websocket, runtime)
    if agent_id is None:
        session = await runtime.sessions.get(principal.owner, session_id)
    else:
        session, _ = await runtime.sessions.get_or_create(
            principal.owner, session_id, agent_id=agent_id
        )
    return principal, session


async def _serve(websocket: WebSocket, session_id: str, agent_id: str | None) -> None:
    runtime: Runtime = websocket.state.runtime
    await websocket.accept()
    try:
        principal, session = await _open(websocket, runtime, session_id, agent_id)
    except SessiongraphError as exc:
        await _send(websocket, "error", exc.to_dict())
        await websocket.close(code=_close_code(exc), reason=exc.code)
        return
    await _send(websocket, "session", SessionPublic.of(session).model_dump(mode="json"))
    try:
        while True:
            frame = await websocket.receive_text()
            try:
                body, key = _parse(frame)
                if body is None:
                    await _send(websocket, "pong", {})
                    continue
                if isinstance(body, ResumeRequest):
                    fields = body.turn_fields()
                else:
                    fields = {"content": body.content, "input": body.input}
                turn = turn_request(principal, body, idempotency_key=key, **fields)
                events = await runtime.start(session_id, turn, owner=principal.owner)
                async for event in events:
                    await _send(websocket, event.type, event.data)
            except SessiongraphError as exc:
                await _send(websocket, "error", exc.to_dict())
    except WebSocketDisconnect:
        # A turn in flight keeps running detached and completes the session.
        return


def _close_code(exc: SessiongraphError) -> int:
    if isinstance(exc, Unauthenticated):
        return 4401
    if isinstance(exc, NotFound):
        return 4404
    return 4400  # a refused session (another agent's, bad id)


def _parse(frame: str) -> tuple[MessageCreate | ResumeRequest | None, str | None]:
    """A client frame as a message or a resume (None for a ping), and its idempotency key."""
    try:
        data = json.loads(frame)
    except ValueError as exc:
        raise InvalidInput(
            'frames are JSON objects like {"type": "message", "content": ...}'
        ) from exc
    if not isinstance(data, dict):
        raise InvalidInput("frames are JSON objects")
    kind = data.pop("type", "message")
    if kind == "ping":
        return None, None
    key = data.pop("idempotency_key", None)
    if key is not None and not isinstance(key, str):
        raise InvalidInput("idempotency_key is a string")
    if kind not in ("message", "resume"):
        raise InvalidInput(f"unknown frame type {kind!r}; send 'message', 'resume' or 'ping'")
    try:
        if kind == "resume":
            return ResumeRequest.model_validate(data), key
        return MessageCreate.model_validate(data), key
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise InvalidInput(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
