"""One run of a turn's graph: its input, its config, and the loop over ``graph.astream``.

:func:`turn_input` and :func:`turn_config` build what the graph is called with;
:class:`GraphStream` consumes the stream, collecting the messages the turn added and the
approvals it waits for, and emitting the turn's events as they happen.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from runtime.checkpoints import EXPECTED_CHECKPOINT
from runtime.sessions import Lease
from runtime.turns.constants import AGENT_NODE, CONFIG_KEY_GUARD
from runtime.turns.events import Emit, TurnEvent, TurnRequest, emit_message, now_stamp
from runtime.turns.guards import TurnGuard

__all__ = ["GraphStream", "ModelTimer", "turn_config", "turn_input"]

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

    A resume answers the pending interrupt; a replay continues with no input.
    """
    if request.resume:
        return Command(resume={"decisions": request.decisions}), []
    if request.replay:
        return None, []
    content = request.content or ""
    human = HumanMessage(
        # A list of content blocks is stored and sent to the model as given.
        content if isinstance(content, str) else list[str | dict[Any, Any]](content),
        id=request.message_id or str(uuid.uuid4()),
        response_metadata={"created_at": now_stamp()},
    )
    return {"messages": [human]}, [human]


def turn_config(
    lease: Lease, request: TurnRequest, guard: TurnGuard, timer: ModelTimer
) -> RunnableConfig:
    """The graph's config for one turn: the thread, the guard, callbacks and metadata."""
    config: RunnableConfig = {
        "configurable": {
            "thread_id": lease.thread_id,
            CONFIG_KEY_GUARD: guard,
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


def _updated_messages(update: Any) -> list[BaseMessage]:
    """Messages a node wrote, whether it returned a dict or (tools) a list of updates."""
    parts = update if isinstance(update, list) else [update]
    out: list[BaseMessage] = []
    for part in parts:
        if isinstance(part, dict):
            value = part.get("messages") or []
            out.extend(m for m in (value if isinstance(value, list) else [value]))
    return [m for m in out if isinstance(m, BaseMessage)]


class GraphStream:
    """Consumes one graph run's stream parts, for the turn's result and its events.

    Attributes:
        modes: the stream modes to ask ``graph.astream`` for.
        added: every message the turn added, in order (starting with the user's).
        pending: the tool calls the turn paused on for approval (None: it did not pause).
    """

    def __init__(
        self, emit: Emit | None, stream_modes: Iterable[str], added: list[BaseMessage]
    ) -> None:
        self._emit = emit
        # Raw parts of these modes go out as ``chunk`` events (only when streaming).
        self._raw = set(stream_modes) if emit else set()
        modes = ["updates", "messages"] if emit else ["updates"]
        self.modes = modes + sorted(self._raw - set(modes))
        self.added = added
        self.pending: list[dict[str, Any]] | None = None
        self._streamed = False  # tokens went out since the last complete message

    async def consume(self, parts: AsyncIterator[tuple[str, Any]]) -> None:
        """Read every ``(mode, chunk)`` part of the run."""
        async for mode, chunk in parts:
            if self._emit and mode in self._raw:
                self._emit(TurnEvent("chunk", {"mode": mode, "data": chunk}))
            if mode == "messages":
                message, meta = chunk
                self._on_token(message, meta)
            elif mode == "updates":
                self._on_updates(chunk)

    def _on_token(self, message: Any, meta: dict[str, Any]) -> None:
        if (
            self._emit
            and isinstance(message, AIMessageChunk)
            and message.text
            and meta.get("langgraph_node") == AGENT_NODE
        ):
            self._emit(TurnEvent("token", {"content": message.text}))
            self._streamed = True

    def _on_updates(self, chunk: dict[str, Any]) -> None:
        if _INTERRUPT in chunk:
            self.pending = list(chunk[_INTERRUPT][0].value.get("pending", []))
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
        if (
            node == AGENT_NODE
            and isinstance(message, AIMessage)
            and message.text
            and not self._streamed
        ):
            # Not from the model (a budget's final word): send its text as tokens too, so
            # tokens always add up to replies.
            emit(TurnEvent("token", {"content": message.text}))
        self._streamed = False
        emit_message(emit, message)
