"""``/v1/chat/completions`` and ``/v1/models`` driven by the official ``openai`` client.

A real uvicorn server in the test's event loop: the sync client runs in a worker thread so
the loop keeps serving. The module's database holds one API key, so auth is on and every
client sends it, as a real deployment's do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from api.app import create_app
from runtime import Runtime, Settings
from tests.support.server import running_server


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


@pytest.fixture
async def api_key(settings: Settings) -> str:
    """A key of the owner ``oa-tests`` (created once per module's database)."""
    if _KEY.get(settings.database_url) is None:
        async with Runtime.open(settings, sweeper=False) as rt:
            _, secret = await rt.keys.create("oa-tests", name="openai tests")
        _KEY[settings.database_url] = secret
    return _KEY[settings.database_url]


_KEY: dict[str | None, str] = {}


@pytest.fixture
async def server_url(settings: Settings, api_key: str) -> AsyncIterator[str]:
    async with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture
async def http(server_url: str, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=server_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def client(server_url: str, api_key: str) -> OpenAI:
    return OpenAI(base_url=f"{server_url}/v1", api_key=api_key, max_retries=0)


@pytest.fixture
def aclient(server_url: str, api_key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{server_url}/v1", api_key=api_key, max_retries=0)


class TestModels:
    async def test_models_lists_the_agents(self, client: OpenAI, http: httpx.AsyncClient) -> None:
        """GET /v1/models lists the caller's agents (its own and the system ones)."""
        mine = await http.post("/v1/agents", json={"id": uid("agt"), "name": "Mine"})
        assert mine.status_code == 201, mine.text
        models = await asyncio.to_thread(client.models.list)
        ids = [m.id for m in models.data]
        assert "default" in ids and mine.json()["id"] in ids
        assert all(m.object == "model" for m in models.data)

    async def test_bad_key_is_openai_401(self, server_url: str) -> None:
        """A wrong key is AuthenticationError with OpenAI's error body."""
        bad = AsyncOpenAI(base_url=f"{server_url}/v1", api_key="sg_nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad.models.list()
        assert caught.value.body["type"] == "authentication_error"  # type: ignore[index]


class TestCompletion:
    async def test_sync_stateless_uses_the_request_history(self, client: OpenAI) -> None:
        """Without a session the request's messages are the whole conversation."""
        completion = await asyncio.to_thread(
            client.chat.completions.create,
            model="default",
            messages=[
                {"role": "user", "content": "my name is Ada"},
                {"role": "assistant", "content": "Nice to meet you, Ada."},
                {"role": "user", "content": "what is my name?"},
            ],
        )
        assert completion.object == "chat.completion"
        assert completion.choices[0].finish_reason == "stop"
        assert "Ada" in (completion.choices[0].message.content or "")
        assert completion.usage is not None and completion.usage.total_tokens > 0

    async def test_stateless_leaves_no_session(
        self, aclient: AsyncOpenAI, http: httpx.AsyncClient
    ) -> None:
        """A stateless request's throw-away session is deleted when the turn ends."""
        before = (await http.get("/v1/sessions", params={"limit": 500})).json()["items"]
        await aclient.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hello"}]
        )
        after = (await http.get("/v1/sessions", params={"limit": 500})).json()["items"]
        assert len(after) == len(before)

    async def test_async_session_keeps_history_server_side(
        self, aclient: AsyncOpenAI, http: httpx.AsyncClient
    ) -> None:
        """With metadata.session_id only the trailing user message is sent; memory holds."""
        session_id = uid("oa")
        await aclient.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "my name is Grace"}],
            metadata={"session_id": session_id},
        )
        second = await aclient.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "what is my name?"}],
            metadata={"session_id": session_id},
        )
        assert "Grace" in (second.choices[0].message.content or "")
        items = (await http.get(f"/v1/sessions/{session_id}/messages")).json()["items"]
        assert [m["role"] for m in items] == ["user", "assistant", "user", "assistant"]

    async def test_session_from_header(self, aclient: AsyncOpenAI, http: httpx.AsyncClient) -> None:
        """X-Session-Id names the session as metadata.session_id does."""
        session_id = uid("oa")
        for text in ("my name is Linus", "what is my name?"):
            last = await aclient.chat.completions.create(
                model="default",
                messages=[
                    {"role": "system", "content": "ignored"},
                    {"role": "user", "content": text},
                ],
                extra_headers={"X-Session-Id": session_id},
            )
        assert "Linus" in (last.choices[0].message.content or "")
        session = (await http.get(f"/v1/sessions/{session_id}")).json()
        assert session["turns"] == 2 and session["agent_id"] == "default"


class TestStreaming:
    async def test_stream_chunks_tool_call_deltas_and_usage(self, aclient: AsyncOpenAI) -> None:
        """stream=True yields OpenAI chunks: role, a tool-call delta, content, stop, usage."""
        stream = await aclient.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "what is 2+3?"}], stream=True
        )
        text, calls, finish, usage = "", [], None, None
        async for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                calls += choice.delta.tool_calls or []
                finish = choice.finish_reason or finish
        assert text == "The result is 5."
        assert calls[0].function.name == "calculator"
        assert json.loads(calls[0].function.arguments) == {"expression": "2+3"}
        assert finish == "stop"
        assert usage is not None and usage.total_tokens > 0

    async def test_sync_stream(self, client: OpenAI) -> None:
        """The sync client reads the same stream."""

        def read() -> str:
            stream = client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "hello"}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        assert await asyncio.to_thread(read)


class TestErrors:
    async def test_unknown_model_is_openai_404(self, aclient: AsyncOpenAI) -> None:
        """An unknown agent is NotFoundError with OpenAI's error body."""
        with pytest.raises(openai.NotFoundError) as caught:
            await aclient.chat.completions.create(
                model="no-such-agent", messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.body["code"] == "not_found"  # type: ignore[index]
        assert caught.value.body["type"] == "not_found_error"  # type: ignore[index]

    async def test_stream_error_before_start_keeps_status(self, aclient: AsyncOpenAI) -> None:
        """A streamed request to an unknown agent still fails with its status."""
        with pytest.raises(openai.NotFoundError):
            await aclient.chat.completions.create(
                model="no-such-agent", messages=[{"role": "user", "content": "hi"}], stream=True
            )

    async def test_bad_body_is_openai_400(self, http: httpx.AsyncClient) -> None:
        """A malformed body answers 400 in OpenAI's shape."""
        response = await http.post("/v1/chat/completions", json={"model": "default"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error" and error["param"] == "messages"

    async def test_session_request_needs_a_trailing_user_message(
        self, aclient: AsyncOpenAI
    ) -> None:
        """With a session, a request that does not end with a user message is refused."""
        with pytest.raises(openai.BadRequestError):
            await aclient.chat.completions.create(
                model="default",
                messages=[{"role": "assistant", "content": "hi"}],
                metadata={"session_id": uid("oa")},
            )
