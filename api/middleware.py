"""ASGI middleware: a request id on every response and log line, a body-size limit, and JSON
sent as ``text/plain`` read as JSON on the LangGraph API routes.

All are plain ASGI (no ``BaseHTTPMiddleware``), so streamed responses (SSE) and
WebSockets pass through untouched.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import status_for
from runtime.errors import PayloadTooLarge

__all__ = [
    "BodyLimitMiddleware",
    "PlainTextJsonMiddleware",
    "RequestIdFilter",
    "RequestIdMiddleware",
    "log_config",
    "request_id",
]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdFilter(logging.Filter):
    """A handler filter giving each record a ``request_id`` (for logging configs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


def log_config(level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` the server runs with: request id on every line."""
    fmt = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": {"format": fmt}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


class RequestIdMiddleware:
    """Take ``X-Request-ID`` from the client (if well-formed) or make one; echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _VALID_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI re-raises HTTP errors met while reading a body, so
    the app's own handler answers 413 with the usual error body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the {limit}-byte limit")
        self.details = {"limit": limit}


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = PayloadTooLarge(
            f"request body is over the {self.max_bytes}-byte limit", limit=self.max_bytes
        )
        response = JSONResponse(exc.to_dict(), status_code=status_for(exc))
        await response(scope, receive, send)


class PlainTextJsonMiddleware:
    """Treat a ``text/plain`` request body as JSON on the given path prefixes.

    LangGraph Studio sends its JSON bodies as ``text/plain`` (a "simple" request that needs
    no CORS preflight); FastAPI would refuse them. Only the ``Content-Type`` header is
    rewritten; a body that is not JSON still fails validation with the usual 422.
    """

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    def _applies(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._applies(scope["path"]):
            headers = scope["headers"]
            for i, (name, value) in enumerate(headers):
                if name == b"content-type" and value.split(b";")[0].strip().lower() == (
                    b"text/plain"
                ):
                    headers = list(headers)
                    headers[i] = (b"content-type", b"application/json")
                    scope = {**scope, "headers": headers}
                    break
        await self.app(scope, receive, send)
