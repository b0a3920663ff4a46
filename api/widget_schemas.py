"""Bodies of the widget routes and of the admin API's publishable keys."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import MessageContent
from runtime.ids import ID_PATTERN
from runtime.widgets import PublishableKey

__all__ = [
    "PublishableKeyCreate",
    "PublishableKeyCreated",
    "PublishableKeyPublic",
    "WidgetMessage",
    "WidgetSession",
]


class PublishableKeyCreate(BaseModel):
    """A new widget key: its owner, the one agent it chats with, the pages allowed to use it."""

    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(pattern=ID_PATTERN)
    allowed_origins: list[str] = Field(min_length=1, max_length=100)
    name: str | None = Field(default=None, max_length=200)


class PublishableKeyPublic(BaseModel):
    key_id: str
    owner: str
    agent_id: str
    allowed_origins: list[str]
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: PublishableKey) -> PublishableKeyPublic:
        return cls.model_validate(key, from_attributes=True)


class PublishableKeyCreated(PublishableKeyPublic):
    key: str = Field(description="The publishable key, for the page's script tag.")


class WidgetSession(BaseModel):
    """A visitor's new session and the token that opens it (keep it in the browser)."""

    session_id: str
    token: str
    agent_id: str


class WidgetMessage(BaseModel):
    """A visitor's message."""

    model_config = ConfigDict(extra="forbid")

    content: MessageContent
