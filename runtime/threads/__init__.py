"""A session's graph state as LangGraph threads show it: state, history, state updates."""

from __future__ import annotations

from runtime.threads.states import DEFAULT_HISTORY, MAX_HISTORY, ThreadStates

__all__ = ["DEFAULT_HISTORY", "MAX_HISTORY", "ThreadStates"]
