"""Bodies of the message resources (``/v1/sessions/{id}/messages/{message_id}``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import MessageContent, MessageCreate, MessagePublic
from runtime.errors import InvalidInput
from runtime.ids import ID_PATTERN
from runtime.threads import NewMessage

__all__ = ["MessageChangePublic", "MessageEdit", "MessageSend", "MessagesRemoved"]


class MessageSend(MessageCreate):
    """A user message that runs a turn; with ``?run=false``, a message of any role appended
    to the conversation without calling the model."""

    role: Literal["user", "assistant", "system", "tool"] = Field(
        default="user", description="With run=false: the appended message's role."
    )
    tool_call_id: str | None = Field(
        default=None, max_length=200, description="With role tool: the call it answers."
    )
    name: str | None = Field(default=None, max_length=200)
    id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="With run=false: the message's id."
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="With run=false: metadata kept on the message."
    )

    def new_message(self) -> NewMessage:
        """The message to append (``run=false``).

        Raises:
            InvalidInput: a graph ``input`` instead of ``content``.
        """
        if self.content is None:
            raise InvalidInput("run=false appends one message: give content", field="content")
        return NewMessage(
            self.role, self.content, self.tool_call_id, self.name, self.metadata, self.id
        )

    def check_turn(self) -> None:
        """A turn takes a user message only (other fields need ``run=false``)."""
        extras = self.role != "user" or self.tool_call_id or self.name or self.metadata or self.id
        if extras:
            raise InvalidInput(
                "role, tool_call_id, name, metadata and id need run=false (a turn takes a user "
                "message)",
                field="role",
            )


class MessageEdit(BaseModel):
    """New content and/or metadata for one message; the previous content is kept."""

    model_config = ConfigDict(extra="forbid")

    content: MessageContent | None = None
    metadata: dict[str, Any] | None = None


class MessageChangePublic(BaseModel):
    """A message as a change left it, and the committed checkpoint the change wrote."""

    message: MessagePublic
    checkpoint_id: str


class MessagesRemoved(BaseModel):
    """What a delete removed: the message and any tool results of its calls."""

    removed: list[MessagePublic]
    checkpoint_id: str
