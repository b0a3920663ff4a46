"""One place that maps errors to HTTP: a status and ``{error, message, details}``.

Runtime errors map by class; FastAPI's validation errors become 422 ``invalid_input``;
Starlette's HTTP errors (unknown route, wrong method) keep their status; anything else is a
500 that logs the cause and leaks nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.errors import (
    Conflict,
    InvalidInput,
    LeaseLost,
    ModelBadResponse,
    ModelRateLimited,
    ModelRejected,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    SessiongraphError,
    TurnFailed,
    Unauthenticated,
)

__all__ = ["error_body", "install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[SessiongraphError], int]] = [
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (LeaseLost, 409),
    (ModelRateLimited, 429),
    (ModelRejected, 502),
    (ModelBadResponse, 502),
    (ModelUnavailable, 503),
    (TurnFailed, 500),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def status_for(exc: SessiongraphError) -> int:
    """The HTTP status for a runtime error (500 for anything unmapped)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(exc: SessiongraphError) -> dict[str, Any]:
    return {"error": exc.code, "message": exc.message, "details": exc.details}


def _count(request: Request, code: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(error=code).inc()


def _validation_message(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; every error response has the same body shape."""

    async def runtime_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SessiongraphError)
        _count(request, exc.code)
        headers = None
        if isinstance(exc, Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, ModelRateLimited) and exc.details.get("retry_after"):
            headers = {"Retry-After": str(exc.details["retry_after"])}
        return JSONResponse(error_body(exc), status_code=status_for(exc), headers=headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        _count(request, "invalid_input")
        body = {
            "error": "invalid_input",
            "message": _validation_message(errors),
            "details": {"errors": errors},
        }
        return JSONResponse(body, status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        _count(request, code)
        details = getattr(exc, "details", None) or {}
        body = {"error": code, "message": str(exc.detail), "details": details}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def data_error(request: Request, exc: Exception) -> JSONResponse:
        # Postgres refuses some values outright, above all NUL characters in text; that is
        # the caller's input, not a server fault.
        _count(request, "invalid_input")
        body = {
            "error": "invalid_input",
            "message": "a value cannot be stored (text may not contain NUL characters)",
            "details": {},
        }
        return JSONResponse(body, status_code=422)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        _count(request, "internal_error")
        body = {"error": "internal_error", "message": "internal server error", "details": {}}
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(SessiongraphError, runtime_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(psycopg.DataError, data_error)
    app.add_exception_handler(Exception, unexpected)
