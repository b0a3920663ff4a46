"""Operations: liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import RuntimeDep
from runtime.db import SCHEMA_VERSION

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


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    registry = request.app.state.metrics
    await registry.refresh(runtime)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
