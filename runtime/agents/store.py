"""Agent templates: their shape, their store in Postgres, and the compiled-graph cache.

A template is stored as one ``agents`` row whose ``spec`` column holds the JSON of
:class:`TemplateSpec`; ``version`` bumps on every change. :class:`GraphCache` compiles
each ``(agent_id, version)`` once, with the process's checkpointer, and shares the result
among every session of that version: a session is only ``(graph, thread_id)``.
"""

from __future__ import annotations

import builtins
import json
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runtime.db import Page, Pool, check_limit, decode_cursor, delete_threads, encode_cursor, text
from runtime.errors import Conflict, InvalidInput, NotFound, PermissionDenied, SessionBusy
from runtime.ids import new_id, validate_id

__all__ = [
    "ASSISTANT_SORT_KEYS",
    "DEFAULT_AGENT_ID",
    "SYSTEM_OWNER",
    "AgentTemplate",
    "Budgets",
    "GraphCache",
    "ModelSpec",
    "TemplateSpec",
    "TemplateStore",
    "default_template_spec",
    "new_id",
    "template_from_row",
    "validate_id",
]

DEFAULT_AGENT_ID = "default"
# Templates owned by SYSTEM_OWNER are visible to every owner (the default agent).
SYSTEM_OWNER = "system"

MAX_TEMPLATE_METADATA_BYTES = 16 * 1024
# The LangGraph assistant sort keys and the columns they sort on.
ASSISTANT_SORT_KEYS: dict[str, str] = {
    "assistant_id": "agent_id",
    "graph_id": "agent_id",
    "name": "spec->>'name'",
    "created_at": "created_at",
    "updated_at": "updated_at",
}


class ModelSpec(BaseModel):
    """Which chat model a template uses: ``provider`` (``openai`` or ``offline``) and name."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai", "offline"] = "offline"
    name: str = "deterministic"
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed to the model class, e.g. temperature, base_url, delay_seconds.",
    )

    @classmethod
    def parse(cls, value: str) -> ModelSpec:
        """Build from ``provider:name`` (``offline`` alone is the offline model)."""
        provider, _, name = value.partition(":")
        try:
            return cls.model_validate({"provider": provider, "name": name or "deterministic"})
        except ValidationError as exc:
            raise InvalidInput(f"invalid model {value!r}: {exc.errors()[0]['msg']}") from exc


class Budgets(BaseModel):
    """Per-turn limits, enforced by the turn's guard (:mod:`runtime.turns.guards`).

    ``max_steps`` counts model calls; ``None`` means no limit for the others.
    """

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(default=25, ge=1, le=1000)
    deadline_seconds: float | None = Field(default=None, gt=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_write_calls: int | None = Field(default=None, ge=0)
    max_repeated_calls: int | None = Field(default=None, ge=1)


class TemplateSpec(BaseModel):
    """The editable part of an agent template."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    system_prompt: str = Field(default="You are a helpful assistant.", max_length=100_000)
    model: ModelSpec = Field(default_factory=ModelSpec)
    tools: list[str] = Field(default_factory=list, max_length=64)
    require_approval: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Tools of this template that pause the turn for a human decision "
        "(besides those registered with requires_approval).",
    )
    graph_kind: str = "react"
    budgets: Budgets = Field(default_factory=Budgets)
    max_context_tokens: int | None = Field(default=None, ge=64)
    summary_model: ModelSpec | None = Field(
        default=None,
        description="With max_context_tokens: the model that summarises what is trimmed from "
        "the model's input; the summary is kept in the session's state.",
    )
    session_ttl_seconds: int | None = Field(default=None, gt=0)
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form labels (the LangGraph API shows them as assistant metadata).",
    )

    @model_validator(mode="after")
    def _approvals_name_tools(self) -> TemplateSpec:
        unknown = sorted(set(self.require_approval) - set(self.tools))
        if unknown:
            raise ValueError(f"require_approval names tools the agent does not have: {unknown}")
        return self

    @model_validator(mode="after")
    def _metadata_size(self) -> TemplateSpec:
        size = len(json.dumps(self.metadata, separators=(",", ":"), default=str).encode())
        if size > MAX_TEMPLATE_METADATA_BYTES:
            raise ValueError(
                f"metadata is {size} bytes; the limit is {MAX_TEMPLATE_METADATA_BYTES}"
            )
        return self


class AgentTemplate(BaseModel):
    """A stored template: its spec plus identity and version."""

    agent_id: str
    owner: str
    version: int
    spec: TemplateSpec
    created_at: datetime
    updated_at: datetime


def default_template_spec(model: str) -> TemplateSpec:
    """The agent that exists out of the box, so the first chat works with no setup."""
    return TemplateSpec(
        name="Default assistant",
        description="A general assistant with a calculator, a clock and a notepad.",
        system_prompt=(
            "You are a helpful assistant. Use the calculator for arithmetic, current_time "
            "for the date and time, and save_note / read_notes for the user's notes."
        ),
        model=ModelSpec.parse(model),
        tools=["calculator", "current_time", "save_note", "read_notes"],
    )


def template_from_row(row: dict[str, Any]) -> AgentTemplate:
    return AgentTemplate(
        agent_id=row["agent_id"],
        owner=row["owner"],
        version=row["version"],
        spec=TemplateSpec.model_validate(row["spec"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _editable(row: dict[str, Any] | None, agent_id: str, owner: str | None, system: bool) -> None:
    """Refuse changes by anyone but the template's owner (system templates: ``system``)."""
    if row is None or (owner is not None and row["owner"] not in (owner, SYSTEM_OWNER)):
        raise NotFound(f"agent {agent_id!r} not found", agent_id=agent_id)
    if owner is not None and row["owner"] == SYSTEM_OWNER and owner != SYSTEM_OWNER and not system:
        raise PermissionDenied(
            f"agent {agent_id!r} is a shared system agent; an admin key may change it",
            agent_id=agent_id,
        )


class TemplateStore:
    """Agent templates in the ``agents`` table.

    An owner sees its own templates and the system ones; it changes only its own (admins
    may change system templates too). Another owner's template is ``NotFound``.
    """

    def __init__(self, pool: Pool, validate: Callable[[TemplateSpec], None]) -> None:
        self._pool = pool
        self._validate = validate

    async def create(
        self, spec: TemplateSpec, *, owner: str, agent_id: str | None = None
    ) -> AgentTemplate:
        """Store a new template at version 1; an id already taken is a ``Conflict``."""
        agent_id = new_id("agt") if agent_id is None else validate_id(agent_id, kind="agent_id")
        self._validate(spec)
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO agents (agent_id, owner, spec) VALUES (%s, %s, %s) "
                    "ON CONFLICT (agent_id) DO NOTHING RETURNING *",
                    (agent_id, owner, Jsonb(spec.model_dump(mode="json"))),
                )
            ).fetchone()
        if row is None:
            raise Conflict(f"agent {agent_id!r} already exists", agent_id=agent_id)
        return template_from_row(row)

    async def ensure(self, spec: TemplateSpec, *, owner: str, agent_id: str) -> AgentTemplate:
        """Create the template unless it exists; an existing one is left as it is."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO agents (agent_id, owner, spec) VALUES (%s, %s, %s) "
                "ON CONFLICT (agent_id) DO NOTHING",
                (agent_id, owner, Jsonb(spec.model_dump(mode="json"))),
            )
        return await self.get(agent_id)

    async def get(self, agent_id: str, *, owner: str | None = None) -> AgentTemplate:
        """The current version; with ``owner``, only that owner's or a system template."""
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute("SELECT * FROM agents WHERE agent_id = %s", (agent_id,))
            ).fetchone()
        if row is None or (owner is not None and row["owner"] not in (owner, SYSTEM_OWNER)):
            raise NotFound(f"agent {agent_id!r} not found", agent_id=agent_id)
        return template_from_row(row)

    async def list(
        self,
        *,
        owner: str | None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[AgentTemplate]:
        """Templates visible to ``owner`` (all with None), by id, filtered by name substring."""
        limit = check_limit(limit)
        after = decode_cursor("agents", cursor, {"id": text})
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM agents WHERE (%(owner)s::text IS NULL "
                    " OR owner = %(owner)s OR owner = %(system)s) "
                    "AND (%(name)s::text IS NULL OR spec->>'name' ILIKE %(pattern)s) "
                    "AND (%(after)s::text IS NULL OR agent_id > %(after)s) "
                    "ORDER BY agent_id LIMIT %(n)s",
                    {
                        "owner": owner,
                        "system": SYSTEM_OWNER,
                        "name": name,
                        "pattern": "%" + _escape_like(name or "") + "%",
                        "after": after["id"] if after else None,
                        "n": limit + 1,
                    },
                )
            ).fetchall()
        items = [template_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor("agents", {"id": items[-1].agent_id}) if more else None)

    async def search(
        self,
        *,
        owner: str,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> tuple[builtins.list[AgentTemplate], bool]:
        """One offset page of the templates ``owner`` sees, and whether more follow.

        The LangGraph assistant search: ``metadata`` matches the template's metadata plus
        ``{"created_by": "system"}`` for system templates; ``name`` is a substring.
        """
        if sort_by not in ASSISTANT_SORT_KEYS:
            raise InvalidInput(
                f"cannot sort by {sort_by!r}",
                field="sort_by",
                allowed=sorted(ASSISTANT_SORT_KEYS),
            )
        if sort_order not in ("asc", "desc"):
            raise InvalidInput("sort_order must be asc or desc", field="sort_order")
        if limit < 1 or limit > 1000 or offset < 0:
            raise InvalidInput("limit must be 1-1000 and offset not negative", field="limit")
        where, params = _search_filter(owner, name, metadata)
        direction = sort_order.upper()
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT * FROM agents WHERE {where} "
                    f"ORDER BY {ASSISTANT_SORT_KEYS[sort_by]} {direction}, agent_id {direction} "
                    "LIMIT %(n)s OFFSET %(offset)s",
                    {**params, "n": limit + 1, "offset": offset},
                )
            ).fetchall()
        return [template_from_row(r) for r in rows[:limit]], len(rows) > limit

    async def count(
        self, *, owner: str, name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> int:
        """How many templates :meth:`search` would find with these filters."""
        where, params = _search_filter(owner, name, metadata)
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(f"SELECT count(*) AS n FROM agents WHERE {where}", params)
            ).fetchone()
        return int(row["n"]) if row else 0

    async def delete(
        self, agent_id: str, *, owner: str | None, force: bool = False, system: bool = False
    ) -> builtins.list[str]:
        """Delete a template; return the thread ids of the sessions removed with it.

        Refused with ``Conflict`` while it has live sessions, unless ``force``, which deletes
        them and their checkpoints too (still refused, ``SessionBusy``, while one runs a turn).
        """
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "SELECT * FROM agents WHERE agent_id = %s FOR UPDATE", (agent_id,)
                )
            ).fetchone()
            _editable(row, agent_id, owner, system)
            stats = await (
                await conn.execute(
                    "SELECT count(*) FILTER (WHERE expires_at > now()) AS live, "
                    "count(*) FILTER (WHERE lease_token IS NOT NULL "
                    " AND lease_expires_at >= now()) AS busy "
                    "FROM sessions WHERE agent_id = %s",
                    (agent_id,),
                )
            ).fetchone()
            assert stats is not None
            if stats["live"] and not force:
                raise Conflict(
                    f"agent {agent_id!r} has {stats['live']} live session(s); "
                    "delete them first or pass force=true",
                    agent_id=agent_id,
                    live_sessions=stats["live"],
                )
            if stats["busy"]:
                raise SessionBusy(
                    f"agent {agent_id!r} has sessions running a turn; retry when they end",
                    agent_id=agent_id,
                )
            rows = await (
                await conn.execute(
                    "DELETE FROM sessions WHERE agent_id = %s RETURNING thread_id", (agent_id,)
                )
            ).fetchall()
            threads = [r["thread_id"] for r in rows]
            await delete_threads(conn, threads)
            await conn.execute("DELETE FROM agents WHERE agent_id = %s", (agent_id,))
        return threads

    async def update(
        self,
        agent_id: str,
        changes: dict[str, Any],
        *,
        owner: str | None = None,
        system: bool = False,
    ) -> AgentTemplate:
        """Apply a partial update and bump the version, atomically (no change, no bump).

        ``system`` lets the caller (an admin) change a system template.
        """
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "SELECT * FROM agents WHERE agent_id = %s FOR UPDATE", (agent_id,)
                )
            ).fetchone()
            _editable(row, agent_id, owner, system)
            assert row is not None
            merged = {**row["spec"], **changes}
            try:
                spec = TemplateSpec.model_validate(merged)
            except ValidationError as exc:
                raise InvalidInput(
                    "invalid template: " + "; ".join(e["msg"] for e in exc.errors()),
                    errors=exc.errors(
                        include_url=False, include_context=False, include_input=False
                    ),
                ) from exc
            self._validate(spec)
            if spec == TemplateSpec.model_validate(row["spec"]):
                return template_from_row(row)  # nothing changes: same version
            row = await (
                await conn.execute(
                    "UPDATE agents SET spec = %s, version = version + 1, updated_at = now() "
                    "WHERE agent_id = %s RETURNING *",
                    (Jsonb(spec.model_dump(mode="json")), agent_id),
                )
            ).fetchone()
        assert row is not None
        return template_from_row(row)


def _search_filter(
    owner: str, name: str | None, metadata: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    where = (
        "(owner = %(owner)s OR owner = %(system)s) "
        "AND (%(name)s::text IS NULL OR spec->>'name' ILIKE %(pattern)s) "
        "AND (%(meta)s::jsonb IS NULL OR (coalesce(spec->'metadata', '{}'::jsonb) || "
        ' CASE WHEN owner = %(system)s THEN \'{"created_by": "system"}\'::jsonb '
        " ELSE '{}'::jsonb END) @> %(meta)s::jsonb)"
    )
    params = {
        "owner": owner,
        "system": SYSTEM_OWNER,
        "name": name,
        "pattern": "%" + _escape_like(name or "") + "%",
        "meta": Jsonb(metadata) if metadata else None,
    }
    return where, params


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


CompiledGraph = CompiledStateGraph[Any, Any, Any, Any]


class GraphCache:
    """Compiled graphs keyed by ``(agent_id, version)``, compiled once each (LRU-bounded).

    ``compiles`` counts compilations, so tests and metrics can show each version compiled
    exactly once. Old versions fall out as the LRU bound is reached.
    """

    def __init__(
        self,
        build: Callable[[AgentTemplate], Any],
        checkpointer: BaseCheckpointSaver[Any],
        max_entries: int = 256,
    ) -> None:
        self._build = build
        self._checkpointer = checkpointer
        self._max_entries = max_entries
        self._graphs: OrderedDict[tuple[str, int], CompiledGraph] = OrderedDict()
        self.compiles = 0

    def lookup(self, agent_id: str, version: int) -> CompiledGraph | None:
        """The compiled graph for this version if it is cached, else None."""
        graph = self._graphs.get((agent_id, version))
        if graph is not None:
            self._graphs.move_to_end((agent_id, version))
        return graph

    def get(self, template: AgentTemplate) -> CompiledGraph:
        """The compiled graph for this template version, compiling it on first use."""
        key = (template.agent_id, template.version)
        graph = self._graphs.get(key)
        if graph is not None:
            self._graphs.move_to_end(key)
            return graph
        # Compiling is synchronous and takes a few ms; concurrent first uses of one version
        # cannot interleave here because no await separates the check from the insert.
        graph = self._build(template).compile(
            checkpointer=self._checkpointer, name=template.agent_id
        )
        self.compiles += 1
        self._graphs[key] = graph
        while len(self._graphs) > self._max_entries:
            self._graphs.popitem(last=False)
        return graph
