"""OpenAI's wire format for ``/v1/chat/completions`` and ``/v1/models``: the request body,
the completion, its stream chunks and the error shape ``{"error": {message, type, param,
code}}``. Only shapes live here; what a request means is :mod:`runtime.completions`."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import status_for
from runtime import TurnEvent
from runtime.agents import AgentTemplate
from runtime.errors import ModelRateLimited, SessiongraphError, Unauthenticated
from runtime.ids import ID_PATTERN
from runtime.turns import TurnResult

__all__ = [
    "ChatCompletionRequest",
    "OpenAIRoute",
    "chunks",
    "completion",
    "model_list",
    "openai_error",
]

# OpenAI's error ``type`` for each status it documents.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class StreamOptions(BaseModel):
    include_usage: bool = True


class ChatCompletionRequest(BaseModel):
    """OpenAI's request body; ``model`` names the agent. Sampling fields are accepted and
    ignored (the agent's template decides them)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(pattern=ID_PATTERN, description="The agent's id.")
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = Field(
        default=None, description="`session_id` here keeps the history server-side."
    )

    def session_id(self, header: str | None) -> str | None:
        """The session: ``metadata.session_id``, else the ``X-Session-Id`` header."""
        return (self.metadata or {}).get("session_id") or header or None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is None or self.stream_options.include_usage


def openai_error(
    status: int, message: str, code: str, param: str | None = None, **headers: str
) -> JSONResponse:
    """An error in OpenAI's shape."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {
        "error": {
            "message": message,
            "type": kind,
            "param": param,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers or None)


def _runtime_error(exc: SessiongraphError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, ModelRateLimited) and exc.details.get("retry_after"):
        headers["Retry-After"] = str(exc.details["retry_after"])
    param = exc.details.get("field")
    # OpenAI answers every malformed request with 400, where the native API says 422.
    status = 400 if status_for(exc) == 422 else status_for(exc)
    return openai_error(status, exc.message, exc.code, param, **headers)


class OpenAIRoute(APIRoute):
    """A route whose errors (auth, validation, runtime) answer in OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SessiongraphError as exc:
                return _runtime_error(exc)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
                message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid body"
                return openai_error(400, message, "invalid_input", where or None)
            except StarletteHTTPException as exc:  # an unreadable body, for one
                return openai_error(exc.status_code, str(exc.detail), "bad_request")

        return openai_handler


def _base(request_id: str, model: str, created: int, kind: str) -> dict[str, Any]:
    return {"id": request_id, "object": kind, "created": created, "model": model}


def _usage(usage: dict[str, int]) -> dict[str, int]:
    return {
        "prompt_tokens": usage.get("input_tokens", 0),
        "completion_tokens": usage.get("output_tokens", 0),
        "total_tokens": usage.get("total_tokens", 0),
    }


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.get("id") or c.get("tool_call_id"),
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
        }
        for c in calls
    ]


def new_completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def completion(result: TurnResult, model: str) -> dict[str, Any]:
    """A non-streamed completion. A turn paused on tool calls that need approval answers
    them as ``tool_calls`` with ``finish_reason: "tool_calls"``; a completed turn's tools
    ran on the server, so its message is the final text."""
    message: dict[str, Any] = {"role": "assistant", "content": result.reply, "refusal": None}
    finish = "stop"
    if result.pending_approvals:
        message["tool_calls"] = _tool_calls(result.pending_approvals)
        finish = "tool_calls"
    elif "max_tokens" in " ".join(result.warnings):
        finish = "length"
    return {
        **_base(new_completion_id(), model, int(time.time()), "chat.completion"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(result.usage),
        "system_fingerprint": None,
        "session_id": result.session_id,
    }


async def chunks(
    events: AsyncIterator[TurnEvent], model: str, include_usage: bool
) -> AsyncIterator[str]:
    """The turn's events as OpenAI stream chunks (``data: {...}`` lines, then ``[DONE]``):
    a role delta, content deltas, one tool-call delta per call the agent makes, the finish
    reason, the usage chunk (``choices: []``), or an ``{"error": ...}`` chunk."""
    base = {
        **_base(new_completion_id(), model, int(time.time()), "chat.completion.chunk"),
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    calls = 0
    async for event in events:
        if event.type == "token":
            yield chunk({"content": event.data["content"]})
        elif event.type == "tool_call":
            (call,) = _tool_calls([event.data])
            yield chunk({"tool_calls": [{"index": calls, **call}]})
            calls += 1
        elif event.type == "error":
            error = {"message": event.data.get("message"), "type": "server_error"}
            yield f"data: {json.dumps({'error': {**error, 'code': event.data.get('error')}})}\n\n"
            break
        elif event.type == "done":
            finish = "tool_calls" if event.data.get("pending_approvals") else "stop"
            yield chunk({}, finish)
            if include_usage:
                usage = {**base, "choices": [], "usage": _usage(event.data["usage"])}
                yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


def model_list(templates: list[AgentTemplate]) -> dict[str, Any]:
    """``GET /v1/models``: the caller's agents as OpenAI models."""
    return {
        "object": "list",
        "data": [
            {
                "id": t.agent_id,
                "object": "model",
                "created": int(t.created_at.timestamp()),
                "owned_by": t.owner,
            }
            for t in templates
        ],
    }
