"""``chat AGENT_ID``: talk to an agent in the terminal, in-process or over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from api.cli._common import Failure, Subparsers, open_runtime
from runtime import DEFAULT_OWNER, SessiongraphError
from runtime.ids import new_id, validate_id

__all__ = ["add_parsers"]

_HTTP_TIMEOUT = httpx.Timeout(30.0, read=600.0)
_RESULT_INDENT = "\n" + " " * len("  [result] ")


class _TurnPrinter:
    """Shows a turn's events as they arrive: tokens inline, tool activity on lines of its own.

    The in-process and HTTP chats both feed :meth:`show` the same ``(type, data)`` pairs.
    """

    def __init__(self) -> None:
        self._mid_line = False
        self._streamed = False

    def show(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "token":
            self._write(str(data.get("content") or ""))
            self._streamed = True
        elif kind == "tool_call":
            args = json.dumps(data.get("args") or {}, ensure_ascii=False)
            self._line(f"  [tool] {data.get('name')}({args})")
        elif kind == "tool_result":
            content = str(data.get("content", ""))
            self._line(f"  [result] {content.replace(chr(10), _RESULT_INDENT)}")
        elif kind == "approval_required":
            for call in data.get("pending") or []:
                args = json.dumps(call.get("args") or {}, ensure_ascii=False)
                self._line(f"  [approval] {call.get('name')}({args}) awaits a decision")
            self._line("  type /approve, or /reject [reason]")
        elif kind == "done":
            if not self._streamed:  # a model that does not stream: show the reply whole
                self._write(str(data.get("reply") or ""))
            self.finish()
        elif kind == "error":
            self.finish()
            print(f"error: {data.get('message') or 'the turn failed'}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        """End the turn: close the reply's line and get ready for the next turn."""
        if self._mid_line:
            self._write("\n")
        self._streamed = False

    def _line(self, text: str) -> None:
        if self._mid_line:
            self._write("\n")
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self._mid_line = not text.endswith("\n")


def _read_message() -> str | None:
    """The next message typed on stdin; None at end of input or ``/quit``."""
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stdout.write("you> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            if interactive:
                print()
            return None
        text = line.strip()
        if text == "/quit":
            return None
        if text:
            return text


def _decisions(text: str) -> list[dict[str, Any]] | None:
    """``/approve`` or ``/reject [reason]`` as resume decisions for every pending call."""
    command, _, reason = text.partition(" ")
    if command == "/approve":
        return [{"action": "approve"}]
    if command == "/reject":
        return [{"action": "reject", **({"reason": reason.strip()} if reason.strip() else {})}]
    return None


async def _read_message_async() -> str | None:
    """:func:`_read_message` on a daemon thread, so a blocked read never holds up the loop.

    Not ``asyncio.to_thread``: on Ctrl-C, ``asyncio.run`` would wait for that thread's read.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def settle(outcome: str | None | Exception) -> None:
        if future.done():
            return
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def read() -> None:
        outcome: str | None | Exception
        try:
            outcome = _read_message()
        except Exception as exc:
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=read, name="sessiongraph-stdin", daemon=True).start()
    return await future


async def _chat_local(agent_id: str, session_id: str, owner: str) -> int:
    async with open_runtime(project=True) as rt:
        session = await rt.session(session_id, agent_id=agent_id, owner=owner)
        print(f"session: {session.session_id}", flush=True)
        printer = _TurnPrinter()
        while (content := await _read_message_async()) is not None:
            decisions = _decisions(content)
            try:
                if decisions is not None:
                    events = rt.resume_stream(session.session_id, decisions, owner=owner)
                else:
                    events = rt.stream(session.session_id, content, owner=owner)
                async for event in events:
                    printer.show(event.type, event.data)
            except SessiongraphError as exc:
                printer.show("error", {"message": exc.message})
            printer.finish()
    return 0


def _error_message(response: httpx.Response) -> str:
    """The ``message`` of an error body, or a description of the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
        if message:
            return str(message)
    return f"HTTP {response.status_code} from {response.request.url}"


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"message": text}
    return value if isinstance(value, dict) else {"value": value}


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-sent events as ``(type, data)``: ``event:``/``data:`` lines, blank-separated."""
    kind = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield kind, _json_object("\n".join(data))
            kind, data = "message", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
    if data:
        yield kind, _json_object("\n".join(data))


def _send_http(
    client: httpx.Client, path: str, content: str, show: Callable[[str, dict[str, Any]], None]
) -> None:
    """Post one message (or a ``/approve`` / ``/reject``) and show the streamed reply."""
    decisions = _decisions(content)
    url, body = (
        (f"{path}/resume", {"decisions": decisions})
        if decisions is not None
        else (f"{path}/messages", {"content": content})
    )
    with client.stream("POST", url, json=body, headers={"Accept": "text/event-stream"}) as response:
        if not response.is_success:
            response.read()
            show("error", {"message": _error_message(response)})
        elif response.headers.get("content-type", "").startswith("text/event-stream"):
            for kind, data in _sse_events(response.iter_lines()):
                show(kind, data)
        else:  # a server that answered with the plain JSON turn result
            response.read()
            show("done", _json_object(response.text))


def _chat_http(url: str, agent_id: str, session_id: str, key: str | None) -> int:
    path = f"/v1/sessions/{validate_id(session_id, kind='session_id')}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=_HTTP_TIMEOUT) as client:
        try:
            response = client.put(path, json={"agent_id": agent_id})
        except httpx.HTTPError as exc:
            raise Failure(f"cannot reach {url}: {exc}") from exc
        if response.status_code not in (200, 201):
            raise Failure(_error_message(response))
        print(f"session: {session_id}", flush=True)
        printer = _TurnPrinter()
        while (content := _read_message()) is not None:
            try:
                _send_http(client, path, content, printer.show)
            except httpx.HTTPError as exc:
                printer.show("error", {"message": f"request failed: {exc}"})
            printer.finish()
    return 0


def _chat(args: argparse.Namespace) -> int:
    session_id = args.session or new_id("ses")
    url = args.url or os.environ.get("SESSIONGRAPH_URL")
    if url:
        key = args.key or os.environ.get("SESSIONGRAPH_API_KEY")
        return _chat_http(url, args.agent_id, session_id, key)
    return asyncio.run(_chat_local(args.agent_id, session_id, args.owner))


def add_parsers(sub: Subparsers) -> None:
    """The ``chat`` command."""
    chat = sub.add_parser("chat", help="talk to an agent in the terminal")
    chat.add_argument("agent_id", metavar="AGENT_ID")
    chat.add_argument("--session", help="continue this session (default: a new one)")
    chat.add_argument("--url", help="talk to this server over HTTP (SESSIONGRAPH_URL)")
    chat.add_argument("--key", help="API key for --url (SESSIONGRAPH_API_KEY)")
    chat.add_argument(
        "--owner",
        default=DEFAULT_OWNER,
        help=f"owner of the session, in-process only (default: {DEFAULT_OWNER})",
    )
    chat.set_defaults(run=_chat)
