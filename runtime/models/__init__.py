"""Chat models: the factory for a template's model, and the offline model."""

from __future__ import annotations

from runtime.models.factory import make_chat_model
from runtime.models.offline import OfflineChatModel

__all__ = [
    "OfflineChatModel",
    "make_chat_model",
]
