"""A real uvicorn server on a free loopback port, in the test's event loop.

Tests drive the app over real HTTP and WebSocket connections, through its real lifespan,
exactly as a deployed server runs it (one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

__all__ = ["ServerStartupFailed", "running_server"]


class ServerStartupFailed(RuntimeError):
    """The app's lifespan failed at start-up (its error is in the log)."""


class _Server(uvicorn.Server):
    async def startup(self, sockets: Any = None) -> None:
        # uvicorn ends the *process* (sys.exit) when the lifespan fails; in a test that must
        # be an ordinary error the test can expect.
        try:
            await super().startup(sockets)
        except SystemExit as exc:
            raise ServerStartupFailed("the app failed to start; see the log") from exc


@asynccontextmanager
async def running_server(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield its base URL; shut it down on exit."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        ws="websockets-sansio",
        # Leave logging to pytest: uvicorn's own config stops its records reaching caplog.
        log_config=None,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # start-up failed: raise its error
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, ServerStartupFailed):
            await asyncio.wait_for(task, timeout=30)
