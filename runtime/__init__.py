"""sessiongraph's engine: agents, sessions and turns on Postgres, with no HTTP.

Usage::

    async with Runtime.open(Settings()) as rt:
        await rt.session("demo")
        result = await rt.chat("demo", "my name is Alice")

This module is the public surface. The documented sub-packages (``runtime.agents``,
``runtime.sessions``, ``runtime.tools``, ...; see ARCHITECTURE.md) export the rest, each
from its own root.
"""

from __future__ import annotations

from runtime.agents import AgentTemplate, Budgets, ModelSpec, TemplateSpec
from runtime.engine import DEFAULT_OWNER, Runtime
from runtime.errors import (
    AwaitingApproval,
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    LeaseLost,
    ModelBadResponse,
    ModelRateLimited,
    ModelRejected,
    ModelUnavailable,
    NotFound,
    NothingToResume,
    PayloadTooLarge,
    PermissionDenied,
    SessionBusy,
    SessionExpired,
    SessiongraphError,
    SessionInactive,
    TurnFailed,
    Unauthenticated,
)
from runtime.sessions import Session
from runtime.settings import Settings, get_settings
from runtime.tools import ToolRegistry, ToolSpec
from runtime.turns import TurnEvent, TurnResult

__all__ = [
    "AgentTemplate",
    "AwaitingApproval",
    "Budgets",
    "Conflict",
    "DEFAULT_OWNER",
    "DatabaseUnavailable",
    "InvalidInput",
    "LeaseLost",
    "ModelBadResponse",
    "ModelRateLimited",
    "ModelRejected",
    "ModelSpec",
    "ModelUnavailable",
    "NotFound",
    "NothingToResume",
    "PayloadTooLarge",
    "PermissionDenied",
    "Runtime",
    "Session",
    "SessionBusy",
    "SessionExpired",
    "SessionInactive",
    "SessiongraphError",
    "Settings",
    "TemplateSpec",
    "ToolRegistry",
    "ToolSpec",
    "TurnEvent",
    "TurnFailed",
    "TurnResult",
    "Unauthenticated",
    "get_settings",
]
