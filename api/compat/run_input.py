"""LangGraph Server API: a run request, read and checked, as a :class:`RunRequest`.

What a run body may hold, and what is refused, is described in :mod:`api.compat.runs`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.auth import turn_roles
from api.compat.common import resolve_assistant_id
from api.compat.run_streams import EventTranslator
from runtime import Runtime
from runtime.errors import InvalidInput
from runtime.keys import Principal
from runtime.runs import Run, RunHandle, RunRequest
from runtime.sessions import Session
from runtime.sessions.idempotency import check_key, keyed_session_id, request_hash
from runtime.turns import TurnRequest, waits_for_value

__all__ = [
    "RunCreate",
    "RunKey",
    "join_modes",
    "run_key",
    "run_request",
    "start_run",
    "stream_modes",
]

# Every stream mode the SDK knows.
STREAM_MODES = (
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "debug",
    "custom",
    "events",
    "tasks",
    "checkpoints",
)


class RunCreate(BaseModel):
    """A run request as ``langgraph-sdk`` and Studio send it (unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    assistant_id: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    stream_mode: str | list[str] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    feedback_keys: list[str] | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = Field(default=None, max_length=128)
    checkpoint_during: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    webhook: str | None = None
    multitask_strategy: str | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    after_seconds: float | None = None
    langsmith_tracer: dict[str, Any] | None = None
    strict_resume: bool | None = None


# -- requests -> runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunKey:
    """A keyed run request: its thread (for a stateless run, one named after the key), its
    ``Idempotency-Key`` and the hash of its body."""

    thread_id: str
    key: str
    request_hash: str


def run_key(thread_id: str | None, body: RunCreate, key: str | None) -> RunKey | None:
    """The request's :class:`RunKey` (None without a key), by the rules of turns' keys."""
    if key is None:
        return None
    key = check_key(key)
    asked = {"thread_id": thread_id, "run": body.model_dump(mode="json", exclude_none=True)}
    return RunKey(thread_id or keyed_session_id(key), key, request_hash(asked))


def _decisions(resume: Any) -> list[dict[str, Any]]:
    """``command.resume`` as decisions (see the module docstring)."""
    if isinstance(resume, str):
        if resume not in ("approve", "reject"):
            raise InvalidInput(
                'resume with "approve", "reject", a decision or {"decisions": [...]}',
                field="command.resume",
            )
        return [{"action": resume}]
    if isinstance(resume, dict) and "decisions" in resume:
        resume = resume["decisions"]
    elif isinstance(resume, dict):
        resume = [resume]
    if not isinstance(resume, list) or not all(isinstance(d, dict) for d in resume):
        raise InvalidInput("resume decisions must be objects", field="command.resume")
    return resume


def stream_modes(body: RunCreate, default: tuple[str, ...] = ("values",)) -> tuple[str, ...]:
    """The API stream modes a run asks for, each once, in order (unknown ones refused)."""
    modes = body.stream_mode
    requested = [modes] if isinstance(modes, str) else list(modes or default)
    unknown = sorted(set(requested) - set(STREAM_MODES))
    if unknown:
        raise InvalidInput(
            f"unknown stream mode(s) {unknown}", field="stream_mode", allowed=list(STREAM_MODES)
        )
    return tuple(dict.fromkeys(requested))


def _graph_modes(modes: tuple[str, ...]) -> tuple[str, ...]:
    """The LangGraph stream modes a set of API stream modes needs."""
    return tuple(sorted({"messages" if m == "messages-tuple" else m for m in modes}))


def _nodes(value: str | list[str] | None) -> str | tuple[str, ...] | None:
    """``interrupt_before`` / ``interrupt_after``: ``"*"`` (every node) or node names."""
    if not value:
        return None
    return value if value == "*" else tuple([value] if isinstance(value, str) else value)


def _refuse_unsupported(body: RunCreate) -> None:
    if body.webhook:
        raise InvalidInput("webhooks are not supported", field="webhook")
    if body.after_seconds:
        raise InvalidInput(
            "scheduled runs (after_seconds) are not supported", field="after_seconds"
        )
    if body.input is not None and body.command is not None:
        raise InvalidInput("give either input or command, not both", field="command")
    if body.command is not None:
        other = sorted(k for k, v in body.command.items() if k != "resume" and v is not None)
        if other:
            raise InvalidInput(
                f"command {other} is not supported; only command.resume is",
                field="command",
            )
        if body.command.get("resume") is None:
            raise InvalidInput("command needs a resume value", field="command.resume")


def _run_configurable(body: RunCreate) -> dict[str, Any] | None:
    """The run's own ``config.configurable`` (the runtime drops its reserved keys)."""
    configurable = (body.config or {}).get("configurable")
    if configurable is not None and not isinstance(configurable, dict):
        raise InvalidInput("config.configurable must be an object", field="config")
    return configurable or None


def _checkpoint_id(body: RunCreate) -> str | None:
    if body.checkpoint_id:
        return body.checkpoint_id
    for source in (body.checkpoint, ((body.config or {}).get("configurable") or {})):
        value = source.get("checkpoint_id") if isinstance(source, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def _graph_input(body: RunCreate, checkpoint_id: str | None) -> dict[str, Any] | None:
    """The graph's input: what the run gives, as the graph's input schema takes it.

    No input with a checkpoint continues from it (Studio's "re-run from here").
    """
    given = any(v not in (None, [], "", {}) for v in (body.input or {}).values())
    return body.input if given else None


def _start_from(session: Session, graph_input: Any, checkpoint_id: str | None) -> str | None:
    """The checkpoint a run starts from: the one it names, or with no input the thread's
    latest (continue it: after ``interrupt_before``/``after``, as LangGraph's server does)."""
    if graph_input is not None or checkpoint_id is not None:
        return checkpoint_id
    if session.committed_checkpoint_id is None:
        raise InvalidInput(
            'a run needs an input, e.g. {"messages": [{"role": "user", "content": "..."}]}',
            field="input",
        )
    return session.committed_checkpoint_id


def _resume(session: Session, resume: Any) -> dict[str, Any]:
    """``command.resume`` as TurnRequest fields: decisions for our approval step, or the
    value for a graph's own ``interrupt()``."""
    if waits_for_value(session.pending_approvals):
        return {"resume_value": resume}
    return {"decisions": _decisions(resume)}


def _run_kwargs(body: RunCreate, modes: tuple[str, ...]) -> dict[str, Any]:
    """What the run records as its ``kwargs``: the request, less what has a column."""
    kwargs = body.model_dump(
        exclude_none=True, exclude={"assistant_id", "metadata", "multitask_strategy"}
    )
    kwargs["stream_mode"] = list(modes)
    return kwargs


def _new_thread(keyed: RunKey | None, resuming: bool, no_input: bool) -> str:
    """The id of a stateless run's thread: named after its key, if any."""
    if resuming:
        raise InvalidInput("a resume needs a thread", field="command")
    if no_input:
        raise InvalidInput("a run on a new thread needs an input", field="input")
    return keyed.thread_id if keyed else str(uuid.uuid4())


async def run_request(
    runtime: Runtime,
    who: Principal,
    thread_id: str | None,
    body: RunCreate,
    modes: tuple[str, ...],
    keyed: RunKey | None = None,
) -> RunRequest:
    """Validate a run body and turn it into a :class:`RunRequest` (thread made if needed).

    A keyed stateless run keeps its thread (named after the key), so a retry finds it."""
    _refuse_unsupported(body)
    agent_id = resolve_assistant_id(runtime, body.assistant_id)
    template = await runtime.templates.get(agent_id, owner=who.owner)  # NotFound: another's
    checkpoint_id = _checkpoint_id(body)
    resuming = body.command is not None
    graph_input = None if resuming else _graph_input(body, checkpoint_id)
    if graph_input is not None:
        await runtime.check_input(template, graph_input)
    stateless = thread_id is None
    temporary = stateless and body.on_completion != "keep" and keyed is None
    if thread_id is None:
        thread_id = _new_thread(keyed, resuming, graph_input is None and checkpoint_id is None)
    create = body.if_not_exists == "create" or stateless
    session = await runtime.sessions.for_agent(who.owner, thread_id, agent_id, create=create)
    if not resuming:
        checkpoint_id = _start_from(session, graph_input, checkpoint_id)
    if checkpoint_id is not None:
        await runtime.threads.check_visible(session, checkpoint_id)
    strategy, resumable = body.multitask_strategy or "reject", body.stream_resumable
    turn = TurnRequest(
        input=graph_input,
        **(_resume(session, body.command["resume"]) if body.command is not None else {}),
        roles=turn_roles(who, None),
        stream_modes=_graph_modes(modes),
        subgraphs=bool(body.stream_subgraphs),
        configurable=_run_configurable(body),
        context=body.context,
        checkpoint_id=checkpoint_id,
        metadata=body.metadata,
        durability=body.durability,
        interrupt_before=_nodes(body.interrupt_before),
        interrupt_after=_nodes(body.interrupt_after),
    )
    return RunRequest(
        owner=who.owner,
        session_id=thread_id,
        assistant_id=agent_id,
        turn=turn,
        multitask_strategy=strategy,  # type: ignore[arg-type]  # checked by the manager
        metadata=dict(body.metadata or {}),
        kwargs=_run_kwargs(body, modes),
        temporary=temporary,
        # Resumable: the stream is recorded (as the requested modes) for replay.
        recorder=EventTranslator(modes, thread_id, session.thread_id) if resumable else None,
        idempotency_key=keyed.key if keyed else None,
        request_hash=keyed.request_hash if keyed else None,
        thread_key=session.thread_id,
    )


async def start_run(
    runtime: Runtime,
    who: Principal,
    thread_id: str | None,
    body: RunCreate,
    modes: tuple[str, ...],
    key: str | None,
    *,
    subscribe: bool = False,
) -> tuple[RunHandle, RunRequest | None]:
    """Create the run (and return its request); or, for a retry of a keyed request, find the
    run its first attempt created (request None), before anything about the thread's state
    is checked again."""
    keyed = run_key(thread_id, body, key)
    if keyed is not None:
        kept = await runtime.runs.keyed(who.owner, keyed.thread_id, keyed.key, keyed.request_hash)
        if kept is not None:
            return RunHandle(kept, "", repeated=True), None
    request = await run_request(runtime, who, thread_id, body, modes, keyed)
    handle = await runtime.runs.create(request, subscribe=subscribe)
    return handle, None if handle.repeated else request


def join_modes(stream_mode: list[str] | None, run: Run) -> tuple[str, ...]:
    """The modes a join-stream asks for (``stream_mode`` query values), or the run's own."""
    requested: list[str] = []
    for value in stream_mode or []:
        # The SDK repeats the parameter (and sends it empty for none); LangGraph also
        # accepts a JSON array in one value.
        if not value:
            continue
        parsed = json.loads(value) if value.startswith("[") else value
        requested.extend(parsed if isinstance(parsed, list) else [parsed])
    modes = stream_modes(RunCreate(assistant_id="-", stream_mode=requested or None))
    if not requested:
        modes = tuple(run.kwargs.get("stream_mode") or ("values",))
    return modes
