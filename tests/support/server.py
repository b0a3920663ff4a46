"""A real uvicorn server on a free loopback port, in the test's event loop.

Tests drive the app over real HTTP and WebSocket connections, through its real lifespan,
exactly as a deployed server runs it (one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

__all__ = ["running_server"]


@asynccontextmanager
async def running_server(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield its base URL; shut it down on exit."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
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
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)
