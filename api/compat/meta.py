"""LangGraph Server API: ``GET /ok`` and ``GET /info`` (no authentication, as LangGraph's).

Clients (Studio first of all) call ``/info`` before anything else to learn what the server
supports: assistants yes, crons and LangSmith tracing no.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter

router = APIRouter(tags=["langgraph: meta"])

# The LangGraph Server API revision these routes follow (langgraph-api's version numbers):
# Studio reads ``version`` as the server's API level and turns features off below 0.11.
API_VERSION = "0.16.0"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@router.get("/ok", summary="Liveness, as LangGraph servers answer it")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@router.get("/info", summary="Server version and the optional features it supports")
async def info() -> dict[str, Any]:
    return {
        "version": API_VERSION,
        "sessiongraph_version": _version("sessiongraph") or "0.1.0",
        "langgraph_py_version": _version("langgraph"),
        "flags": {
            "assistants": True,
            "crons": False,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
            "langsmith_tracing_session_on_runs": False,
        },
        "host": {
            "kind": "sessiongraph",
            "project_id": None,
            "host_revision_id": None,
            "revision_id": None,
            "tenant_id": None,
        },
    }
