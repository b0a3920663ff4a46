"""Chat models: the factory for a template's model, the offline model, the summariser's
prompt, and model failures mapped to runtime errors."""

from __future__ import annotations

from runtime.models.errors import model_error
from runtime.models.factory import make_chat_model
from runtime.models.offline import OfflineChatModel
from runtime.models.prompts import SUMMARY_PREFIX, SUMMARY_PROMPT

__all__ = [
    "SUMMARY_PREFIX",
    "SUMMARY_PROMPT",
    "OfflineChatModel",
    "make_chat_model",
    "model_error",
]
