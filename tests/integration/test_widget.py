"""The web widget: publishable keys over HTTP, then ``/widget.js`` in a real browser.

The API runs on one origin (``http://127.0.0.1:<port>``); test pages are served from another
(``http://127.0.0.1:<other port>``, allowed by the key) and from ``http://localhost:<other
port>`` (not allowed). The browser is Debian's ``chromium`` driven by Playwright; screenshots
go to ``artifacts/widget/``. Auth is off (loopback, no API keys): admin calls act as ``local``.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from api.app import create_app
from runtime import Settings
from tests.support.browser import chromium
from tests.support.server import running_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "widget"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


def widget_settings(settings: Settings, **changes: Any) -> Settings:
    update = {"widget_rate_per_ip": 40, "trusted_proxies": ["127.0.0.1"], **changes}
    return settings.model_copy(update=update)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_server(create_app(widget_settings(settings))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


async def publishable_key(
    api: httpx.AsyncClient, origins: list[str], agent_id: str | None = None
) -> dict[str, Any]:
    if agent_id is None:
        agent_id = uid("agt")
        agent = {"id": agent_id, "name": "Widget agent", "tools": ["calculator"]}
        assert (await api.post("/v1/agents", json=agent)).status_code == 201
    body = {"owner": "local", "agent_id": agent_id, "allowed_origins": origins}
    response = await api.post("/v1/admin/publishable-keys", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def visitor(key: dict[str, Any], origin: str, ip: str, **extra: str) -> dict[str, str]:
    return {"X-Widget-Key": key["key"], "Origin": origin, "X-Forwarded-For": ip, **extra}


class TestPublishableKeys:
    async def test_start_chat_and_read_own_session(self, api: httpx.AsyncClient) -> None:
        """A key starts a session with captured metadata, chats in it, reads it back."""
        key = await publishable_key(api, ["https://shop.example"])
        headers = visitor(key, "https://shop.example", "203.0.113.7", **{"User-Agent": "UA/1"})
        started = await api.post("/v1/widget/sessions", headers=headers)
        assert started.status_code == 201, started.text
        assert started.headers["access-control-allow-origin"] == "https://shop.example"
        session_id, token = started.json()["session_id"], started.json()["token"]
        headers["X-Session-Token"] = token
        url = f"/v1/widget/sessions/{session_id}/messages"
        turn = await api.post(url, headers=headers, json={"content": "what is 2+3?"})
        assert turn.status_code == 200 and turn.json()["reply"] == "The result is 5."
        items = (await api.get(url, headers=headers)).json()["items"]
        assert [m["role"] for m in items] == ["user", "assistant", "tool", "assistant"]
        session = (await api.get(f"/v1/sessions/{session_id}")).json()
        meta = session["metadata"]
        assert meta["domain"] == "shop.example" and meta["ip"] == "203.0.113.7"
        assert meta["user_agent"] == "UA/1" and meta["widget_key"] == key["key_id"]
        found = await api.get("/v1/sessions", params={"metadata": "domain:shop.example"})
        assert session_id in [s["id"] for s in found.json()["items"]]

    async def test_origin_not_allowed_is_403(self, api: httpx.AsyncClient) -> None:
        """A page of another origin (or none) is refused, readable by the page."""
        key = await publishable_key(api, ["https://shop.example"])
        refused = await api.post(
            "/v1/widget/sessions", headers=visitor(key, "https://evil.example", "203.0.113.8")
        )
        assert refused.status_code == 403
        assert refused.headers["access-control-allow-origin"] == "https://evil.example"
        assert refused.json()["error"] == "permission_denied"

    async def test_other_sessions_and_routes_are_closed(self, api: httpx.AsyncClient) -> None:
        """Without the token, or for a session it did not start, a key gets 404; it opens no
        API route."""
        key = await publishable_key(api, ["https://shop.example"])
        headers = visitor(key, "https://shop.example", "203.0.113.9")
        mine = (await api.post("/v1/widget/sessions", headers=headers)).json()
        url = f"/v1/widget/sessions/{mine['session_id']}/messages"
        assert (await api.get(url, headers=headers)).status_code == 404
        wrong = {**headers, "X-Session-Token": "st_wrong"}
        assert (await api.get(url, headers=wrong)).status_code == 404
        assert (await api.put("/v1/sessions/other-1", json={})).status_code == 201
        other = {**headers, "X-Session-Token": mine["token"]}
        assert (
            await api.get("/v1/widget/sessions/other-1/messages", headers=other)
        ).status_code == 404
        bearer = {"Authorization": f"Bearer {key['key']}"}
        assert (await api.get("/v1/sessions", headers=bearer)).status_code == 401
        assert (await api.get("/v1/admin/stats", headers=bearer)).status_code == 401

    async def test_rate_limit_per_ip_is_429_with_retry_after(self, api: httpx.AsyncClient) -> None:
        """Past the per-IP limit a visitor gets 429 with Retry-After; another IP does not."""
        key = await publishable_key(api, ["https://shop.example"])
        headers = visitor(key, "https://shop.example", "198.51.100.1")
        statuses = []
        for _ in range(81):  # at most one window boundary in between: 2 x 40 + 1
            response = await api.post("/v1/widget/sessions", headers=headers)
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[-1] == 429 and int(response.headers["retry-after"]) >= 1
        assert response.json()["error"] == "rate_limited"
        fresh = visitor(key, "https://shop.example", "198.51.100.2")
        assert (await api.post("/v1/widget/sessions", headers=fresh)).status_code == 201

    async def test_revoked_key_is_401(self, api: httpx.AsyncClient) -> None:
        """A revoked key is refused at once."""
        key = await publishable_key(api, ["*"])
        assert (await api.delete(f"/v1/admin/publishable-keys/{key['key_id']}")).is_success
        headers = visitor(key, "https://any.example", "203.0.113.10")
        assert (await api.post("/v1/widget/sessions", headers=headers)).status_code == 401

    async def test_preflight_answers_any_origin(self, api: httpx.AsyncClient) -> None:
        """A preflight carries no key: it is answered; the real request is checked."""
        response = await api.options(
            "/v1/widget/sessions",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-widget-key",
            },
        )
        assert response.status_code == 204
        assert "x-widget-key" in response.headers["access-control-allow-headers"]


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A static file server for the test pages: another origin than the API's."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, server.server_address[1]
    finally:
        server.shutdown()


def write_page(folder: Path, api_url: str, key: str) -> None:
    (folder / "index.html").write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Shop</title></head>"
        "<body><h1>A shop</h1>"
        f"<script src='{api_url}/widget.js' data-key='{key}' data-title='Support'></script>"
        "</body></html>"
    )


class TestWidgetInBrowser:
    @staticmethod
    async def _say(page: Any, text: str, replies: int) -> None:
        await page.fill("#sgw-input", text)
        await page.keyboard.press("Enter")
        await page.wait_for_function(
            f"document.querySelectorAll('.sgw-assistant').length >= {replies} && "
            "!document.querySelector('.sgw-form button').disabled",
            timeout=20_000,
        )

    async def test_two_turns_reload_second_visitor_and_refusals(
        self, settings: Settings, page_server: tuple[Path, int]
    ) -> None:
        """Two streamed turns, reload keeps them, a second context is a new visitor, a
        non-allowed origin is refused, and the rate limit shows its message."""
        folder, port = page_server
        allowed = f"http://127.0.0.1:{port}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        app = create_app(widget_settings(settings, widget_rate_per_ip=12))
        async with running_server(app) as url, httpx.AsyncClient(base_url=url) as api:
            key = await publishable_key(api, [allowed])
            write_page(folder, url, key["key"])
            async with chromium() as browser:
                await self._visit(browser, allowed, port)

    async def _visit(self, browser: Any, allowed: str, port: int) -> None:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{allowed}/index.html")
        await page.get_by_role("button", name="Support").click()
        await self._say(page, "my name is Ada", 1)
        await self._say(page, "what is 2+3?", 2)
        assert await page.locator(".sgw-tool").count() == 1
        assert "The result is 5." in await page.locator(".sgw-assistant").last.inner_text()
        await page.screenshot(path=str(ARTIFACTS / "two-turns.png"))

        await page.reload()
        await page.get_by_role("button", name="Support").click()
        await page.wait_for_function("document.querySelectorAll('.sgw-user').length == 2")
        await page.screenshot(path=str(ARTIFACTS / "after-reload.png"))

        other = await (await browser.new_context()).new_page()
        await other.goto(f"{allowed}/index.html")
        await other.get_by_role("button", name="Support").click()
        await self._say(other, "what is my name?", 1)
        assert "Ada" not in await other.locator(".sgw-assistant").last.inner_text()
        ids = [await p.evaluate("Object.values(localStorage)[0]") for p in (page, other)]
        assert ids[0] != ids[1]

        refused = await (await browser.new_context()).new_page()
        await refused.goto(f"http://localhost:{port}/index.html")
        await refused.get_by_role("button", name="Support").click()
        await refused.fill("#sgw-input", "hello")
        await refused.keyboard.press("Enter")
        alert = refused.get_by_role("alert")
        await alert.filter(has_text="not allowed").wait_for(timeout=10_000)
        await refused.screenshot(path=str(ARTIFACTS / "origin-refused.png"))

        for _ in range(12):  # the IP's limit (12 a minute) is reached within these
            await page.fill("#sgw-input", "hi")
            await page.keyboard.press("Enter")
            await page.wait_for_function("!document.querySelector('.sgw-form button').disabled")
            if "Too many" in await page.locator(".sgw-error").inner_text():
                break
        alert = page.get_by_role("alert")
        assert "try again in" in await alert.inner_text()
        await page.screenshot(path=str(ARTIFACTS / "rate-limited.png"))
