"""OpenAI's chat-completion conversation, run as one turn of an agent.

The rule for what a request's ``messages`` mean is written once here:

- **With a session** (the caller names one): the server keeps the history. Only the
  request's trailing ``user`` messages (those after its last message of another role) are
  new; they are appended and the turn runs on the session's stored history. A session that
  does not exist yet is created for the agent; one of another agent is a ``Conflict``.
- **Without one** (stateless): the request's messages are the whole conversation. They run
  as the input of a throw-away session (so budgets, tool guards and streaming work as for
  any turn), deleted when the turn ends; its short TTL lets the sweeper remove it should the
  delete fail.

Messages are OpenAI's dicts (``system``/``developer``, ``user``, ``assistant`` with
``tool_calls``, ``tool``), converted by LangChain as any graph input is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from runtime.errors import InvalidInput, SessiongraphError
from runtime.ids import new_id
from runtime.sessions import SessionStore
from runtime.turns import TurnEvent, TurnRequest, TurnResult, TurnRunner

__all__ = ["STATELESS_TTL_SECONDS", "Completions", "turn_messages"]

log = logging.getLogger(__name__)

# How long a stateless request's throw-away session may outlive a failed delete.
STATELESS_TTL_SECONDS = 600
_ROLES = {"system", "developer", "user", "assistant", "tool"}


def _normal(message: Any, index: int) -> dict[str, Any]:
    if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
        raise InvalidInput(
            f"messages[{index}] needs a role: one of {', '.join(sorted(_ROLES))}",
            field=f"messages[{index}].role",
        )
    out = {k: v for k, v in message.items() if v is not None}
    if out["role"] == "developer":
        out["role"] = "system"  # OpenAI's newer name for system instructions
    out.setdefault("content", "")
    return out


def turn_messages(messages: Sequence[Any], *, stateful: bool) -> list[dict[str, Any]]:
    """The messages a request adds to the conversation (see the module docstring).

    Raises:
        InvalidInput: no messages, a message without a known role, or (with a session) no
            trailing user message.
    """
    if not messages:
        raise InvalidInput("messages must not be empty", field="messages")
    normal = [_normal(m, i) for i, m in enumerate(messages)]
    if not stateful:
        return normal
    start = len(normal)
    while start > 0 and normal[start - 1]["role"] == "user":
        start -= 1
    if start == len(normal):
        raise InvalidInput(
            "with a session, the request must end with the new user message(s); the "
            "server keeps the rest of the history",
            field="messages",
        )
    return normal[start:]


class Completions:
    """Chat completions as turns (see the module docstring)."""

    def __init__(self, sessions: SessionStore, turns: TurnRunner) -> None:
        self._sessions = sessions
        self._turns = turns

    async def _target(
        self,
        owner: str,
        agent_id: str,
        messages: Sequence[Any],
        session_id: str | None,
        roles: frozenset[str] | None,
    ) -> tuple[str, TurnRequest, bool]:
        """The session to run in, the turn, and whether that session is throw-away."""
        added = turn_messages(messages, stateful=session_id is not None)
        request = TurnRequest(input={"messages": added}, agent_id=agent_id, roles=roles)
        if session_id is not None:
            return session_id, request, False
        session, _ = await self._sessions.get_or_create(
            owner,
            new_id("chat"),
            agent_id=agent_id,
            metadata={"source": "chat.completions", "stateless": True},
            ttl_seconds=STATELESS_TTL_SECONDS,
        )
        return session.session_id, request, True

    async def run(
        self,
        owner: str,
        agent_id: str,
        messages: Sequence[Any],
        *,
        session_id: str | None = None,
        roles: frozenset[str] | None = None,
    ) -> TurnResult:
        """One completion: a turn of ``agent_id`` in ``session_id`` (or stateless)."""
        target, request, throwaway = await self._target(
            owner, agent_id, messages, session_id, roles
        )
        try:
            return await self._turns.run(owner, target, request)
        finally:
            if throwaway:
                await self._discard(owner, target)

    async def stream(
        self,
        owner: str,
        agent_id: str,
        messages: Sequence[Any],
        *,
        session_id: str | None = None,
        roles: frozenset[str] | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """:meth:`run`, yielding the turn's events; errors before the turn starts raise at
        the first iteration."""
        target, request, throwaway = await self._target(
            owner, agent_id, messages, session_id, roles
        )
        try:
            async for event in self._turns.stream(owner, target, request):
                yield event
        finally:
            if throwaway:
                await self._discard(owner, target)

    async def _discard(self, owner: str, session_id: str) -> None:
        # Busy when a dropped client left the turn running: the TTL removes it later.
        with contextlib.suppress(SessiongraphError):
            await self._sessions.delete(owner, session_id)
