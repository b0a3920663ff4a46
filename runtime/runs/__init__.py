"""Runs: turns started through the LangGraph Server API, recorded in Postgres."""

from __future__ import annotations

from runtime.runs.manager import RunManager
from runtime.runs.model import (
    MULTITASK_STRATEGIES,
    RUN_STATUSES,
    Run,
    RunHandle,
    RunRequest,
)

__all__ = [
    "MULTITASK_STRATEGIES",
    "RUN_STATUSES",
    "Run",
    "RunHandle",
    "RunManager",
    "RunRequest",
]
