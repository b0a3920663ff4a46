"""One run of a turn's graph: its input, its config, and the loop over ``graph.astream``.

:func:`turn_input` and :func:`turn_config` build what the graph is called with;
:class:`GraphStream` consumes the stream, collecting the messages the turn added and the
approvals it waits for, and emitting the turn's events as they happen.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from runtime.agents import CompiledAgent, is_reserved_key
from runtime.checkpoints import EXPECTED_CHECKPOINT
from runtime.errors import InvalidInput
from runtime.sessions import Lease
from runtime.turns.constants import CONFIG_KEY_AGENT, CONFIG_KEY_GUARD
from runtime.turns.content import check_content
from runtime.turns.events import Emit, TurnEvent, TurnRequest, emit_message, now_stamp
from runtime.turns.guards import TurnGuard

__all__ = [
    "GraphStream",
    "ModelTimer",
    "check_input_keys",
    "checked_input",
    "checked_request",
    "pending_of",
    "split_pending",
    "turn_config",
    "turn_input",
    "waits_for_value",
]

# LangGraph's key for an interrupt in an ``updates`` stream part.
_INTERRUPT = "__interrupt__"


class ModelTimer(BaseCallbackHandler):
    """Adds up wall time spent inside chat-model calls during one turn."""

    run_inline = True

    def __init__(self) -> None:
        self._started: dict[UUID, float] = {}
        self.total = 0.0

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._started[run_id] = time.perf_counter()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        started = self._started.pop(run_id, None)
        if started is not None:
            self.total += time.perf_counter() - started

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.on_llm_end(LLMResult(generations=[]), run_id=run_id)


def turn_input(request: TurnRequest) -> tuple[Any, list[BaseMessage]]:
    """The graph's input for a request, and the messages it adds (the user's, if any).

    A resume answers the pending interrupt; a replay continues with no input; an ``input``
    goes to the graph as given, its messages (already checked by :func:`checked_input`)
    stamped and given ids.
    """
    if request.decisions is not None:
        return Command(resume={"decisions": request.decisions}), []
    if request.resume_value is not None:
        return Command(resume=request.resume_value), []
    if request.replay:
        return None, []
    if request.input is not None:
        graph_input = dict(request.input)
        added: list[BaseMessage] = list(graph_input.get("messages") or [])
        for message in added:
            message.id = message.id or str(uuid.uuid4())
            message.response_metadata.setdefault("created_at", now_stamp())
        return graph_input, added
    content = request.content or ""
    human = HumanMessage(
        # A list of content blocks is stored and sent to the model as given.
        content if isinstance(content, str) else list[str | dict[Any, Any]](content),
        id=request.message_id or str(uuid.uuid4()),
        response_metadata={"created_at": now_stamp()},
    )
    return {"messages": [human]}, [human]


def checked_input(graph_input: Any) -> dict[str, Any]:
    """A run's ``input``, its ``messages`` converted to LangChain messages.

    Raises:
        InvalidInput: not an object, or messages LangChain cannot read.
    """
    if not isinstance(graph_input, Mapping):
        raise InvalidInput("a run's input must be an object", field="input")
    out = dict(graph_input)
    messages = out.get("messages")
    if messages is None:
        return out
    try:
        converted = convert_to_messages(messages if isinstance(messages, list) else [messages])
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InvalidInput(f"input.messages: {exc}", field="input.messages") from exc
    out["messages"] = [message_chunk_to_message(m) for m in converted]
    return out


def checked_request(request: TurnRequest) -> TurnRequest:
    """The request with its message or input checked (and the input's messages converted),
    before anything is leased."""
    if request.resume or request.replay:
        return request
    if request.input is not None and request.content is not None:
        raise InvalidInput("give content or input, not both", field="input")
    if request.input is not None:
        graph_input = checked_input(request.input)
        for i, message in enumerate(graph_input.get("messages") or []):
            # An assistant message calling tools may have no content; a user's may not.
            if message.type == "human" or message.content:
                check_content(message.content, field=f"input.messages[{i}].content")
        return replace(request, input=graph_input)
    check_content(request.content)
    return request


def check_input_keys(agent: CompiledAgent, graph_input: Any) -> None:
    """Refuse input keys the graph's input schema does not have (LangGraph drops them)."""
    accepted = agent.input_keys
    if accepted is None or not isinstance(graph_input, Mapping):
        return
    unknown = sorted(set(graph_input) - accepted)
    if unknown:
        raise InvalidInput(
            f"the graph's input has no {unknown}", field="input", accepted=sorted(accepted)
        )


def turn_config(
    lease: Lease,
    request: TurnRequest,
    guard: TurnGuard,
    timer: ModelTimer,
    agent: CompiledAgent,
) -> RunnableConfig:
    """The graph's config for one turn: the agent's configuration, the thread and the
    session's identity, the guard, callbacks and metadata.

    Every graph finds the agent's fields (``system_prompt``, ``model``, ``tools``, …, see
    :meth:`~runtime.agents.TemplateSpec.configurable_values`) and the caller's identity
    (``session_id``, ``owner``, ``session_metadata``) in ``config["configurable"]``.
    """
    config: RunnableConfig = {
        "configurable": {
            **agent.configurable,
            **{k: v for k, v in (request.configurable or {}).items() if not is_reserved_key(k)},
            "session_id": lease.session_id,
            "owner": lease.owner,
            "session_metadata": lease.session_metadata,
            "agent_id": lease.agent_id,
            "thread_id": lease.thread_id,
            CONFIG_KEY_GUARD: guard,
            CONFIG_KEY_AGENT: agent,
            # The committed checkpoint is the thread's latest (the lease rolled back
            # anything newer): the saver may serve it from memory.
            EXPECTED_CHECKPOINT: lease.committed_checkpoint_id,
        },
        "callbacks": [timer],
        "metadata": {
            **(request.metadata or {}),
            "session_id": lease.session_id,
            "owner": lease.owner,
        },
        # The guard ends the turn at max_steps model calls; this is a backstop.
        "recursion_limit": guard.budgets.max_steps * 3 + 10,
    }
    if request.checkpoint_id:
        config["configurable"]["checkpoint_id"] = request.checkpoint_id
    if request.run_id:
        config["run_id"] = UUID(request.run_id)
    return config


async def apply_input(graph: Any, graph_input: Any, config: RunnableConfig) -> RunnableConfig:
    """Write the turn's input into a checkpoint of its own (the state before the graph's
    first node answers, as per-step checkpoints have it) and return the config that continues
    the turn from there with no input.

    With one checkpoint per turn this is what lets a client regenerate an answer (run from
    this checkpoint with no input) or edit the input (run from its parent with a new one).
    Its writes are deferred like the turn's; the saver serves it from memory to the rest of
    the turn (:data:`EXPECTED_CHECKPOINT`).
    """
    if not config["configurable"].get(EXPECTED_CHECKPOINT) and not config["configurable"].get(
        "checkpoint_id"
    ):
        # A new thread starts from an empty input checkpoint, as LangGraph's own first one,
        # so that the first input can be edited too (a run from it with a new input).
        config = _continuing(config, await graph.aupdate_state(config, {}, as_node="__input__"))
    written = await graph.aupdate_state(config, graph_input, as_node="__start__")
    return _continuing(config, written)


def _continuing(config: RunnableConfig, written: RunnableConfig) -> RunnableConfig:
    """``config`` continuing from the checkpoint just ``written`` (read back from memory)."""
    configurable = {k: v for k, v in config["configurable"].items() if k != "checkpoint_id"}
    configurable[EXPECTED_CHECKPOINT] = written["configurable"]["checkpoint_id"]
    return {**config, "configurable": configurable}


def _updated_messages(update: Any) -> list[BaseMessage]:
    """Messages a node wrote, whether it returned a dict or (tools) a list of updates."""
    parts = update if isinstance(update, list) else [update]
    out: list[BaseMessage] = []
    for part in parts:
        if isinstance(part, dict):
            value = part.get("messages") or []
            out.extend(m for m in (value if isinstance(value, list) else [value]))
    return [m for m in out if isinstance(m, BaseMessage)]


def pending_of(interrupts: Iterable[Any]) -> list[dict[str, Any]]:
    """What a paused turn waits for: the approval node's pending calls, or else each of the
    graph's own interrupts as ``{"type": "interrupt", "id", "value"}``."""
    interrupts = list(interrupts)
    first = interrupts[0].value if interrupts else None
    if isinstance(first, dict) and first.get("type") == "approval":
        return list(first.get("pending", []))
    return [{"type": "interrupt", "id": i.id, "value": _json_ready(i.value)} for i in interrupts]


def split_pending(
    pending: Iterable[Mapping[str, Any]] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a paused session waits for, as ``(approvals, interrupts)``: tool calls for a
    decision, and the graph's own interrupts (``{"id", "value"}``) for a value."""
    approvals: list[dict[str, Any]] = []
    interrupts: list[dict[str, Any]] = []
    for p in pending or ():
        if p.get("type") == "interrupt":
            interrupts.append({"id": p.get("id"), "value": p.get("value")})
        else:
            approvals.append(dict(p))
    return approvals, interrupts


def waits_for_value(pending: Iterable[Mapping[str, Any]] | None) -> bool:
    """Whether a paused session waits for a value for the graph's own ``interrupt()`` (else
    for decisions on tool calls)."""
    return any(p.get("type") == "interrupt" for p in pending or ())


def _json_ready(value: Any) -> Any:
    """An interrupt's value as JSON (it is stored with the session): models as their dump."""

    def default(obj: Any) -> Any:
        dump = getattr(obj, "model_dump", None)
        return dump(mode="json") if callable(dump) else str(obj)

    return json.loads(json.dumps(value, default=default))


class GraphStream:
    """Consumes one graph run's stream parts, for the turn's result and its events.

    Attributes:
        modes: the stream modes to ask ``graph.astream`` for.
        added: every message the turn added, in order (starting with the user's).
        pending: the tool calls the turn paused on for approval (None: it did not pause).
        breakpoint: whether it stopped at a static breakpoint.
    """

    def __init__(
        self,
        emit: Emit | None,
        stream_modes: Iterable[str],
        added: list[BaseMessage],
        subgraphs: bool = False,
    ) -> None:
        self._emit = emit
        # Raw parts of these modes go out as ``chunk`` events (only when streaming).
        self._raw = set(stream_modes) if emit else set()
        # "events": LangChain's astream_events (v2) events, each as a chunk of that mode.
        self.events = "events" in self._raw
        modes = ["updates", "messages"] if emit else ["updates"]
        self.modes = modes + sorted(self._raw - set(modes) - {"events"})
        self.added = added
        self.subgraphs = subgraphs
        self.pending: list[dict[str, Any]] | None = None
        self.breakpoint = False  # it stopped at a static breakpoint
        self._streamed = False  # tokens went out since the last complete message

    def parts(self, graph: Any, graph_input: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        """The graph run's stream parts (``graph.astream``), read from its ``astream_events``
        when the events are asked for too (the root graph's ``on_chain_stream`` events carry
        the same parts)."""
        kwargs.update(stream_mode=self.modes, subgraphs=self.subgraphs)
        if not self.events:
            return graph.astream(graph_input, config, **kwargs)
        return self._from_events(graph.astream_events(graph_input, config, version="v2", **kwargs))

    async def _from_events(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for event in events:
            if self._emit:
                self._emit(TurnEvent("chunk", {"mode": "events", "data": event}))
            if event["event"] == "on_chain_stream" and not event.get("parent_ids"):
                yield event["data"]["chunk"]

    async def consume(self, parts: AsyncIterator[Any]) -> None:
        """Read every ``(mode, chunk)`` part of the run (``(ns, mode, chunk)`` with
        subgraphs; only the root graph's updates are the turn's messages)."""
        async for part in parts:
            ns, mode, chunk = part if self.subgraphs else ((), *part)
            if self._emit and mode in self._raw:
                data = {"mode": mode, "data": chunk}
                self._emit(TurnEvent("chunk", {**data, "ns": list(ns)} if ns else data))
            if mode == "messages":
                self._on_token(chunk[0])
            elif mode == "updates" and not ns:
                self._on_updates(chunk)

    def _on_token(self, message: Any) -> None:
        # Tokens of every model call a node streams (a summariser's are tagged nostream).
        if self._emit and isinstance(message, AIMessageChunk) and message.text:
            self._emit(TurnEvent("token", {"content": message.text}))
            self._streamed = True

    def _on_updates(self, chunk: dict[str, Any]) -> None:
        if _INTERRUPT in chunk:
            # No interrupts: a static breakpoint (interrupt_before / interrupt_after).
            self.pending = pending_of(chunk[_INTERRUPT])
            self.breakpoint = not chunk[_INTERRUPT]
            return
        for node, update in chunk.items():
            for message in _updated_messages(update):
                # The state reducer stamps messages too, but updates stream before it
                # runs; the same object gets the same stamp either way.
                message.response_metadata.setdefault("created_at", now_stamp())
                self.added.append(message)
                if self._emit:
                    self._on_message(self._emit, node, message)

    def _on_message(self, emit: Emit, node: str, message: BaseMessage) -> None:
        if isinstance(message, AIMessage) and message.text and not self._streamed:
            # Not streamed by a model (a budget's final word, a node's own message): send
            # its text as tokens too, so tokens always add up to replies.
            emit(TurnEvent("token", {"content": message.text}))
        self._streamed = False
        emit_message(emit, message)
