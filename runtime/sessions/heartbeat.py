"""Holder liveness: each server process beats a row of ``replicas``, so its leases die with it.

A turn's lease names its holder (``sessions.lease_holder``); the lease is free as soon as
that holder's last beat is older than its bound (``liveness``:
``SESSIONGRAPH_HEARTBEAT_TIMEOUT_SECONDS``), instead of when the lease lapses (the lease
timeout, which stays the bound for a holder that is alive but stuck). The rule itself is
``HOLDER_ALIVE`` in :mod:`runtime.sessions.sql`, part of ``LEASE_HELD`` / ``LEASE_FREE``.

The beat runs in a thread of its own on a connection of its own (plain autocommit
statements, so it works through a transaction-mode pooler), never on the event loop: a
loop busy with turns must not make a live process look dead. A process that was only
paused (SIGSTOP, a long GC) and lost its leases meanwhile is fenced, not trusted: every
write of its turn is conditioned on its lease token (``RELEASE``, ``FENCE``), and a write it
was paused inside is ended by the server after the same bound (``FENCE`` sets it).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

import psycopg

from runtime.db.pool import SET_SEARCH_PATH, TCP_KEEPALIVES
from runtime.sessions import sql
from runtime.settings import Settings

__all__ = ["Heartbeat", "heartbeat_for", "new_holder"]

log = logging.getLogger(__name__)

# Rows of processes silent this long are deleted when a process starts.
FORGET_AFTER_SECONDS = 3600.0


def new_holder() -> str:
    """A holder name: host and pid (for people reading the table), and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Heartbeat:
    """This process's row in ``replicas``, beaten every third of ``liveness_seconds``.

    Args:
        url: the database (the pool's URL).
        connect_kwargs: the pool's connection options (prepare threshold, keepalives).
        search_path: a statement that sets the schema on a new connection, if any.
    """

    def __init__(
        self,
        url: str,
        *,
        liveness_seconds: float,
        connect_kwargs: dict[str, Any] | None = None,
        search_path: tuple[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.holder = new_holder()
        self.liveness_seconds = liveness_seconds
        self.interval = liveness_seconds / 3
        self._url = url
        self._kwargs = {**(connect_kwargs or {}), "autocommit": True}
        self._search_path = search_path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self.beats = 0
        self.failures = 0

    def start(self) -> None:
        """Beat once (so the row exists before any lease names it), then keep beating."""
        self._beat(raise_errors=True)
        self._connection().execute(sql.PURGE_REPLICAS, {"secs": FORGET_AFTER_SECONDS})
        self._thread = threading.Thread(
            target=self._run, name="sessiongraph-heartbeat", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and delete the row (a clean shutdown: no lease of ours is left)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._connection().execute(sql.FORGET_REPLICA, {"holder": self.holder})
        except psycopg.Error as exc:
            # Postgres is gone: the row goes stale by itself within the bound.
            log.warning("heartbeat: could not delete this process's row (%s)", exc)
        finally:
            self._close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat(raise_errors=False)

    def _beat(self, *, raise_errors: bool) -> None:
        try:
            self._connection().execute(
                sql.REPLICA_BEAT, {"holder": self.holder, "liveness": self.liveness_seconds}
            )
        except psycopg.Error as exc:
            self._close()
            if raise_errors:
                raise
            self.failures += 1
            if self.failures == 1:  # once per outage, no traceback
                log.warning("heartbeat: cannot beat (%s); retrying", exc)
            return
        if self.failures:
            log.info("heartbeat: beating again after %d failed beats", self.failures)
        self.failures = 0
        self.beats += 1

    def _connection(self) -> psycopg.Connection[Any]:
        """The beat's own connection, opened on first use and after a failure."""
        if self._conn is None or self._conn.closed:
            timeout = max(2, round(self.liveness_seconds))
            conn = psycopg.connect(self._url, connect_timeout=timeout, **self._kwargs)
            if self._search_path is not None:
                conn.execute(*self._search_path)
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def heartbeat_for(url: str, settings: Settings) -> Heartbeat:
    """This process's heartbeat on ``url``, connected as the pool connects (keepalives, the
    schema), preparing nothing (its one statement goes through any pooler)."""
    schema = settings.database_schema if settings.database_pooler != "transaction" else None
    return Heartbeat(
        url,
        liveness_seconds=settings.heartbeat_timeout_seconds,
        connect_kwargs={"prepare_threshold": None, **TCP_KEEPALIVES},
        search_path=(SET_SEARCH_PATH, (schema,)) if schema else None,
    )
