"""The FastAPI application: ``create_app()`` and its lifespan.

The lifespan owns the :class:`~runtime.Runtime` (pool, checkpointer, caches, sweeper) and
hands it to handlers as typed lifespan state, never as a module global.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import health
from runtime import Runtime, Settings, get_settings

__all__ = ["State", "create_app"]


class State(TypedDict):
    runtime: Runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` defaults to the environment's."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with Runtime.open(settings or get_settings()) as runtime:
            yield {"runtime": runtime}

    app = FastAPI(
        title="sessiongraph",
        version="0.1.0",
        summary="A LangGraph agent runtime with checkpointed sessions on Postgres.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    return app
