"""A small deterministic OpenAI-compatible chat-completions server for tests.

``OpenAICompatServer`` runs a Starlette app under uvicorn in a background thread on
``127.0.0.1`` (free port) so tests can drive the *real* ``langchain_openai.ChatOpenAI``
client against it::

    with OpenAICompatServer() as server:
        llm = ChatOpenAI(
            model="gpt-test",
            base_url=server.base_url,
            api_key="test",
            use_responses_api=False,
            stream_usage=True,
        )

Behaviour is a pure function of the request messages:

* last message has role ``tool`` -> ``"The result is <content>."`` (trailing tool
  messages are joined with ``", "``);
* a ``calculator`` tool is offered and the last user text contains an arithmetic
  expression -> an assistant ``tool_calls`` reply for ``calculator``;
* ``"call TOOL with {json}"`` (the whole last user text) -> an assistant ``tool_calls``
  reply for ``TOOL`` with those arguments, *even when TOOL is not offered* (a misbehaving
  model, for permission tests);
* ``"my name is X"`` -> ``"Nice to meet you, X."``; ``"what is my name?"`` ->
  ``"Your name is X."`` recalled from earlier user messages;
* anything else -> ``"echo: <text>"``.

Faults can be queued with :meth:`OpenAICompatServer.enqueue_fault`; each chat-completions
request consumes at most one, FIFO.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FAULT_KINDS", "Fault", "OpenAICompatServer"]

FAULT_KINDS: frozenset[str] = frozenset({"pass", "timeout", "429", "500", "garbage", "malformed"})

_CREATED = 1_700_000_000
_NAME_RE = re.compile(r"\bmy name is\s+([A-Za-z][\w'-]*)", re.IGNORECASE)
_ASK_NAME_RE = re.compile(r"\bwhat(?:'s| is)\s+my name\b", re.IGNORECASE)
_EXPR_CANDIDATE_RE = re.compile(r"[(\d][\d\s.()+\-*/%^]*[\d)]")
_HAS_OPERATOR_RE = re.compile(r"[\d)]\s*(?:\*\*|[-+*/%^])\s*[\d(]")
_PIECE_RE = re.compile(r"\S+\s*|\s+")
_FORCED_CALL_RE = re.compile(
    r"^\s*call\s+(?P<name>[A-Za-z_][\w.\-]*)(?:\s+with)?\s*(?P<args>\{.*\})?\s*$", re.DOTALL
)


@dataclass(frozen=True)
class Fault:
    """A queued fault: ``kind`` is one of :data:`FAULT_KINDS`, ``opts`` its options."""

    kind: str
    opts: dict[str, Any] = field(default_factory=dict)


def _text_of(content: Any) -> str:
    """Flatten OpenAI message content (string, list of parts or ``None``) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return str(content)


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


def _offered_tools(body: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            fn = tool.get("function") or {}
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                names.add(fn["name"])
    return names


def _find_expression(text: str) -> str | None:
    for match in _EXPR_CANDIDATE_RE.finditer(text):
        candidate = match.group(0).strip()
        if _HAS_OPERATOR_RE.search(candidate):
            return candidate
    return None


def _split_pieces(text: str) -> list[str]:
    pieces = _PIECE_RE.findall(text)
    return pieces or [text]


def _split_arguments(arguments: str, size: int = 5) -> list[str]:
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


@dataclass(frozen=True)
class _Reply:
    """The deterministic answer to one request: either text or one tool call."""

    content: str | None
    tool_call: dict[str, Any] | None = None

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_call is not None else "stop"

    @property
    def completion_text(self) -> str:
        if self.tool_call is not None:
            fn = self.tool_call["function"]
            return f"{fn['name']}{fn['arguments']}"
        return self.content or ""


def _decide(body: dict[str, Any]) -> _Reply:
    messages: list[dict[str, Any]] = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "tool":
        results: list[str] = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.append(_text_of(message.get("content")))
        return _Reply(content=f"The result is {', '.join(reversed(results))}.")

    user_texts = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    text = user_texts[-1] if user_texts else ""

    forced = _FORCED_CALL_RE.match(text)
    if forced is not None:
        try:
            args = json.loads(forced.group("args") or "{}")
        except json.JSONDecodeError:
            args = None
        if isinstance(args, dict):
            name = forced.group("name")
            arguments = json.dumps(args)
            digest = hashlib.sha256(f"{len(messages)}:{name}:{arguments}".encode()).hexdigest()
            return _Reply(
                content=None,
                tool_call={
                    "id": f"call_{digest[:24]}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                },
            )

    if "calculator" in _offered_tools(body):
        expression = _find_expression(text)
        if expression is not None:
            digest = hashlib.sha256(f"{len(messages)}:{expression}".encode()).hexdigest()
            return _Reply(
                content=None,
                tool_call={
                    "id": f"call_{digest[:24]}",
                    "type": "function",
                    "function": {
                        "name": "calculator",
                        "arguments": json.dumps({"expression": expression}),
                    },
                },
            )

    if _ASK_NAME_RE.search(text):
        for earlier in reversed(user_texts[:-1]):
            found = _NAME_RE.search(earlier)
            if found:
                return _Reply(content=f"Your name is {found.group(1)}.")
    else:
        found = _NAME_RE.search(text)
        if found:
            return _Reply(content=f"Nice to meet you, {found.group(1)}.")

    return _Reply(content=f"echo: {text}")


def _usage(body: dict[str, Any], reply: _Reply) -> dict[str, int]:
    prompt = sum(
        _tokens(_text_of(m.get("content")))
        for m in body.get("messages") or []
        if isinstance(m, dict)
    )
    completion = _tokens(reply.completion_text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion_id(body: dict[str, Any]) -> str:
    raw = json.dumps(body.get("messages"), sort_keys=True, default=str)
    return "chatcmpl-" + hashlib.sha256(raw.encode()).hexdigest()[:24]


class _ConnectionCloseMiddleware:
    """Add ``Connection: close`` to every HTTP response.

    ``langchain_openai`` caches its default ``httpx`` clients per ``(base_url, timeout)``.
    With a long-lived server and pytest-asyncio's per-test event loops, a pooled
    keep-alive connection opened on one (now closed) loop would otherwise be reused
    from the next loop and fail with ``RuntimeError: Event loop is closed``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_close(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_close)


def _error_body(message: str, err_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


class OpenAICompatServer:
    """Deterministic OpenAI chat-completions server on ``127.0.0.1`` in a background thread.

    Attributes:
        requests: JSON bodies of every received ``POST /v1/chat/completions`` request,
            in arrival order (faulted requests included).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep_alive: bool = False,
        startup_timeout: float = 10.0,
    ) -> None:
        """Create (but do not start) a server.

        Args:
            host: interface to bind; ``base_url`` uses it verbatim.
            port: port to bind; ``0`` (default) picks a free one.
            keep_alive: allow HTTP keep-alive. Off by default so that clients cached
                across event loops (see ``_ConnectionCloseMiddleware``) never reuse a
                connection bound to a closed loop.
            startup_timeout: seconds to wait for the server to accept connections.
        """
        self.host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self.requests: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        self._asgi_app: ASGIApp = self.app if keep_alive else _ConnectionCloseMiddleware(self.app)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("OpenAICompatServer is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` - pass as ``base_url`` to ``ChatOpenAI``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> OpenAICompatServer:
        """Start serving in a daemon thread and block until connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("OpenAICompatServer already started")
        self._stopping.clear()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(128)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]

        config = uvicorn.Config(
            self._asgi_app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"openai-compat-server-{self._port}",
            daemon=True,
        )
        self._thread = thread
        thread.start()

        deadline = time.monotonic() + self._startup_timeout
        while True:
            if server.started and self._can_connect():
                break
            if not thread.is_alive():
                self._thread = None
                raise RuntimeError("OpenAICompatServer thread exited during startup")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("OpenAICompatServer did not start in time")
            time.sleep(0.01)
        return self

    def _can_connect(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (interrupting pending ``timeout`` faults) and join its thread."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        self._thread = None
        self._server = None

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls

    def enqueue_fault(self, kind: str, **opts: Any) -> None:
        """Queue a fault for a future chat-completions request (one per request, FIFO).

        Kinds:
            ``"pass"``: answer normally (to let earlier requests through before a fault).
            ``"timeout"``: sleep ``seconds`` (default 30) before answering normally.
            ``"429"``: status 429, ``Retry-After: retry_after`` (default ``"1"``), error JSON.
            ``"500"``: status 500 with an OpenAI-style error JSON body.
            ``"garbage"``: status 200 with body ``this is not json`` (``content_type``,
                default ``application/json``; a bogus SSE ``data:`` line when streaming).
            ``"malformed"``: status 200 JSON without ``choices``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(Fault(kind, dict(opts)))

    @property
    def pending_faults(self) -> list[Fault]:
        """Snapshot of the faults not yet consumed."""
        with self._lock:
            return list(self._faults)

    @property
    def last_messages(self) -> list[dict[str, Any]]:
        """The ``messages`` of the last chat-completions request, exactly as sent (content
        blocks included); ``[]`` before any request."""
        with self._lock:
            return list(self.requests[-1].get("messages") or []) if self.requests else []

    def reset(self) -> None:
        """Forget recorded requests and drop all queued faults."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def _record(self, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            self.requests.append(body)
            return self._faults.popleft() if self._faults else None

    # ------------------------------------------------------------------ endpoints

    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": _CREATED, "owned_by": "sessiongraph"}
                    for name in ("gpt-test", "gpt-4o-mini")
                ],
            }
        )

    async def _chat_completions(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return JSONResponse(
                _error_body("Request body is not valid JSON", "invalid_request_error", None),
                status_code=400,
            )
        if not isinstance(body, dict):
            return JSONResponse(
                _error_body("Request body must be a JSON object", "invalid_request_error", None),
                status_code=400,
            )

        stream = bool(body.get("stream"))
        fault = self._record(body)
        if fault is not None:
            if fault.kind == "timeout":
                await self._interruptible_sleep(float(fault.opts.get("seconds", 30)))
            elif fault.kind != "pass":
                return self._fault_response(fault, stream)

        reply = _decide(body)
        if stream:
            return StreamingResponse(
                self._stream_chunks(body, reply),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return JSONResponse(self._completion(body, reply))

    async def _interruptible_sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(0.05, remaining))

    def _fault_response(self, fault: Fault, stream: bool) -> Response:
        if fault.kind == "429":
            return JSONResponse(
                _error_body(
                    "Rate limit reached for gpt-test. Please try again later.",
                    "rate_limit_error",
                    "rate_limit_exceeded",
                ),
                status_code=429,
                headers={"Retry-After": str(fault.opts.get("retry_after", "1"))},
            )
        if fault.kind == "500":
            return JSONResponse(
                _error_body(
                    "The server had an error processing your request.", "server_error", None
                ),
                status_code=500,
            )
        if fault.kind == "garbage":
            if stream:
                return Response(
                    "data: this is not json\n\n", status_code=200, media_type="text/event-stream"
                )
            return Response(
                "this is not json",
                status_code=200,
                media_type=str(fault.opts.get("content_type", "application/json")),
            )
        # malformed: well-formed JSON that is not a chat completion (no "choices").
        return JSONResponse(
            {
                "id": "chatcmpl-malformed",
                "object": "chat.completion",
                "created": _CREATED,
                "model": "gpt-test",
            }
        )

    # ------------------------------------------------------------------ payloads

    def _completion(self, body: dict[str, Any], reply: _Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.tool_call is not None:
            message["tool_calls"] = [reply.tool_call]
        return {
            "id": _completion_id(body),
            "object": "chat.completion",
            "created": _CREATED,
            "model": str(body.get("model") or "gpt-test"),
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": _usage(body, reply),
        }

    def _chunk_dicts(self, body: dict[str, Any], reply: _Reply) -> Iterator[dict[str, Any]]:
        stream_options = body.get("stream_options") or {}
        include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        base: dict[str, Any] = {
            "id": _completion_id(body),
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": str(body.get("model") or "gpt-test"),
            "system_fingerprint": None,
        }
        if include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {**base, "choices": [choice]}

        if reply.tool_call is not None:
            call = reply.tool_call
            yield chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ],
                }
            )
            for fragment in _split_arguments(call["function"]["arguments"]):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
        else:
            for i, piece in enumerate(_split_pieces(reply.content or "")):
                delta: dict[str, Any] = {"content": piece}
                if i == 0:
                    delta = {"role": "assistant", **delta}
                yield chunk(delta)
        yield chunk({}, reply.finish_reason)
        if include_usage:
            yield {**base, "choices": [], "usage": _usage(body, reply)}

    async def _stream_chunks(self, body: dict[str, Any], reply: _Reply) -> AsyncIterator[str]:
        for payload in self._chunk_dicts(body, reply):
            yield f"data: {json.dumps(payload)}\n\n"
            await asyncio.sleep(0)
        yield "data: [DONE]\n\n"
