"""Guardrails for one turn: budgets, tool permissions, idempotent writes, approvals.

The compiled graph is shared by every session of a template version, so nothing here is
compiled in. The turn runner builds a :class:`TurnGuard` per turn and hands it to the graph
in ``config["configurable"][CONFIG_KEY_GUARD]`` (an object, so it never lands in checkpoint
metadata). The graph's nodes ask it:

- the ``agent`` node, before each model call: may the turn go on (``max_steps``,
  ``deadline_seconds``, a budget already hit)? Which tools may the model be offered (the
  caller's roles)? The model call itself runs under the deadline, and malformed responses
  are retried here with a bounded backoff;
- the ``approve`` node: which calls need a human (``requires_approval``)?
- the ``tools`` node (``ToolNode``'s ``awrap_tool_call``), per call: is it permitted, within
  ``max_tool_calls`` / ``max_write_calls`` / ``max_repeated_calls``, already recorded (an
  idempotent write), rejected by a human? It runs under the tool timeout; a tool that raises
  or times out becomes an error tool result and the model carries on.

When a budget stops a turn, every call of the pending assistant message still gets a tool
result ("not executed"), and the next ``agent`` step answers with a final assistant message
instead of calling the model, so the stored conversation stays valid for the next turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import Runnable
from langgraph.errors import GraphRecursionError
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict, Field

from runtime.agents import MAX_STEPS, Budgets, TemplateSpec
from runtime.db import Pool, execute, fetch_one
from runtime.errors import BudgetExceeded, InvalidInput, ModelBadResponse
from runtime.keys import ADMIN_ROLE
from runtime.tools import ToolRegistry, ToolSpec
from runtime.turns.constants import CONFIG_KEY_GUARD
from runtime.turns.sql import INSERT_TOOL_RECORD_SQL, SELECT_TOOL_RECORD_SQL

__all__ = [
    "BudgetLimits",
    "Decision",
    "ToolRecords",
    "TurnGuard",
    "effective_budgets",
    "guard_of",
    "guarded_tool_call",
    "hard_bounds",
    "template_tools",
]

log = logging.getLogger(__name__)

# Errors that mean the model endpoint answered something unusable (bad JSON, a body that
# does not parse as a completion). The OpenAI client already retries timeouts, 429 (with
# Retry-After) and 5xx itself; these it does not, so the guard does.
MALFORMED_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, TypeError)


class BudgetLimits(BaseModel):
    """Per-request budgets. Each may only tighten the template's (a looser one is ignored)."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    deadline_seconds: float | None = Field(default=None, gt=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_write_calls: int | None = Field(default=None, ge=0)
    max_repeated_calls: int | None = Field(default=None, ge=1)


def effective_budgets(template: Budgets, request: BudgetLimits | None) -> Budgets:
    """The tighter of the template's and the request's value for every budget."""
    if request is None:
        return template
    merged: dict[str, Any] = {}
    for name in Budgets.model_fields:
        mine, asked = getattr(template, name), getattr(request, name)
        merged[name] = mine if asked is None else asked if mine is None else min(mine, asked)
    return Budgets(**merged)


def template_tools(registry: ToolRegistry, spec: TemplateSpec) -> list[ToolSpec]:
    """A template's tools from the registry, with the template's own approval list applied."""
    tools = registry.resolve(spec.tools)
    extra = set(spec.require_approval)
    return [replace(t, requires_approval=True) if t.name in extra else t for t in tools]


def _canonical_args(args: Mapping[str, Any]) -> str:
    """Arguments as canonical JSON: the same call always gives the same string."""
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)


def _call_key(name: str, args: Mapping[str, Any]) -> str:
    key = args.get("idempotency_key")
    basis = f"key:{key}" if isinstance(key, str) and key else _canonical_args(args)
    return hashlib.sha256(f"{name}\x00{basis}".encode()).hexdigest()


class ToolRecords:
    """Results of write tools, per session thread, in Postgres (they outlive restarts)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def get(self, thread_id: str, key: str) -> str | None:
        """The recorded result of the call ``key`` on this thread, if any."""
        row = await fetch_one(self._pool, SELECT_TOOL_RECORD_SQL, (thread_id, key))
        return None if row is None else str(row["content"])

    async def put(self, thread_id: str, key: str, tool: str, content: str) -> None:
        """Record a call's result (a record already there is kept)."""
        await execute(self._pool, INSERT_TOOL_RECORD_SQL, (thread_id, key, tool, content))


class Decision(BaseModel):
    """A human's answer to one pending tool call."""

    model_config = ConfigDict(extra="forbid")

    tool_call_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The pending call this decides; omitted: every pending call not named.",
    )
    action: Literal["approve", "reject", "edit"]
    args: dict[str, Any] | None = Field(
        default=None, description="For `edit`: the arguments to run the tool with instead."
    )
    reason: str | None = Field(default=None, max_length=2000)


class _DeadlineReached(Exception):
    pass


@dataclass
class TurnGuard:
    """The budgets, permissions and approvals of one turn (see the module docstring)."""

    budgets: Budgets
    specs: Mapping[str, ToolSpec]
    roles: frozenset[str] = frozenset({ADMIN_ROLE})
    thread_id: str | None = None
    records: ToolRecords | None = None
    tool_timeout_seconds: float = 30.0
    model_retries: int = 2
    retry_backoff_seconds: float = 0.5
    decisions: dict[str, Decision] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    steps: int = 0
    tool_calls: int = 0
    write_calls: int = 0
    repeats: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    stop_reason: str | None = None

    # -- permissions ------------------------------------------------------------------------

    def permits(self, spec: ToolSpec) -> bool:
        """Whether the caller's roles allow this tool (admins may use every tool)."""
        return not spec.roles or ADMIN_ROLE in self.roles or bool(spec.roles & self.roles)

    @property
    def allowed(self) -> frozenset[str]:
        """The tools the model is offered this turn."""
        return frozenset(name for name, spec in self.specs.items() if self.permits(spec))

    # -- budgets ----------------------------------------------------------------------------

    def remaining(self) -> float | None:
        """Seconds left before ``deadline_seconds`` (None: no deadline)."""
        if self.budgets.deadline_seconds is None:
            return None
        return self.budgets.deadline_seconds - (time.monotonic() - self.started)

    def stop(self, budget: str, detail: str) -> None:
        """Stop the turn at the next model step, naming the budget in the warnings."""
        if self.stop_reason is None:
            self.stop_reason = budget
            self.warnings.append(f"{budget}: {detail}")

    def final_message(self) -> AIMessage:
        """The assistant's last word when a budget stopped the turn."""
        return AIMessage(
            f"I stopped before finishing because this turn reached its {self.stop_reason} "
            "budget. Tell me to continue if you want me to carry on."
        )

    def before_model(self) -> bool:
        """Count a model step; False when the turn must end instead."""
        if self.stop_reason is None:
            if self.steps >= self.budgets.max_steps:
                self.stop("max_steps", f"the turn used its {self.budgets.max_steps} model steps")
            elif (left := self.remaining()) is not None and left <= 0:
                self.stop(
                    "deadline_seconds", f"the turn ran past {self.budgets.deadline_seconds} s"
                )
        if self.stop_reason is not None:
            return False
        self.steps += 1
        return True

    async def invoke_model(
        self, model: Runnable[Any, BaseMessage], prompt: Sequence[BaseMessage], config: Any
    ) -> BaseMessage:
        """Call the model under the deadline, retrying malformed answers with backoff.

        Returns the final budget message instead when the deadline passes mid-call.
        """
        if not self.before_model():
            return self.final_message()
        attempt = 0
        while True:
            try:
                return await self._within_deadline(model.ainvoke(prompt, config))
            except _DeadlineReached:
                self.stop(
                    "deadline_seconds",
                    f"the model did not answer within the {self.budgets.deadline_seconds} s "
                    "deadline",
                )
                return self.final_message()
            except MALFORMED_ERRORS as exc:
                attempt += 1
                delay = self.retry_backoff_seconds * 2 ** (attempt - 1)
                left = self.remaining()
                if attempt > self.model_retries or (left is not None and left < delay):
                    raise ModelBadResponse(
                        f"the model's response was malformed ({type(exc).__name__}) "
                        f"after {attempt} attempt(s)",
                        retryable=True,
                    ) from exc
                log.warning("malformed model response (%s); retry %d", exc, attempt)
                await asyncio.sleep(delay)

    async def _within_deadline(self, awaitable: Awaitable[Any]) -> Any:
        left = self.remaining()
        if left is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, timeout=max(left, 0.001))
        except TimeoutError as exc:
            raise _DeadlineReached from exc

    # -- tool calls -------------------------------------------------------------------------

    def pending_approvals(self, calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The calls that need a human decision before they run."""
        return [
            {"tool_call_id": c["id"], "name": c["name"], "args": c["args"]}
            for c in calls
            if (spec := self.specs.get(c["name"])) is not None
            and spec.requires_approval
            and self.permits(spec)
            and c["id"] not in self.decisions
        ]

    def accept_decisions(
        self, pending: Sequence[Mapping[str, Any]], raw: Any
    ) -> dict[str, Decision]:
        """Validate a resume value: one decision per pending call, nothing else.

        A decision without ``tool_call_id`` applies to every pending call that has no
        decision of its own ("approve all"); it may not be an ``edit``.
        """
        items = raw.get("decisions") if isinstance(raw, dict) else raw
        if not isinstance(items, list):
            raise InvalidInput("resume with {'decisions': [...]}, one per pending call")
        try:
            decisions = [Decision.model_validate(d) for d in items]
        except Exception as exc:
            raise InvalidInput(f"invalid decision: {exc}") from exc
        wanted = [p["tool_call_id"] for p in pending]
        named = [d for d in decisions if d.tool_call_id is not None]
        blanket = [d for d in decisions if d.tool_call_id is None]
        given = {d.tool_call_id for d in named}
        if (
            len(blanket) > 1
            or len(given) != len(named)
            or not given <= set(wanted)
            or (not blanket and given != set(wanted))
        ):
            raise InvalidInput(
                "give one decision per pending call (or one without tool_call_id for all)",
                pending=wanted,
                given=sorted(str(g) for g in given),
            )
        for d in decisions:
            if d.action == "edit" and d.args is None:
                raise InvalidInput("an edit decision needs args", tool_call_id=d.tool_call_id)
            if d.action == "edit" and d.tool_call_id is None:
                raise InvalidInput("an edit decision must name its tool_call_id")
        resolved = {str(d.tool_call_id): d for d in named}
        for call_id in wanted:
            if call_id not in resolved:
                resolved[call_id] = blanket[0].model_copy(update={"tool_call_id": call_id})
        self.decisions.update(resolved)
        return self.decisions

    def _refusal(self, call: Mapping[str, Any], spec: ToolSpec | None) -> str | None:
        """Why this call must not run (and count it if it may)."""
        name = call["name"]
        if spec is None:
            return f"error: unknown tool {name!r}; not executed"
        if not self.permits(spec):
            return f"error: tool {name!r} is not permitted for this caller; not executed"
        decision = self.decisions.get(call["id"])
        if decision is not None and decision.action == "reject":
            why = f": {decision.reason}" if decision.reason else ""
            return f"rejected by a human reviewer{why}; not executed"
        if self.stop_reason is not None:
            return f"not executed: the turn reached its {self.stop_reason} budget"
        b = self.budgets
        if (left := self.remaining()) is not None and left <= 0:
            self.stop("deadline_seconds", f"the turn ran past {b.deadline_seconds} s")
        elif b.max_tool_calls is not None and self.tool_calls >= b.max_tool_calls:
            self.stop("max_tool_calls", f"the turn made its {b.max_tool_calls} tool calls")
        elif (
            spec.writes and b.max_write_calls is not None and self.write_calls >= b.max_write_calls
        ):
            self.stop("max_write_calls", f"the turn made its {b.max_write_calls} write calls")
        else:
            key = _call_key(name, call["args"])
            if b.max_repeated_calls is not None and self.repeats[key] >= b.max_repeated_calls:
                self.stop(
                    "max_repeated_calls",
                    f"{name} was called {b.max_repeated_calls} time(s) with the same arguments",
                )
            else:
                self.repeats[key] += 1
                self.tool_calls += 1
                self.write_calls += int(spec.writes)
                return None
        return f"not executed: the turn reached its {self.stop_reason} budget"

    async def run_tool(
        self,
        call: Mapping[str, Any],
        execute: Callable[[Mapping[str, Any]], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Run one tool call through every guard; always returns a result for the call."""
        spec = self.specs.get(call["name"])
        refusal = self._refusal(call, spec)
        if refusal is not None:
            return ToolMessage(refusal, tool_call_id=call["id"], name=call["name"], status="error")
        assert spec is not None
        decision = self.decisions.get(call["id"])
        if decision is not None and decision.action == "edit" and decision.args is not None:
            call = {**call, "args": decision.args}
        key = _call_key(spec.name, call["args"])
        record = spec.writes and spec.idempotent and self.records is not None and self.thread_id
        if record:
            assert self.records is not None and self.thread_id is not None
            recorded = await self.records.get(self.thread_id, key)
            if recorded is not None:
                return ToolMessage(recorded, tool_call_id=call["id"], name=spec.name)
        timeout = self.tool_timeout_seconds
        if (left := self.remaining()) is not None:
            timeout = min(timeout, max(left, 0.001))
        try:
            result = await asyncio.wait_for(execute(call), timeout=timeout)
        except TimeoutError:
            return ToolMessage(
                f"error: {spec.name} did not finish within {timeout:.3g} s",
                tool_call_id=call["id"],
                name=spec.name,
                status="error",
            )
        if (
            record
            and isinstance(result, ToolMessage)
            and result.status != "error"
            and self.records is not None
            and self.thread_id is not None
        ):
            await self.records.put(self.thread_id, key, spec.name, result.text)
        return result


# How long past ``deadline_seconds`` a turn may run before it is stopped and rolled back (the
# built-in graph ends cleanly at the deadline itself; this bounds every other graph).
HARD_DEADLINE_GRACE_SECONDS = 2.0


@asynccontextmanager
async def hard_bounds(guard: TurnGuard) -> AsyncIterator[None]:
    """Bound a graph run by the turn's deadline (plus a grace) and its step limit.

    Raises:
        BudgetExceeded: the run passed either bound; the caller rolls the turn back.
    """
    left = guard.remaining()
    deadline = guard.budgets.deadline_seconds
    try:
        async with asyncio.timeout(
            None if left is None else max(left, 0) + HARD_DEADLINE_GRACE_SECONDS
        ) as bound:
            yield
    except TimeoutError as exc:
        if not bound.expired():
            raise
        raise BudgetExceeded(
            f"the turn ran past its {deadline} s deadline and was rolled back",
            budget="deadline_seconds",
            limit=deadline,
        ) from exc
    except GraphRecursionError as exc:
        raise BudgetExceeded(
            f"the graph ran past its step limit ({guard.budgets.max_steps} model steps) and "
            "was rolled back",
            budget="max_steps",
            limit=guard.budgets.max_steps,
        ) from exc


def guard_of(config: Mapping[str, Any]) -> TurnGuard | None:
    """The turn's guard in a graph's config (None: the graph runs unguarded)."""
    guard = (config.get("configurable") or {}).get(CONFIG_KEY_GUARD)
    return guard if isinstance(guard, TurnGuard) else None


async def guarded_tool_call(request: Any, execute: Callable[[Any], Awaitable[Any]]) -> Any:
    """``ToolNode``'s ``awrap_tool_call``: route each call through the turn's guard.

    Without a guard (``langgraph dev``, Studio) tools run as plain ``ToolNode`` runs them.
    """
    guard = guard_of(getattr(request.runtime, "config", None) or {})
    if guard is None:
        return await execute(request)

    async def run(call: Mapping[str, Any]) -> Any:
        return await execute(request.override(tool_call={**request.tool_call, **call}))

    return await guard.run_tool(request.tool_call, run)
