"""A session's graph state as LangGraph threads show it: state, history, state updates; and
its messages as resources (read, append without a turn, edit, delete)."""

from __future__ import annotations

from runtime.threads.messages import MessageChange, NewMessage, SessionMessages
from runtime.threads.states import DEFAULT_HISTORY, MAX_HISTORY, ThreadStates

__all__ = [
    "DEFAULT_HISTORY",
    "MAX_HISTORY",
    "MessageChange",
    "NewMessage",
    "SessionMessages",
    "ThreadStates",
]
