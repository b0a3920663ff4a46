"""Who is calling: API keys (``Authorization: Bearer`` or ``x-api-key``), or nobody when auth
is off.

Auth is off when no key exists and the server may run open: it is bound to a loopback
address, or ``allow_open`` is set. Then every caller is the ``local`` owner with the admin
role. As soon as one key exists, every request needs a valid one. The LangGraph SDK and
Studio send the key as ``x-api-key``. WebSockets may send the key as a ``token`` query
parameter, since browsers cannot set headers on them.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from fastapi.requests import HTTPConnection

from runtime import DEFAULT_OWNER, Runtime, Settings
from runtime.errors import PermissionDenied, Unauthenticated
from runtime.keys import ADMIN_ROLE, Principal
from runtime.turns import TurnRequest

__all__ = [
    "authenticate",
    "may_run_open",
    "require_admin",
    "turn_request",
    "turn_roles",
]

log = logging.getLogger(__name__)

OPEN_PRINCIPAL = Principal(owner=DEFAULT_OWNER, roles=frozenset({ADMIN_ROLE}))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def may_run_open(settings: Settings) -> bool:
    """Whether this server may serve without keys (loopback bind, or told to run open)."""
    return settings.allow_open or is_loopback(settings.host)


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthenticated("malformed Authorization header: use 'Bearer <key>'")
    api_key = conn.headers.get("x-api-key")
    if api_key is not None:
        if not api_key.strip():
            raise Unauthenticated("empty x-api-key header")
        return api_key.strip()
    if conn.scope["type"] == "websocket":
        return conn.query_params.get("token") or None
    return None


async def authenticate(conn: HTTPConnection, runtime: Runtime) -> Principal:
    """The caller's principal.

    Raises:
        Unauthenticated: no key where one is needed, or an unknown or revoked key.
    """
    secret = _bearer(conn)
    if secret is not None:
        principal = await runtime.keys.authenticate(secret)
        if principal is None:
            raise Unauthenticated("invalid or revoked API key")
        return principal
    if may_run_open(runtime.settings) and not await runtime.keys.any_active():
        return OPEN_PRINCIPAL
    raise Unauthenticated(
        "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
    )


TRUSTED_ROLE = "trusted"


def turn_roles(principal: Principal, requested: list[str] | None) -> frozenset[str]:
    """The roles a turn runs with: the key's, or the end user's as a trusted backend says.

    Raises:
        PermissionDenied: roles were given by a key that is neither trusted nor admin.
    """
    if requested is None:
        return principal.roles
    if not (principal.roles & {TRUSTED_ROLE, ADMIN_ROLE}):
        raise PermissionDenied(
            "only trusted backends (keys with the trusted role) may set roles per request",
            field="roles",
        )
    return frozenset(requested)


def turn_request(principal: Principal, body: Any, **fields: Any) -> TurnRequest:
    """The runtime's request for a turn body: the caller's roles and budgets, and ``fields``
    (content or input, decisions or a resume value, the agent)."""
    return TurnRequest(roles=turn_roles(principal, body.roles), budgets=body.budgets, **fields)


def require_admin(principal: Principal) -> Principal:
    """Admin routes refuse other keys with 403 (the routes are documented, not secret)."""
    if not principal.is_admin:
        raise PermissionDenied("this route needs an admin key", required_role=ADMIN_ROLE)
    return principal
