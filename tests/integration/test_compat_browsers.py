"""Browser clients out of the box: CORS as ``langgraph dev`` answers it on a dev server, only
the configured origins once API keys exist, and the headers the LangGraph SDK reads in a
browser (``Content-Location`` on every run-creating response) exposed."""

from __future__ import annotations

import httpx
from langgraph_sdk import get_client

from api.app import create_app
from runtime import Runtime, Settings
from tests.support.server import running_server

PAGE = "http://127.0.0.1:5173"  # a page on another origin (agent-chat-ui's dev server)
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,x-api-key",
}


def exposed(response: httpx.Response) -> set[str]:
    raw = response.headers.get("access-control-expose-headers", "")
    return {h.strip().lower() for h in raw.split(",") if h.strip()}


class TestDevServerCors:
    async def test_any_origin_on_an_open_loopback_server(self, http: httpx.AsyncClient) -> None:
        """No keys, loopback bind, no CORS setting: every preflight is answered for any
        origin, on every route, and the SDK's headers are readable."""
        for path in ("/threads", "/threads/search", "/runs/stream", "/info", "/v1/sessions"):
            response = await http.options(path, headers=PREFLIGHT)
            assert response.status_code == 200, (path, response.text)
            assert response.headers["access-control-allow-origin"] == "*"
            assert "POST" in response.headers["access-control-allow-methods"]
        simple = await http.get("/info", headers={"Origin": PAGE})
        assert simple.headers["access-control-allow-origin"] == "*"
        assert {"content-location", "x-pagination-total", "x-pagination-next"} <= exposed(simple)

    async def test_every_run_creating_response_has_content_location(self, server_url: str) -> None:
        """Background, wait and stream runs, on a thread or stateless, name the run in
        ``Content-Location``, which the SDK reads for the run id."""
        client = get_client(url=server_url)
        thread = await client.threads.create()
        tid = thread["thread_id"]
        body = {"assistant_id": "react", "input": {"messages": [{"role": "user", "content": "hi"}]}}
        seen = []
        async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
            for path in (
                f"/threads/{tid}/runs/wait",
                f"/threads/{tid}/runs/stream",
                f"/threads/{tid}/runs",
                "/runs/wait",
                "/runs/stream",
                "/runs",
            ):
                response = await http.post(path, json=body, headers={"Origin": PAGE})
                assert response.status_code == 200, (path, response.text)
                location = response.headers["content-location"]
                assert "/runs/" in location, path
                assert "content-location" in exposed(response)
                seen.append(location)
                if path.startswith("/threads"):  # a stateless run's thread goes with it
                    await client.runs.join(*location.strip("/").split("/")[1::2])
        assert len(set(seen)) == len(seen)


class TestKeyedServerCors:
    async def test_only_listed_origins_once_keys_exist(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """With a key, no CORS setting means no CORS; with one, only its origins."""
        s = settings.model_copy(update={"database_url": fresh_database})
        async with Runtime.open(s, sweeper=False) as rt:
            await rt.keys.create("alice", roles=[])
        async with (
            running_server(create_app(s)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            refused = await http.options("/threads", headers=PREFLIGHT)
            assert "access-control-allow-origin" not in refused.headers
        listed = s.model_copy(update={"cors_origins": [PAGE]})
        async with (
            running_server(create_app(listed)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            allowed = await http.options("/threads", headers=PREFLIGHT)
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == PAGE
            other = await http.options(
                "/threads", headers={**PREFLIGHT, "Origin": "https://evil.example"}
            )
            assert "access-control-allow-origin" not in other.headers
