"""What a failed turn's caller sees: the public error for what went wrong, and its ``error``
event. Internal details stay in the log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from runtime.db import database_error
from runtime.errors import LeaseLost, SessiongraphError, TurnFailed, error_dict
from runtime.models import model_error
from runtime.sessions import Lease

__all__ = ["error_body", "public_error"]

log = logging.getLogger(__name__)


def public_error(exc: BaseException, lease: Lease) -> BaseException:
    """The error a caller sees for a failed turn; internal details stay in the log."""
    if lease.lost and isinstance(exc, asyncio.CancelledError):
        return LeaseLost(
            f"the lease on session {lease.session_id!r} was lost mid-turn",
            session_id=lease.session_id,
        )
    if isinstance(exc, SessiongraphError) or not isinstance(exc, Exception):
        return exc
    model_failure = model_error(exc, lease.session_id)
    if model_failure is not None:
        return model_failure
    db_failure = database_error(exc)
    if db_failure is not None:  # rolled back (or rolls back when the lease lapses)
        log.warning("turn on %s: database unavailable (%s)", lease.session_id, exc)
        return db_failure
    log.error("turn on %s failed", lease.session_id, exc_info=exc)
    return TurnFailed(
        f"the turn failed ({type(exc).__name__}) and was rolled back",
        session_id=lease.session_id,
    )


def error_body(error: BaseException) -> dict[str, Any]:
    """The ``error`` event's payload for the error a caller sees."""
    body = error_dict(error, cancelled="the turn was cancelled", failed="turn failed")
    if isinstance(error, asyncio.CancelledError):
        # A cancelled turn's event has always said "internal_error" (error_dict says
        # "cancelled"); kept so the stream stays byte-identical.
        body["error"] = "internal_error"
    return body
