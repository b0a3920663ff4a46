"""API keys and the principal they stand for."""

from __future__ import annotations

from runtime.keys.store import (
    ADMIN_ROLE,
    KEY_CACHE_SECONDS,
    ApiKey,
    KeyStore,
    Principal,
    hash_key,
)

__all__ = [
    "ADMIN_ROLE",
    "KEY_CACHE_SECONDS",
    "ApiKey",
    "KeyStore",
    "Principal",
    "hash_key",
]
