"""OpenAI's chat API over agents: ``POST /v1/chat/completions`` and ``GET /v1/models``.

``model`` names the agent. A session (``metadata.session_id`` or the ``X-Session-Id``
header) keeps the history server-side; without one the request is stateless (see
:mod:`runtime.completions`). Errors answer in OpenAI's shape (:mod:`api.openai_format`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from api.auth import turn_roles
from api.deps import PrincipalDep, RuntimeDep
from api.openai_format import ChatCompletionRequest, OpenAIRoute, chunks, completion, model_list
from runtime.agents import AgentTemplate
from runtime.db import MAX_LIMIT

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


@router.post("/chat/completions", summary="OpenAI-compatible chat completion with an agent")
async def chat_completions(
    body: ChatCompletionRequest,
    runtime: RuntimeDep,
    who: PrincipalDep,
    x_session_id: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    session_id, roles = body.session_id(x_session_id), turn_roles(who, None)
    args = (who.owner, body.model, body.messages)
    if body.stream:
        events = runtime.completions.stream(*args, session_id=session_id, roles=roles)
        first = await anext(events)  # errors before the turn starts keep their status

        async def replay() -> Any:
            yield first
            async for event in events:
                yield event

        sse = chunks(replay(), body.model, body.include_usage)
        return StreamingResponse(
            sse, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    result = await runtime.completions.run(*args, session_id=session_id, roles=roles)
    return completion(result, body.model)


@router.get("/models", summary="The caller's agents, as OpenAI models")
async def list_models(runtime: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    templates: list[AgentTemplate] = []
    cursor: str | None = None
    while True:
        page = await runtime.templates.list(owner=who.owner, limit=MAX_LIMIT, cursor=cursor)
        templates.extend(page.items)
        if not (cursor := page.next_cursor):
            return model_list(templates)
