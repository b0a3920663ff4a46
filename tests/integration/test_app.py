"""The FastAPI app through its real lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from api.app import create_app
from runtime import Settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


class TestOperations:
    async def test_healthz(self, client: httpx.AsyncClient) -> None:
        """/healthz answers while the process is up."""
        response = await client.get("/healthz")
        assert response.status_code == 200 and response.json() == {"status": "ok"}

    async def test_readyz(self, client: httpx.AsyncClient) -> None:
        """/readyz reports the database reachable and the schema current."""
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"

    async def test_unknown_route_is_json_404(self, client: httpx.AsyncClient) -> None:
        """An unknown path is a 404, not a 500."""
        assert (await client.get("/nope")).status_code == 404

    async def test_openapi_lists_operations(self, client: httpx.AsyncClient) -> None:
        """The OpenAPI schema describes what exists."""
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert {"/healthz", "/readyz"} <= set(paths)
