"""What the commands share: the runtime they open, and the CLI's own kind of failure."""

from __future__ import annotations

import argparse
from contextlib import AbstractAsyncContextManager

from runtime import Runtime, Settings

__all__ = ["Failure", "Subparsers", "open_runtime"]

Subparsers = argparse._SubParsersAction  # the type of what ``add_subparsers`` returns


class Failure(Exception):
    """A problem the CLI itself found (a bad file, an unreachable server): exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def open_runtime(*, project: bool = False) -> AbstractAsyncContextManager[Runtime]:
    """The runtime on the configured database, without the background sweeper.

    Administration (keys, migrations, sweeps) runs without the project's langgraph.json, so
    it never depends on the project's code or MCP servers; ``project=True`` for commands that
    run or validate agents.
    """
    return Runtime.open(Settings(), sweeper=False, project=project)
