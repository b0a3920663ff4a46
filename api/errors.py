"""One place that maps errors to HTTP: a status and ``{error, message, details}``.

Runtime errors map by class; FastAPI's validation errors become 422 ``invalid_input``;
Starlette's HTTP errors (unknown route, wrong method) keep their status; a database that
cannot be reached (down, failing over, no free connection) is a 503 ``database_unavailable``
with ``Retry-After``; anything else is a 500 that logs the cause and leaks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.db import database_error
from runtime.errors import (
    BudgetExceeded,
    ConfigError,
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    LeaseLost,
    ModelBadResponse,
    ModelRateLimited,
    ModelRejected,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    SessiongraphError,
    TurnFailed,
    Unauthenticated,
    error_dict,
)

__all__ = ["install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[SessiongraphError], int]] = [
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    # A graph ran past its bounds with the caller's input; the turn was rolled back.
    (BudgetExceeded, 422),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (LeaseLost, 409),
    (ModelRateLimited, 429),
    (RateLimited, 429),
    (ModelRejected, 502),
    (ModelBadResponse, 502),
    (ModelUnavailable, 503),
    (DatabaseUnavailable, 503),
    (TurnFailed, 500),
    # A project graph's factory built something that cannot be served (a server fault; the
    # body says no more than that).
    (ConfigError, 500),
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


def _error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error body for what is not a runtime error (validation, routing, the server).

    A runtime error's body is its own :meth:`~runtime.errors.SessiongraphError.to_dict`.
    """
    return {"error": code, "message": message, "details": details or {}}


def _respond(
    request: Request,
    payload: dict[str, Any],
    status: int,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Count the error by its code and answer with its body."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(error=payload["error"]).inc()
    return JSONResponse(payload, status_code=status, headers=headers)


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
        if isinstance(exc, ConfigError):
            # A project graph's factory built something that cannot be served: the details
            # (references, paths) are the operator's, in the log.
            log.error("the project's configuration cannot serve a request: %s", exc.message)
            body = _error_body("internal_error", "the server cannot build this agent's graph")
            return _respond(request, body, 500)
        headers = None
        if isinstance(exc, Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, ModelRateLimited | RateLimited | DatabaseUnavailable) and (
            exc.details.get("retry_after")
        ):
            headers = {"Retry-After": str(exc.details["retry_after"])}
        return _respond(request, exc.to_dict(), status_for(exc), headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        payload = _error_body("invalid_input", _validation_message(errors), {"errors": errors})
        return _respond(request, payload, 422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        payload = _error_body(code, str(exc.detail), getattr(exc, "details", None))
        return _respond(request, payload, exc.status_code, exc.headers)

    async def data_error(request: Request, exc: Exception) -> JSONResponse:
        # Postgres refuses some values outright, above all NUL characters in text; that is
        # the caller's input, not a server fault.
        message = "a value cannot be stored (text may not contain NUL characters)"
        return _respond(request, InvalidInput(message).to_dict(), 422)

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        unavailable = database_error(exc)
        if unavailable is None:
            return await unexpected(request, exc)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return await runtime_error(request, unavailable)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _respond(request, error_dict(exc, failed="internal server error"), 500)

    app.add_exception_handler(SessiongraphError, runtime_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(psycopg.DataError, data_error)
    app.add_exception_handler(psycopg.OperationalError, database_down)
    app.add_exception_handler(psycopg.InterfaceError, database_down)
    app.add_exception_handler(Exception, unexpected)
