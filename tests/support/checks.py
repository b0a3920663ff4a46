"""Helpers several test modules share: reading an SSE response, checking a history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

__all__ = ["assert_valid_history", "eventually", "read_sse", "status_within", "turn_running"]

T = TypeVar("T")


async def eventually(
    predicate: Callable[[], Awaitable[T]], what: str, seconds: float = 30, interval: float = 0.05
) -> T:
    """The first truthy value of ``predicate()``, asked every ``interval`` s for up to
    ``seconds`` (then an AssertionError naming ``what``). For a state another task, process
    or replica reaches in its own time: a loaded machine may take far longer than a fixed
    sleep guesses, and the deadline is only there to end a test that would hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not (value := await predicate()):
        assert loop.time() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        await asyncio.sleep(interval)
    return value


async def status_within(
    http: httpx.AsyncClient, method: str, url: str, status: int, seconds: float, **kwargs: Any
) -> httpx.Response:
    """The first response with ``status`` to ``method url``, asked every 0.1 s for up to
    ``seconds`` (for changes another process makes, which a server sees within a bound)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        response = await http.request(method, url, **kwargs)
        if response.status_code == status or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.1)


async def turn_running(http: httpx.AsyncClient, session_id: str, seconds: float = 30) -> None:
    """Wait until a turn holds ``session_id``'s lease (its ``state`` is ``running``), asked
    every 0.02 s; a 404 (the turn has not created its session yet) is waited out too. Tests
    that act "while the turn runs" start from here rather than from a sleep."""

    async def running() -> bool:
        response = await http.get(f"/v1/sessions/{session_id}")
        assert response.status_code in (200, 404), response.text
        return response.status_code == 200 and response.json()["state"] == "running"

    await eventually(running, f"a turn to run on {session_id}", seconds, interval=0.02)


async def read_sse(response: httpx.Response) -> list[tuple[str, Any]]:
    """The (event, JSON data) pairs of an SSE response, in order (comments skipped)."""
    events: list[tuple[str, Any]] = []
    event: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                events.append((event or "message", json.loads("\n".join(data))))
            event, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].removeprefix(" "))
    if data:
        events.append((event or "message", json.loads("\n".join(data))))
    return events


def assert_valid_history(messages: list[dict[str, Any]]) -> None:
    """Each assistant tool call has exactly one tool result, right after its message.

    That is what chat-completion providers require: the results of an assistant message's
    calls come before any other message, and no result is orphaned or duplicated.
    """
    call_ids: set[str] = set()
    open_calls: set[str] = set()  # calls of the latest assistant message awaiting results
    for message in messages:
        if message["role"] == "tool":
            call_id = message["tool_call_id"]
            assert call_id in call_ids, f"orphaned tool result: {message}"
            assert call_id in open_calls, f"tool result not right after its call: {message}"
            open_calls.discard(call_id)
            continue
        assert not open_calls, f"calls without results before {message}: {open_calls}"
        for call in message.get("tool_calls") or []:
            assert call["id"] not in call_ids, f"duplicate tool call id {call['id']}"
            call_ids.add(call["id"])
            open_calls.add(call["id"])
    assert not open_calls, f"calls without results at the end: {open_calls}"
