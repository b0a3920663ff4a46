"""API keys: created, listed and revoked by operators; checked on every request.

A key is shown once, at creation: ``sg_<key_id>_<secret>``. Only its sha256 is stored.
Each key carries an owner (every agent and session belongs to one) and roles; ``admin``
opens the admin routes, other role names are matched against tool permissions.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.db import Pool, fetch_all, fetch_one
from runtime.errors import InvalidInput, NotFound
from runtime.keys import sql

__all__ = ["ADMIN_ROLE", "ApiKey", "KeyStore", "Principal", "hash_key"]

ADMIN_ROLE = "admin"
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the owner their resources belong to and their roles."""

    owner: str
    roles: frozenset[str]
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    owner: str
    name: str | None
    roles: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiKey:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def hash_key(secret: str) -> str:
    """What is stored of a key's secret: its sha256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_roles(roles: Iterable[str]) -> list[str]:
    out = sorted(set(roles))
    for role in out:
        if not _ROLE_RE.fullmatch(role):
            raise InvalidInput(f"invalid role {role!r}: lowercase letters, digits, _ . -")
    return out


class KeyStore:
    """The ``api_keys`` table."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create(
        self, owner: str, *, roles: Iterable[str] = (), name: str | None = None
    ) -> tuple[ApiKey, str]:
        """Store a new key; return it and its secret (the only time the secret is known)."""
        if not _OWNER_RE.fullmatch(owner):
            raise InvalidInput(f"invalid owner {owner!r}", field="owner")
        key_id = secrets.token_hex(6)
        secret = f"sg_{key_id}_{secrets.token_urlsafe(24)}"
        params = (key_id, owner, name, _check_roles(roles), hash_key(secret))
        row = await fetch_one(self._pool, sql.INSERT_KEY, params)
        assert row is not None
        return ApiKey.from_row(row), secret

    async def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Every key, oldest first."""
        rows = await fetch_all(self._pool, sql.LIST_KEYS, (include_revoked,))
        return [ApiKey.from_row(r) for r in rows]

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key at once; requests carrying it are refused from now on."""
        row = await fetch_one(self._pool, sql.REVOKE_KEY, (key_id,))
        if row is None:
            raise NotFound(f"key {key_id!r} not found", key_id=key_id)
        return ApiKey.from_row(row)

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal a secret stands for, or None if unknown or revoked."""
        row = await fetch_one(self._pool, sql.AUTHENTICATE, (hash_key(secret),))
        if row is None:
            return None
        return Principal(owner=row["owner"], roles=frozenset(row["roles"]), key_id=row["key_id"])

    async def any_active(self) -> bool:
        """Whether at least one key is configured (auth is on when there is)."""
        row = await fetch_one(self._pool, sql.ANY_ACTIVE_KEY)
        return bool(row and row["any"])
