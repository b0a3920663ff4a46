"""Chat completions: OpenAI's conversation shape run as turns of an agent, stateful (a
session keeps the history) or stateless (the request carries it)."""

from __future__ import annotations

from runtime.completions.conversation import Completions, turn_messages

__all__ = ["Completions", "turn_messages"]
