"""API keys: created, listed and revoked by operators; checked on every request.

A key is shown once, at creation: ``sg_<key_id>_<secret>``. Only its sha256 is stored.
Each key carries an owner (every agent and session belongs to one) and roles; ``admin``
opens the admin routes, other role names are matched against tool permissions.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.db import Pool, fetch_all, fetch_one
from runtime.errors import InvalidInput, NotFound
from runtime.keys import sql

__all__ = ["ADMIN_ROLE", "KEY_CACHE_SECONDS", "ApiKey", "KeyStore", "Principal", "hash_key"]

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


# How long a process trusts what it read of the keys: a key revoked (or created) on any
# replica takes effect everywhere within this, and no request pays a round trip for them.
KEY_CACHE_SECONDS = 1.0
_CACHE_ENTRIES = 10_000


class KeyStore:
    """The ``api_keys`` table, read through a :data:`KEY_CACHE_SECONDS` cache."""

    def __init__(self, pool: Pool, cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self._pool = pool
        self._ttl = cache_seconds
        # sha256 -> (principal or None for an unknown or revoked key, read at).
        self._principals: dict[str, tuple[Principal | None, float]] = {}
        self._any_active: tuple[bool, float] | None = None
        # Bumped by every change this process makes: a read that began before a change is
        # not cached after it.
        self._generation = 0

    def _fresh(self, read_at: float) -> bool:
        return time.monotonic() - read_at < self._ttl

    def _forget(self) -> None:
        """Drop what this process read, after it changed the keys itself."""
        self._principals.clear()
        self._any_active = None
        self._generation += 1

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
        self._forget()
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
        self._forget()
        return ApiKey.from_row(row)

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal a secret stands for, or None if unknown or revoked (as of at most
        :data:`KEY_CACHE_SECONDS` ago)."""
        digest = hash_key(secret)
        cached = self._principals.get(digest)
        if cached is not None and self._fresh(cached[1]):
            return cached[0]
        generation = self._generation
        row = await fetch_one(self._pool, sql.AUTHENTICATE, (digest,))
        principal = (
            None
            if row is None
            else Principal(owner=row["owner"], roles=frozenset(row["roles"]), key_id=row["key_id"])
        )
        if generation == self._generation:
            if len(self._principals) >= _CACHE_ENTRIES:
                self._principals.clear()
            self._principals[digest] = (principal, time.monotonic())
        return principal

    async def any_active(self) -> bool:
        """Whether at least one key is configured (auth is on when there is), as of at most
        :data:`KEY_CACHE_SECONDS` ago."""
        if self._any_active is not None and self._fresh(self._any_active[1]):
            return self._any_active[0]
        generation = self._generation
        row = await fetch_one(self._pool, sql.ANY_ACTIVE_KEY)
        active = bool(row and row["any"])
        if generation == self._generation:
            self._any_active = (active, time.monotonic())
        return active
