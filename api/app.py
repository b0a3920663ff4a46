"""The FastAPI application: ``create_app()`` and its lifespan.

The lifespan owns the :class:`~runtime.Runtime` (pool, checkpointer, caches, sweeper) and
hands it to handlers as typed lifespan state, never as a module global. At start-up it
decides whether the server may run without API keys (see :mod:`api.auth`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI

from api import compat
from api.auth import may_run_open
from api.cors import BrowserCorsMiddleware
from api.errors import install_error_handlers
from api.metrics import Metrics
from api.middleware import BodyLimitMiddleware, PlainTextJsonMiddleware, RequestIdMiddleware
from api.routes import admin, agents, chat_completions, health, messages, sessions, widget, ws
from api.routes import tools as tool_routes
from api.widget_cors import WidgetCorsMiddleware
from runtime import Runtime, Settings, get_settings
from runtime.tools import ToolRegistry

__all__ = ["OpenServerRefused", "State", "create_app"]

log = logging.getLogger("sessiongraph")


class State(TypedDict):
    runtime: Runtime


class OpenServerRefused(RuntimeError):
    """No API key exists and the server is bound to a public address."""


async def _check_auth(runtime: Runtime) -> None:
    settings = runtime.settings
    if await runtime.keys.any_active():
        log.info("authentication is on: requests need an API key")
        return
    if may_run_open(settings):
        log.warning(
            "authentication is OFF: no API keys exist and the server %s; every caller acts "
            "as owner 'local' with the admin role. Create a key with "
            "`sessiongraph keys create --owner NAME` to turn it on.",
            "was told to run open" if settings.allow_open else f"is bound to {settings.host}",
        )
        return
    raise OpenServerRefused(
        f"refusing to serve on {settings.host} without API keys: create one with "
        "`sessiongraph keys create --owner NAME`, bind to 127.0.0.1, or set "
        "SESSIONGRAPH_ALLOW_OPEN=true to run open on purpose"
    )


def create_app(settings: Settings | None = None, *, tools: ToolRegistry | None = None) -> FastAPI:
    """Build the app; ``settings`` defaults to the environment's, ``tools`` to the built-ins."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with Runtime.open(settings, tools=tools) as runtime:
            await _check_auth(runtime)
            metrics.attach(runtime)
            yield {"runtime": runtime}

    app = FastAPI(
        title="sessiongraph",
        version="0.1.0",
        summary="A LangGraph agent runtime with checkpointed sessions on Postgres.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    routers = (health, agents, tool_routes, sessions, messages, ws, admin, chat_completions, widget)
    for module in routers:
        app.include_router(module.router)
    # The LangGraph Server API (assistants, threads, runs, store) at the root, in
    # /openapi.json under its "langgraph: ..." tags.
    app.include_router(compat.router)
    app.add_middleware(PlainTextJsonMiddleware, prefixes=compat.PATH_PREFIXES)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(BrowserCorsMiddleware, settings=settings)
    # Outside the CORS middleware: widget routes answer any page's preflight; the key decides.
    app.add_middleware(WidgetCorsMiddleware)
    # Outermost, so every response (errors and CORS preflights included) carries the id.
    app.add_middleware(RequestIdMiddleware)
    return app
