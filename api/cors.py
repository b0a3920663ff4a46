"""CORS for browser clients (agent-chat-ui, ``useStream``, Studio), as ``langgraph dev`` has it.

- ``SESSIONGRAPH_CORS_ORIGINS`` set: exactly those origins, with credentials (unless ``*``).
- Not set, on a server that runs open (no API key exists, and a loopback bind or
  ``allow_open``): any origin, without credentials, as ``langgraph dev`` allows. Whether a key
  exists is read from the runtime at most every few seconds, so creating the first key turns
  this off without a restart; while the database is unreachable the last answer stands.
- Otherwise: no CORS headers (and a preflight gets the app's 405).

Browser code may read the headers the LangGraph SDK needs: ``Content-Location`` (the run id
of a run just created), ``X-Pagination-Total`` / ``X-Pagination-Next``, ``X-Request-ID``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import may_run_open
from runtime import Settings
from runtime.db import database_error

__all__ = ["EXPOSED_HEADERS", "BrowserCorsMiddleware"]

EXPOSED_HEADERS = ("Content-Location", "X-Pagination-Total", "X-Pagination-Next", "X-Request-ID")
_OPEN_CHECK_SECONDS = 5.0


def _cors(app: ASGIApp, origins: list[str], *, private_network: bool = False) -> CORSMiddleware:
    return CORSMiddleware(
        app,
        allow_origins=origins,
        # A page on a public origin calling a loopback server (Chrome's Private Network
        # Access preflight), as Studio does against `langgraph dev`.
        allow_private_network=private_network,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=list(EXPOSED_HEADERS),
        allow_credentials="*" not in origins,
        max_age=600,
    )


class BrowserCorsMiddleware:
    """Answer CORS (preflights included, on every route) per the rules in the module
    docstring."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self._listed = _cors(app, settings.cors_origins) if settings.cors_origins else None
        # Any origin, no credentials: what `langgraph dev` answers.
        dev = not settings.cors_origins and may_run_open(settings)
        self._any = _cors(app, ["*"], private_network=True) if dev else None
        self._open = False
        self._checked_at = float("-inf")

    async def _runs_open(self, scope: Scope) -> bool:
        """Whether no API key exists (cached for a few seconds)."""
        now = time.monotonic()
        if now - self._checked_at >= _OPEN_CHECK_SECONDS:
            state: dict[str, Any] = scope.get("state") or {}
            runtime = state.get("runtime")
            if runtime is None:
                return False
            try:
                self._open = not await runtime.keys.any_active()
            except Exception as exc:
                if database_error(exc) is None:
                    raise
                # The database is down: the last answer stands (asked again in a few
                # seconds), and the request goes on to answer 503 itself if it needs it.
            self._checked_at = now
        return self._open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._listed is not None:
                await self._listed(scope, receive, send)
                return
            if self._any is not None and await self._runs_open(scope):
                await self._any(scope, receive, send)
                return
        await self.app(scope, receive, send)
