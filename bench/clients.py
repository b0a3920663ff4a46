"""The clients the workloads drive a server with.

A :class:`Client` opens a session and runs turns in it. :class:`NativeClient` speaks
sessiongraph's ``/v1`` API through one shared keep-alive client (a minimal one of our own by
default, or ``httpx.AsyncClient``; JSON through orjson); :class:`SdkClient` speaks the
LangGraph API through the official ``langgraph_sdk`` client (``threads.create`` +
``runs.wait``), for the peers and for sessiongraph's LangGraph-compatible surface.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from bench.rawhttp import RawHttp

try:
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - orjson comes with langgraph-sdk
    import json

    def _loads(data: bytes) -> Any:
        return json.loads(data)

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


__all__ = [
    "Client",
    "NativeClient",
    "NotAvailable",
    "SdkClient",
    "TurnFailed",
    "dumps",
    "loads",
]

loads = _loads
dumps = _dumps


class TurnFailed(Exception):
    """A turn answered an error (status and body in the message)."""


class NotAvailable(Exception):
    """The server does not offer this API (e.g. a 404 on the LangGraph-compatible paths)."""


class Client(Protocol):
    """What a workload needs from a server: sessions and turns."""

    name: str

    async def new_session(self) -> str:
        """A fresh session (or thread) id to run turns in."""
        ...

    async def turn(self, session: str, text: str) -> None:
        """Run one turn and wait for its complete answer; raise :class:`TurnFailed` on error."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


class NativeClient:
    """sessiongraph's own API: ``POST /v1/sessions/{id}/messages`` with the default agent.

    The session is created by its first turn (``agent_id`` in the body), so a new session
    costs no extra request. One keep-alive HTTP client is shared by every coroutine:
    ``http="raw"`` (default) is :class:`bench.rawhttp.RawHttp`, about 0.06 ms of client CPU
    per request; ``http="httpx"`` is one ``httpx.AsyncClient`` with ``connections``
    keep-alive connections, about 2.5 ms per request at 50 concurrent (it caps one client
    process near 350 requests/s on this machine).
    """

    name = "native"

    def __init__(
        self,
        base_url: str,
        *,
        agent_id: str = "default",
        connections: int = 64,
        http: str = "raw",
    ):
        self.base_url = base_url
        self.agent_id = agent_id
        self.http_kind = http
        self._raw: RawHttp | None = None
        self._httpx: httpx.AsyncClient | None = None
        if http == "raw":
            parts = urlsplit(base_url)
            self._raw = RawHttp(parts.hostname or "127.0.0.1", parts.port or 80)
        elif http == "httpx":
            self._httpx = httpx.AsyncClient(
                base_url=base_url,
                timeout=httpx.Timeout(120.0, connect=10.0),
                limits=httpx.Limits(
                    max_connections=connections, max_keepalive_connections=connections
                ),
                headers={"content-type": "application/json"},
            )
        else:
            raise ValueError(f"http must be 'raw' or 'httpx', not {http!r}")

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = b"" if body is None else dumps(body)
        if self._raw is not None:
            raw = await self._raw.request(method, path, data)
            return raw.status_code, raw.content
        assert self._httpx is not None
        response = await self._httpx.request(method, path, content=data or None)
        return response.status_code, response.content

    async def new_session(self) -> str:
        """A new random session id; the session itself is created by its first turn."""
        return f"bench-{uuid.uuid4().hex}"

    async def turn(self, session: str, text: str) -> None:
        """Send one message and wait for the JSON answer."""
        await self.send(session, text, agent_id=self.agent_id)

    async def send(self, session: str, text: str, *, agent_id: str | None = None) -> Any:
        """Send one message (creating the session with ``agent_id``); the parsed answer."""
        body: dict[str, Any] = {"content": text}
        if agent_id is not None:
            body["agent_id"] = agent_id
        status, content = await self._call("POST", f"/v1/sessions/{session}/messages", body)
        if status != 200:
            raise TurnFailed(f"{status}: {content[:300].decode(errors='replace')}")
        return loads(content)

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """Any other call of the API; the parsed JSON answer (None for 204)."""
        status, content = await self._call(method, path, body)
        if status >= 400:
            text = content[:300].decode(errors="replace")
            raise TurnFailed(f"{method} {path} -> {status}: {text}")
        return None if status == 204 else loads(content)

    async def transcript(self, session: str) -> list[dict[str, Any]]:
        """Every message of a session, all pages, oldest first."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = "limit=500" + (f"&cursor={quote(cursor)}" if cursor else "")
            page = await self.request("GET", f"/v1/sessions/{session}/messages?{query}")
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    async def aclose(self) -> None:
        """Close the connections."""
        if self._raw is not None:
            await self._raw.aclose()
        if self._httpx is not None:
            await self._httpx.aclose()


class SdkClient:
    """The LangGraph API through the official ``langgraph_sdk`` client.

    A session is ``threads.create()``; a turn is ``runs.wait`` on it with one user message,
    and fails unless the run's output ends with a message answering it (both the peers'
    graph and sessiongraph's offline model echo the text: ``You said: ...``).
    """

    name = "sdk"

    def __init__(self, base_url: str, *, assistant_id: str = "react"):
        from langgraph_sdk import get_client

        self.base_url = base_url
        self.assistant_id = assistant_id
        self.client = get_client(url=base_url, api_key=None)

    async def new_session(self) -> str:
        """``threads.create()``; :class:`NotAvailable` when the server has no such route."""
        from langgraph_sdk.errors import NotFoundError

        try:
            thread = await self.client.threads.create()
        except (NotFoundError, httpx.HTTPStatusError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if isinstance(exc, NotFoundError) or status in (404, 405):
                raise NotAvailable(f"POST /threads -> {status or 404}") from exc
            raise
        return str(thread["thread_id"])

    async def turn(self, session: str, text: str) -> None:
        """``runs.wait`` with one user message."""
        from langgraph_sdk.errors import NotFoundError

        payload: Any = {"messages": [{"role": "user", "content": text}]}
        try:
            result = await self.client.runs.wait(session, self.assistant_id, input=payload)
        except NotFoundError as exc:
            raise NotAvailable(f"POST /threads/{{id}}/runs/wait -> 404: {exc}"[:300]) from exc
        except Exception as exc:  # the SDK raises httpx / its own errors
            raise TurnFailed(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        if isinstance(result, dict) and "__error__" in result:
            raise TurnFailed(str(result["__error__"])[:300])
        # The graph must really have run: the last message answers this one.
        messages = result.get("messages") if isinstance(result, dict) else None
        last = messages[-1] if isinstance(messages, list) and messages else {}
        content = last.get("content") if isinstance(last, dict) else None
        if not (isinstance(content, str) and text in content):
            raise TurnFailed(f"unexpected answer: {str(result)[:300]}")

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self.client.aclose()
