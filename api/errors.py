"""One place that maps runtime errors to HTTP: a status and ``{error, message, details}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from runtime.errors import (
    Conflict,
    InvalidInput,
    LeaseLost,
    ModelUnavailable,
    NotFound,
    SessiongraphError,
    TurnFailed,
)

__all__ = ["install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[SessiongraphError], int]] = [
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (LeaseLost, 409),
    (ModelUnavailable, 503),
    (TurnFailed, 500),
]


def status_for(exc: SessiongraphError) -> int:
    """The HTTP status for a runtime error (500 for anything unmapped)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """Register the runtime-error handler and a catch-all 500 that leaks nothing."""

    async def runtime_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SessiongraphError)
        body = {"error": exc.code, "message": exc.message, "details": exc.details}
        return JSONResponse(body, status_code=status_for(exc))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {"error": "internal_error", "message": "internal server error", "details": {}}
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(SessiongraphError, runtime_error)
    app.add_exception_handler(Exception, unexpected)
