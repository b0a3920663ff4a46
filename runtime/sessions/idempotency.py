"""Idempotency keys: safe retries of turns.

A client that sends a turn with a key and loses the answer (a dropped connection, a
timeout) sends it again with the same key. The first attempt's result is stored under
``(owner, session_id, key)`` with a hash of its request, in the same transaction as the
turn's release (:meth:`~runtime.sessions.lease.SessionLeases.release`): a turn that was
acknowledged has its key, and a key always names a committed turn. Keys are kept
:data:`KEY_RETENTION_SECONDS` (24 h) and are deleted with their session.

The rules every keyed request follows, whatever it creates (a turn here, a LangGraph API run
in :mod:`runtime.runs.keys`): :func:`check_key` (what a key is), :func:`request_hash` (what
"the same request" means), :func:`check_same_request` (the same key with another request is
``InvalidInput``, a 422), :func:`keyed_session_id` (a new session named after its key).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from runtime.db import Db, Row, fetch_one
from runtime.errors import InvalidInput
from runtime.sessions import sql

__all__ = [
    "KEY_RETENTION_SECONDS",
    "MAX_KEY_LENGTH",
    "KeyedResult",
    "check_key",
    "check_same_request",
    "find_keyed",
    "keyed_session_id",
    "record_keyed",
    "request_hash",
]

# How long a key answers for its turn (documented in the README: 24 h).
KEY_RETENTION_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class KeyedResult:
    """A turn's result to keep under its idempotency key."""

    key: str
    request_hash: str
    result: dict[str, Any]


def check_key(key: str) -> str:
    """The key, if it is 1 to :data:`MAX_KEY_LENGTH` printable ASCII characters.

    Raises:
        InvalidInput: any other key.
    """
    if not 0 < len(key) <= MAX_KEY_LENGTH or not all(" " < c <= "~" for c in key):
        raise InvalidInput(
            f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            "without spaces",
            field="idempotency_key",
        )
    return key


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def request_hash(asked: Mapping[str, Any]) -> str:
    """The hash of what a keyed request asks for (its fields as the caller sent them): two
    requests are the same when their hashes are."""
    text = json.dumps(asked, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_request(kept_hash: str, given_hash: str | None, **details: Any) -> None:
    """Refuse a key used before with another request.

    Raises:
        InvalidInput: the hashes differ (``details`` name where: session, thread).
    """
    if kept_hash != given_hash:
        raise InvalidInput(
            "this idempotency key was already used with a different request; "
            "use a new key for a new request",
            field="idempotency_key",
            **details,
        )


def keyed_session_id(key: str) -> str:
    """The id of the session a keyed request without one starts: the same for every retry
    (a retry must find its first attempt's session, not start another)."""
    return f"ses_{hashlib.sha256(check_key(key).encode()).hexdigest()[:32]}"


async def find_keyed(
    db: Db, owner: str, session_id: str, key: str, request_hash: str
) -> dict[str, Any] | None:
    """The result kept under ``key``; None when no turn committed with it (or it lapsed).

    Raises:
        InvalidInput: the key was used with a different request.
    """
    row = await fetch_one(
        db,
        sql.SELECT_TURN_KEY,
        {"owner": owner, "sid": session_id, "key": key, "keep": KEY_RETENTION_SECONDS},
    )
    if row is None:
        return None
    check_same_request(row["request_hash"], request_hash, session_id=session_id)
    result: dict[str, Any] = row["result"]
    return result


async def record_keyed(
    conn: AsyncConnection[Row], owner: str, session_id: str, keyed: KeyedResult
) -> None:
    """Send the key's row (and the purge of the session's lapsed keys) on ``conn``, inside
    the release's pipeline and transaction; nothing is read back."""
    params = {
        "owner": owner,
        "sid": session_id,
        "key": keyed.key,
        "hash": keyed.request_hash,
        "result": Jsonb(keyed.result),
        "keep": KEY_RETENTION_SECONDS,
    }
    await conn.execute(sql.PURGE_TURN_KEYS, params)
    await conn.execute(sql.RECORD_TURN_KEY, params)
