"""A session's messages as resources: read one, append one without a turn, edit, delete.

Every change is a LangGraph state update on the session's thread (:meth:`ThreadStates.
update_with`): it runs under the session's turn lease, so it never races a turn, and it is
one new committed checkpoint, so Studio, the LangGraph API and time travel see it as they see
a turn. Messages are changed by id, as LangGraph's ``add_messages`` reducer does: a message
with a known id replaces it, a ``RemoveMessage`` removes it from this checkpoint on.

The rules that keep a history valid for a model (written once here):

- Deleting an assistant message that called tools deletes the results of those calls too;
  the answer lists every message removed.
- A tool result cannot be deleted alone (that would leave its call unanswered) nor appended
  without an unanswered call of that id: delete or extend the assistant message instead.
- An edit keeps the message's id, role, tool calls and ``created_at``; it records
  ``edited_at`` and the previous content in ``revisions`` (``response_metadata``, which
  chat-model clients never send to a provider).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

from runtime.errors import Conflict, InvalidInput, NotFound
from runtime.ids import validate_id
from runtime.sessions import SessionStore, check_metadata
from runtime.threads.states import ThreadStates
from runtime.turns import check_content, message_to_dict, now_stamp

__all__ = ["MAX_REVISIONS", "MessageChange", "NewMessage", "SessionMessages", "Role"]

Role = Literal["user", "assistant", "system", "tool"]
ROLES: tuple[Role, ...] = ("user", "assistant", "system", "tool")
MAX_REVISIONS = 20
"""Previous contents kept per message (the oldest are dropped first)."""


@dataclass(frozen=True)
class NewMessage:
    """A message to append without running the agent."""

    role: Role
    content: Any
    tool_call_id: str | None = None
    name: str | None = None
    metadata: Mapping[str, Any] | None = None
    message_id: str | None = None  # chosen by the caller; generated when None


@dataclass(frozen=True)
class MessageChange:
    """What a change wrote: the message as it now is (none for a delete), every message it
    removed, and the new committed checkpoint."""

    checkpoint_id: str
    message: dict[str, Any] | None = None
    removed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checkpoint_id": self.checkpoint_id}
        if self.message is not None:
            out["message"] = self.message
        else:
            out["removed"] = self.removed
        return out


def _messages(values: Mapping[str, Any]) -> list[BaseMessage]:
    if "messages" not in values and values:
        raise InvalidInput("this session's graph has no messages channel", field="messages")
    return list(values.get("messages") or [])


def find_message(messages: list[BaseMessage], message_id: str) -> BaseMessage:
    """The message with this id.

    Raises:
        NotFound: no message has it.
    """
    for message in messages:
        if message.id == message_id:
            return message
    raise NotFound(f"message {message_id!r} not found", message_id=message_id)


def _answered(messages: list[BaseMessage]) -> set[str]:
    return {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}


def removal(messages: list[BaseMessage], message_id: str) -> list[BaseMessage]:
    """The messages deleting ``message_id`` removes: it, and the results of its tool calls.

    Raises:
        NotFound: no such message.
        Conflict: it is a tool result (deleting it alone would orphan its call).
    """
    target = find_message(messages, message_id)
    if isinstance(target, ToolMessage):
        caller = next(
            (
                m.id
                for m in messages
                if isinstance(m, AIMessage)
                and any(c["id"] == target.tool_call_id for c in m.tool_calls)
            ),
            None,
        )
        raise Conflict(
            "a tool result cannot be deleted alone: delete the assistant message that made "
            "the call, which removes its results with it",
            message_id=message_id,
            tool_call_id=target.tool_call_id,
            assistant_message_id=caller,
        )
    calls = {c["id"] for c in target.tool_calls} if isinstance(target, AIMessage) else set()
    results = [m for m in messages if isinstance(m, ToolMessage) and m.tool_call_id in calls]
    return [target, *results]


def _check_tool_result(messages: list[BaseMessage], tool_call_id: str | None) -> None:
    if not tool_call_id:
        raise InvalidInput("a tool message needs the tool_call_id it answers", field="tool_call_id")
    called = {c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    if tool_call_id not in called:
        raise InvalidInput(
            f"no assistant message called a tool with id {tool_call_id!r}",
            field="tool_call_id",
        )
    if tool_call_id in _answered(messages):
        raise Conflict(f"tool call {tool_call_id!r} already has a result", field="tool_call_id")


def build_message(new: NewMessage, messages: list[BaseMessage]) -> BaseMessage:
    """The LangChain message to append for ``new``, checked against the history.

    Raises:
        InvalidInput: an unknown role, bad content, metadata or id, or a tool result that
            answers no call.
        Conflict: the chosen id is taken, or the tool call already has a result.
        PayloadTooLarge: content or metadata over its limit.
    """
    if new.role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    check_content(new.content)
    meta: dict[str, Any] = {"created_at": now_stamp()}
    if new.metadata:
        meta["metadata"] = check_metadata(dict(new.metadata))
    message_id = new.message_id or str(uuid.uuid4())
    validate_id(message_id, kind="message_id")
    if any(m.id == message_id for m in messages):
        raise Conflict(f"message {message_id!r} exists", message_id=message_id)
    common = {"content": new.content, "name": new.name, "id": message_id}
    if new.role == "tool":
        _check_tool_result(messages, new.tool_call_id)
        return ToolMessage(**common, tool_call_id=new.tool_call_id or "", response_metadata=meta)
    kinds = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}
    return kinds[new.role](**common, response_metadata=meta)


def edited(
    message: BaseMessage, content: Any | None, metadata: Mapping[str, Any] | None
) -> BaseMessage:
    """A copy of ``message`` (same id) with new content and/or metadata, the edit recorded.

    Raises:
        InvalidInput: nothing to change, or bad content or metadata.
        PayloadTooLarge: content or metadata over its limit.
    """
    if content is None and metadata is None:
        raise InvalidInput("give content, metadata or both to change", field="content")
    meta = dict(message.response_metadata)
    stamp = now_stamp()
    if content is not None:
        check_content(content)
        revision = {"content": message.content, "until": stamp}
        meta["revisions"] = [*meta.get("revisions", []), revision][-MAX_REVISIONS:]
    if metadata is not None:
        meta["metadata"] = check_metadata(dict(metadata))
    meta["edited_at"] = stamp
    update: dict[str, Any] = {"response_metadata": meta}
    if content is not None:
        update["content"] = content
    return message.model_copy(update=update)


class SessionMessages:
    """Messages of sessions as resources (see the module docstring)."""

    def __init__(self, states: ThreadStates, sessions: SessionStore) -> None:
        self._states = states
        self._sessions = sessions

    async def get(self, owner: str, session_id: str, message_id: str) -> dict[str, Any]:
        """One message of the committed conversation, as the API shows it.

        Raises:
            NotFound: no such session or message.
        """
        session = await self._sessions.get(owner, session_id)
        values = (await self._states.state(session)).values
        return message_to_dict(find_message(_messages(values or {}), message_id))

    async def append(self, owner: str, session_id: str, new: NewMessage) -> MessageChange:
        """Append a message of any role without running the agent; one new checkpoint."""

        def plan(values: dict[str, Any]) -> tuple[dict[str, Any], BaseMessage]:
            message = build_message(new, _messages(values))
            return {"messages": [message]}, message

        checkpoint_id, message = await self._states.update_with(owner, session_id, plan)
        return MessageChange(checkpoint_id, message=message_to_dict(message))

    async def edit(
        self,
        owner: str,
        session_id: str,
        message_id: str,
        *,
        content: Any | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MessageChange:
        """Replace a message's content and/or metadata by id, keeping the previous content."""

        def plan(values: dict[str, Any]) -> tuple[dict[str, Any], BaseMessage]:
            message = edited(find_message(_messages(values), message_id), content, metadata)
            return {"messages": [message]}, message

        checkpoint_id, message = await self._states.update_with(owner, session_id, plan)
        return MessageChange(checkpoint_id, message=message_to_dict(message))

    async def delete(self, owner: str, session_id: str, message_id: str) -> MessageChange:
        """Remove a message (and its tool calls' results) from the conversation."""

        def plan(values: dict[str, Any]) -> tuple[dict[str, Any], list[BaseMessage]]:
            gone = removal(_messages(values), message_id)
            return {"messages": [RemoveMessage(id=m.id or "") for m in gone]}, gone

        checkpoint_id, gone = await self._states.update_with(owner, session_id, plan)
        return MessageChange(checkpoint_id, removed=[message_to_dict(m) for m in gone])
