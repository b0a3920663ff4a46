"""Every error the runtime raises on purpose, in one tree.

::

    SessiongraphError            base; carries a stable ``code`` and ``details``
    ├── InvalidInput             a caller passed something malformed (bad id, bad template)
    │   └── PayloadTooLarge      a message, metadata or body over its size limit
    ├── Unauthenticated          no credentials, or a key that is unknown or revoked
    ├── PermissionDenied         a visible resource the caller may not change (system agent)
    ├── NotFound                 no such agent / session for this owner
    │   └── SessionExpired       the session outlived its TTL and is being removed
    ├── Conflict                 the request contradicts stored state
    │   ├── SessionBusy          another turn holds the session's lease
    │   ├── SessionInactive      the session is deactivated and refuses turns
    │   ├── AwaitingApproval     the session waits for a human decision on tool calls
    │   └── NothingToResume      a resume for a session that is not waiting
    ├── LeaseLost                the turn's lease lapsed or its holder was taken for dead, and
    │   │                        another turn may have taken the session (retryable)
    │   └── ReplicaLost          the replica running a run stopped before the run ended: the
    │                            run ended in this error, its turn never committed (retryable)
    ├── RateLimited              a widget key or visitor IP is over its limit (Retry-After)
    ├── ModelUnavailable         the model could not be built or reached (retryable)
    │   ├── ModelRateLimited     the endpoint kept answering 429 (retryable, Retry-After)
    │   ├── ModelRejected        the endpoint refused the request (4xx; not retryable)
    │   └── ModelBadResponse     the endpoint kept answering malformed responses
    ├── DatabaseUnavailable      Postgres cannot be reached right now (down, failing over, no
    │                            free connection in time); retryable, Retry-After
    ├── BudgetExceeded           a graph ran past its step or time bound (rolled back)
    ├── TurnFailed               anything else went wrong inside a turn (rolled back)
    └── ConfigError              the project's configuration (langgraph.json) cannot be served;
                                 raised at start-up, naming the entry and the cause

The HTTP layer maps each class to one status code; code outside the runtime should
catch these, never bare exceptions. Every error's public body is :meth:`SessiongraphError.to_dict`
(``{error, message, details}``); :func:`error_dict` gives the same shape for anything else
(a cancellation, an unexpected exception), leaking nothing about it.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = [
    "AwaitingApproval",
    "BudgetExceeded",
    "ConfigError",
    "Conflict",
    "DatabaseUnavailable",
    "InvalidInput",
    "LeaseLost",
    "ModelBadResponse",
    "ModelRateLimited",
    "ModelRejected",
    "ModelUnavailable",
    "NothingToResume",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ReplicaLost",
    "SessionBusy",
    "SessionExpired",
    "SessionInactive",
    "SessiongraphError",
    "TurnFailed",
    "Unauthenticated",
    "error_dict",
]


class SessiongraphError(Exception):
    """Base of every runtime error: a message, a machine-readable code and details."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The public body of this error: ``{error, message, details}``."""
        return {"error": self.code, "message": self.message, "details": self.details}


class InvalidInput(SessiongraphError):
    """The caller passed something malformed."""

    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    """A message, metadata or request body is over its size limit."""

    code = "payload_too_large"


class Unauthenticated(SessiongraphError):
    """No credentials were given, or the key is unknown or revoked."""

    code = "unauthenticated"


class PermissionDenied(SessiongraphError):
    """The caller can see the resource but may not change it (e.g. a system agent)."""

    code = "permission_denied"


class NotFound(SessiongraphError):
    """The resource does not exist for this owner."""

    code = "not_found"


class SessionExpired(NotFound):
    """The session outlived its TTL."""

    code = "session_expired"


class Conflict(SessiongraphError):
    """The request contradicts stored state."""

    code = "conflict"


class SessionBusy(Conflict):
    """Another turn holds the session's lease."""

    code = "session_busy"


class SessionInactive(Conflict):
    """The session is deactivated."""

    code = "session_inactive"


class AwaitingApproval(Conflict):
    """The session is paused on tool calls that need a human decision."""

    code = "awaiting_approval"


class NothingToResume(Conflict):
    """A resume was sent to a session that is not waiting for approval."""

    code = "nothing_to_resume"


class LeaseLost(SessiongraphError):
    """The turn's lease lapsed, or its holder was taken for dead (paused past its heartbeat
    bound), and another turn took the session: nothing this turn wrote was kept. Retryable
    (``details["retryable"]``): sending the message again runs it on the session as it is."""

    code = "lease_lost"

    def __init__(self, message: str, **details: Any):
        details.setdefault("retryable", True)
        super().__init__(message, **details)


class ReplicaLost(LeaseLost):
    """The replica running a run (its holder: :mod:`runtime.runs.orphans`) stopped before the
    run ended, so the run ended with this error; its turn never committed and never will.
    Retryable: a keyed retry runs the request again, under the same key."""

    code = "replica_lost"


class RateLimited(SessiongraphError):
    """A widget key or a visitor's IP made too many requests; ``retry_after`` in details."""

    code = "rate_limited"


class ModelUnavailable(SessiongraphError):
    """The chat model could not be built or reached."""

    code = "model_unavailable"


class ModelRateLimited(ModelUnavailable):
    """The model endpoint kept answering 429 after the client's retries."""

    code = "model_rate_limited"


class ModelRejected(ModelUnavailable):
    """The model endpoint refused the request (a 4xx other than 429): resending won't help."""

    code = "model_rejected"


class ModelBadResponse(ModelUnavailable):
    """The model endpoint kept answering something that is not a valid completion."""

    code = "model_bad_response"


class DatabaseUnavailable(SessiongraphError):
    """Postgres cannot be reached right now: it is down, failing over to a standby, or no
    pooled connection came free in time. Nothing was half-written; retry after
    ``details["retry_after"]`` seconds."""

    code = "database_unavailable"

    def __init__(self, message: str = "the database is unavailable; retry shortly", **details: Any):
        details.setdefault("retry_after", DATABASE_RETRY_AFTER_SECONDS)
        details.setdefault("retryable", True)
        super().__init__(message, **details)


# What a client is told to wait before retrying when the database is unavailable: about the
# time a pool takes to reconnect to a promoted standby.
DATABASE_RETRY_AFTER_SECONDS = 2


class BudgetExceeded(SessiongraphError):
    """A graph ran past ``max_steps`` graph steps or ``deadline_seconds``; the turn was rolled
    back (the built-in graph ends such a turn cleanly instead, with a final message)."""

    code = "budget_exceeded"


class ConfigError(SessiongraphError):
    """The project's configuration cannot be served: start-up stops with this one message.

    ``entry`` names what is wrong (``graphs.triage``, ``sessiongraph.tools.refund``,
    ``sessiongraph.mcp_servers.files``); the message says the cause.
    """

    code = "invalid_config"

    def __init__(self, entry: str, cause: str = "cannot be served", **details: Any) -> None:
        super().__init__(f"{entry}: {cause}", entry=entry, **details)
        self.entry = entry


class TurnFailed(SessiongraphError):
    """A turn failed for a reason of the server's own; it was rolled back."""

    code = "turn_failed"


def error_dict(
    exc: BaseException, *, cancelled: str = "cancelled", failed: str = "failed"
) -> dict[str, Any]:
    """The public body for any exception: a runtime error's own, else a generic one.

    ``cancelled`` and ``failed`` finish the message for a cancellation and for anything
    unexpected (whose details stay in the log, never in the body).
    """
    if isinstance(exc, SessiongraphError):
        return exc.to_dict()
    if isinstance(exc, asyncio.CancelledError):
        return {"error": "cancelled", "message": cancelled, "details": {}}
    return {"error": "internal_error", "message": failed, "details": {}}
