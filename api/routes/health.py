"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep
from runtime.database import SCHEMA_VERSION

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database answers and its schema is current",
    responses={503: {"description": "Not ready"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready = await runtime.ready()
    body = {"status": "ready" if ready else "not ready", "schema_version": SCHEMA_VERSION}
    return JSONResponse(body, status_code=200 if ready else 503)
