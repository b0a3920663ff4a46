"""LangGraph Server API: ``GET /ok`` and ``GET /info`` (no authentication, as LangGraph's).

Clients (Studio first of all) call ``/info`` before anything else to learn what the server
supports: assistants yes, crons and LangSmith tracing no.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter

router = APIRouter(tags=["langgraph: meta"])


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
        "version": _version("sessiongraph") or "0.1.0",
        "langgraph_py_version": _version("langgraph"),
        "flags": {
            "assistants": True,
            "crons": False,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
        },
        "host": {
            "kind": "sessiongraph",
            "project_id": None,
            "host_revision_id": None,
            "revision_id": None,
            "tenant_id": None,
        },
    }
