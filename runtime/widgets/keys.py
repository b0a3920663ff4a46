"""Publishable keys: keys safe in a web page.

A publishable key (``pk_<key_id>_<secret>``) is bound to one agent of its owner and a list
of allowed origins. It is not an API key: :class:`runtime.keys.KeyStore` never accepts it,
so it opens none of the API's routes; the widget routes accept it, and with it a browser
may only start sessions of that agent and chat in the sessions it started (see
:mod:`runtime.widgets.visitors`). Only its sha256 is stored.
"""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from runtime.agents import TemplateStore
from runtime.db import Pool, fetch_all, fetch_one
from runtime.errors import InvalidInput, NotFound, PermissionDenied
from runtime.keys import hash_key
from runtime.widgets import sql

__all__ = ["PublishableKey", "PublishableKeyStore", "check_origin", "normal_origin"]


@dataclass(frozen=True)
class PublishableKey:
    """A stored publishable key, without its secret."""

    key_id: str
    owner: str
    agent_id: str
    allowed_origins: list[str]
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PublishableKey:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def allows(self, origin: str | None) -> bool:
        """Whether a page of ``origin`` may use this key (``*`` allows any origin)."""
        if "*" in self.allowed_origins:
            return True
        return origin is not None and normal_origin(origin) in self.allowed_origins


def normal_origin(origin: str) -> str:
    """``scheme://host[:port]``, lowercased, without a path or a trailing slash.

    Raises:
        InvalidInput: not an http(s) origin.
    """
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"invalid origin {origin!r}: use https://host[:port]", field="origin")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def check_origin(key: PublishableKey, origin: str | None) -> None:
    """Refuse a request whose ``Origin`` the key does not allow.

    Raises:
        PermissionDenied: no ``Origin``, or one not in the key's allowed origins.
    """
    try:
        allowed = key.allows(origin)
    except InvalidInput:
        allowed = False
    if not allowed:
        raise PermissionDenied(
            f"origin {origin or '(none)'} is not allowed to use this widget key",
            origin=origin,
            key_id=key.key_id,
        )


class PublishableKeyStore:
    """The ``publishable_keys`` table."""

    def __init__(self, pool: Pool, templates: TemplateStore) -> None:
        self._pool = pool
        self._templates = templates

    async def create(
        self, owner: str, agent_id: str, origins: builtins.list[str], *, name: str | None = None
    ) -> tuple[PublishableKey, str]:
        """Store a new key for an agent the owner may use; return it and its secret.

        Raises:
            NotFound: the owner cannot see that agent.
            InvalidInput: no origins, or a malformed one.
        """
        if not origins:
            raise InvalidInput("give at least one allowed origin (or *)", field="origins")
        normal = sorted({o if o == "*" else normal_origin(o) for o in origins})
        await self._templates.get(agent_id, owner=owner)
        key_id = secrets.token_hex(6)
        secret = f"pk_{key_id}_{secrets.token_urlsafe(24)}"
        params = (key_id, owner, agent_id, normal, name, hash_key(secret))
        row = await fetch_one(self._pool, sql.INSERT_KEY, params)
        assert row is not None
        return PublishableKey.from_row(row), secret

    async def list(self, *, include_revoked: bool = False) -> builtins.list[PublishableKey]:
        """Every key, oldest first."""
        rows = await fetch_all(self._pool, sql.LIST_KEYS, (include_revoked,))
        return [PublishableKey.from_row(r) for r in rows]

    async def revoke(self, key_id: str) -> PublishableKey:
        """Revoke a key at once; its widgets are refused from now on."""
        row = await fetch_one(self._pool, sql.REVOKE_KEY, (key_id,))
        if row is None:
            raise NotFound(f"publishable key {key_id!r} not found", key_id=key_id)
        return PublishableKey.from_row(row)

    async def authenticate(self, secret: str) -> PublishableKey | None:
        """The key a secret stands for, or None if unknown or revoked."""
        if not secret.startswith("pk_"):
            return None
        row = await fetch_one(self._pool, sql.AUTHENTICATE_KEY, (hash_key(secret),))
        return PublishableKey.from_row(row) if row else None
