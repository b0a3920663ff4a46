"""A widget's visitors: the sessions a publishable key starts, their tokens, and rate limits.

- **Starting.** :meth:`WidgetVisitors.start` creates a session of the key's agent for the
  key's owner, with metadata captured from the request (``domain`` from ``Origin``, the
  visitor's ``ip``, ``user_agent``, ``widget_key``), and returns a per-visitor session token.
  Only its sha256 is stored, beside the key that started the session.
- **Chatting.** :meth:`WidgetVisitors.check` lets a request in only with the token of a
  session *this key* started; anything else is ``NotFound`` (never telling whether the
  session exists), so a widget can neither list nor read other sessions.
- **Limits.** :meth:`WidgetVisitors.limit` counts each request against its key and its IP
  in fixed one-minute windows kept in Postgres (so every replica counts together);
  past a limit, ``RateLimited`` with the seconds to wait.
- **The visitor's IP** (:func:`client_ip`) is the connection's address, unless that address
  is a trusted proxy: then the right-most ``X-Forwarded-For`` address that is not one.
"""

from __future__ import annotations

import hmac
import ipaddress
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from runtime.db import Pool, execute, fetch_one
from runtime.errors import NotFound, RateLimited
from runtime.ids import new_id
from runtime.keys import hash_key
from runtime.sessions import Session, SessionStore
from runtime.widgets import sql
from runtime.widgets.keys import PublishableKey

__all__ = ["RATE_WINDOW_SECONDS", "Visitor", "WidgetVisitors", "client_ip"]

RATE_WINDOW_SECONDS = 60
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(proxies: Iterable[str]) -> list[_Network]:
    return [ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip()]


def _trusted(address: str, networks: list[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_ip(peer: str | None, forwarded_for: str | None, proxies: Iterable[str]) -> str | None:
    """The visitor's IP: ``peer``, or when ``peer`` is a trusted proxy the right-most address
    of ``X-Forwarded-For`` that is not a trusted proxy (clients can forge the left part)."""
    networks = _networks(proxies)
    if not peer or not forwarded_for or not _trusted(peer, networks):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, networks):
            return hop
    return peer


@dataclass(frozen=True)
class Visitor:
    """Where a widget request comes from."""

    origin: str | None
    ip: str | None
    user_agent: str | None

    def metadata(self, key: PublishableKey) -> dict[str, str]:
        """The session metadata captured for a new session (searchable as any metadata)."""
        out = {"source": "widget", "widget_key": key.key_id}
        domain = urlsplit(self.origin).hostname if self.origin else None
        for name, value in (("domain", domain), ("ip", self.ip)):
            if value:
                out[name] = value
        if self.user_agent:
            out["user_agent"] = self.user_agent[:512]
        return out


class WidgetVisitors:
    """Sessions started by publishable keys (see the module docstring)."""

    def __init__(self, pool: Pool, sessions: SessionStore, *, per_key: int, per_ip: int) -> None:
        self._pool = pool
        self._sessions = sessions
        self._per_key = per_key
        self._per_ip = per_ip

    async def start(self, key: PublishableKey, visitor: Visitor) -> tuple[Session, str]:
        """A new session of the key's agent, and the visitor's token for it."""
        session, _ = await self._sessions.get_or_create(
            key.owner, new_id("web"), agent_id=key.agent_id, metadata=visitor.metadata(key)
        )
        token = f"st_{secrets.token_urlsafe(32)}"
        params = (key.owner, session.session_id, key.key_id, hash_key(token))
        await execute(self._pool, sql.INSERT_VISITOR, params)
        return session, token

    async def check(self, key: PublishableKey, session_id: str, token: str | None) -> None:
        """Let in only the holder of the token of a session this key started.

        Raises:
            NotFound: anything else (the same answer whether the session exists or not).
        """
        row = await fetch_one(self._pool, sql.VISITOR_TOKEN, (key.owner, session_id, key.key_id))
        if row is None or not token or not hmac.compare_digest(row["token_hash"], hash_key(token)):
            raise NotFound(f"session {session_id!r} not found", session_id=session_id)

    async def limit(self, key: PublishableKey, ip: str | None) -> None:
        """Count one request against the key and the IP.

        Raises:
            RateLimited: either is over its limit this minute (``retry_after`` seconds).
        """
        buckets = [(f"key:{key.key_id}", self._per_key, "key")]
        if ip:
            buckets.append((f"ip:{ip}", self._per_ip, "ip"))
        for bucket, allowed, scope in buckets:
            params = {"bucket": bucket, "secs": RATE_WINDOW_SECONDS}
            row = await fetch_one(self._pool, sql.HIT, params)
            assert row is not None
            if row["hits"] > allowed:
                wait = max(int(row["retry_after"]), 1)
                raise RateLimited(
                    f"too many requests for this {scope}: {allowed} a minute; retry in {wait} s",
                    scope=scope,
                    limit=allowed,
                    retry_after=wait,
                )
        if random.random() < 0.01:  # now and then, forget windows long past
            await execute(self._pool, sql.PRUNE_WINDOWS)
