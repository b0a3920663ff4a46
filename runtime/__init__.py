"""sessiongraph's engine: templates, sessions and turns on Postgres, with no HTTP.

Usage::

    async with Runtime.open(Settings()) as rt:
        await rt.session("demo")
        result = await rt.chat("demo", "my name is Alice")
"""

from __future__ import annotations

from runtime.engine import DEFAULT_OWNER, Runtime
from runtime.errors import (
    Conflict,
    InvalidInput,
    LeaseLost,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    SessionBusy,
    SessionExpired,
    SessiongraphError,
    SessionInactive,
    TurnFailed,
    Unauthenticated,
)
from runtime.settings import Settings, get_settings
from runtime.turns import TurnEvent, TurnResult

__all__ = [
    "Conflict",
    "DEFAULT_OWNER",
    "InvalidInput",
    "LeaseLost",
    "ModelUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Runtime",
    "SessionBusy",
    "SessionExpired",
    "SessionInactive",
    "SessiongraphError",
    "Settings",
    "TurnEvent",
    "TurnFailed",
    "TurnResult",
    "Unauthenticated",
    "get_settings",
]
