"""Chat models: the factory for a template's model, the offline model, and the
summariser's prompt."""

from __future__ import annotations

from runtime.models.factory import make_chat_model
from runtime.models.offline import OfflineChatModel
from runtime.models.prompts import SUMMARY_PREFIX, SUMMARY_PROMPT

__all__ = [
    "SUMMARY_PREFIX",
    "SUMMARY_PROMPT",
    "OfflineChatModel",
    "make_chat_model",
]
