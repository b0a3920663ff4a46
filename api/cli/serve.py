"""``serve``, ``migrate`` and ``sweep``: run the service, and keep its database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path

from api.cli._common import Subparsers, open_runtime
from api.middleware import log_config
from runtime import Settings
from runtime.db import embedded_postgres
from runtime.project import load_project
from runtime.tools import default_registry

# How long uvicorn's supervisor waits for a worker to answer its health check before it kills
# and replaces it. uvicorn's default (5 s) is shorter than a new worker takes to import the
# stack on a busy 2-core machine: the bench's soak saw one of two workers killed and
# restarted every 5.5 s for its whole run (each restart re-importing everything), so only
# one worker ever served. The check is answered by a thread of the worker, not its event
# loop, so a longer bound does not hide a busy worker; it still replaces a dead one at once.
WORKER_HEALTHCHECK_SECONDS = 60

__all__ = ["add_parsers"]

log = logging.getLogger("sessiongraph")


async def _check_project(settings: Settings) -> None:
    """Load the project once before any worker starts: bad configuration stops start-up
    here with one message naming the entry, before anything half-starts."""
    async with AsyncExitStack() as stack:
        await load_project(settings, default_registry(), stack)


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """SIGTERM and SIGINT end serving, never the process: yield the signals received.

    uvicorn takes both while it serves (stop accepting, finish requests up to the grace,
    the lifespan drains turns) and, once done, raises them again to the handler it found:
    this one, which only notes them, so the embedded Postgres is stopped and the process
    exits 0 instead of dying on the signal with its Postgres left running. A second
    signal (a terminal and ``uv run`` both deliver one, and so does a signal to the whole
    process group) changes nothing.
    """
    received: list[int] = []
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda sig, _frame: received.append(sig)) for sig in stops}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.config:
        # Workers build their settings from the environment: hand them the file.
        os.environ["SESSIONGRAPH_CONFIG"] = str(Path(args.config).resolve())
    settings = Settings()
    asyncio.run(_check_project(settings))
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    workers = args.workers or settings.workers
    with ExitStack() as stack:
        received = stack.enter_context(_stop_signals())
        if not settings.database_url:
            url = stack.enter_context(embedded_postgres(settings.data_dir))
            # Workers build their settings from the environment: hand them the URL.
            os.environ["DATABASE_URL"] = url
            log.info("embedded Postgres in %s", settings.data_dir.resolve())
        # Workers decide whether auth may be off from the address they serve on.
        os.environ["SESSIONGRAPH_HOST"] = host
        if received:  # stopped while starting
            return 0
        log.info("serving on http://%s:%d with %d worker(s)", host, port, workers)
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=None if args.reload else workers,
            reload=args.reload,
            log_level=settings.log_level.lower(),
            log_config=log_config(settings.log_level),
            proxy_headers=True,
            # Whole seconds, and never None (which waits forever); the lifespan then gives
            # the turns still running the grace again before it cancels them.
            timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace_seconds)),
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
        if received:
            log.info("stopping on %s", signal.Signals(received[0]).name)
    return 0


async def _migrate() -> int:
    async with open_runtime() as rt:
        ready = await rt.ready()
    print("schema is current" if ready else "schema is NOT current")
    return 0 if ready else 1


async def _sweep(idle_hours: float | None) -> int:
    async with open_runtime() as rt:
        result = await rt.sweep(idle_seconds=None if idle_hours is None else idle_hours * 3600)
    print(f"removed {result.count} session(s)")
    for owner, session_id in result.sessions:
        print(f"  {owner}/{session_id}")
    return 0


def add_parsers(sub: Subparsers) -> None:
    """The ``serve``, ``migrate`` and ``sweep`` commands."""
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="bind address (SESSIONGRAPH_HOST)")
    serve.add_argument("--port", type=int, help="port (SESSIONGRAPH_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (SESSIONGRAPH_WORKERS)")
    serve.add_argument("--reload", action="store_true", help="reload on code changes (dev)")
    serve.add_argument(
        "--config",
        help="the project's langgraph.json (SESSIONGRAPH_CONFIG; default ./langgraph.json)",
    )
    serve.set_defaults(run=_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    migrate.set_defaults(run=lambda a: asyncio.run(_migrate()))

    sweep = sub.add_parser("sweep", help="delete expired sessions and their checkpoints now")
    sweep.add_argument(
        "--idle-hours",
        type=float,
        help="instead of expired sessions, delete those idle at least this long",
    )
    sweep.set_defaults(run=lambda a: asyncio.run(_sweep(a.idle_hours)))
