"""Agent templates in Postgres: :class:`TemplateStore` over the ``agents`` table.

The template's shape is in :mod:`runtime.agents.spec`, its statements in
:mod:`runtime.agents.sql`.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import ValidationError

from runtime.agents import sql
from runtime.agents.spec import (
    SYSTEM_OWNER,
    AgentTemplate,
    TemplateSpec,
    template_from_row,
    visible_to,
)
from runtime.checkpoints import delete_threads
from runtime.db import (
    Page,
    Pool,
    Row,
    check_limit,
    check_offset_page,
    check_sort,
    decode_cursor,
    encode_cursor,
    execute,
    fetch_all,
    fetch_one,
    text,
)
from runtime.errors import Conflict, InvalidInput, NotFound, PermissionDenied, SessionBusy
from runtime.ids import new_id, validate_id

__all__ = ["TemplateStore"]


def _not_found(agent_id: str) -> NotFound:
    return NotFound(f"agent {agent_id!r} not found", agent_id=agent_id)


def _editable(row: Row | None, agent_id: str, owner: str | None, system: bool) -> Row:
    """The row, if ``owner`` may change it: its own (system templates: ``system`` too)."""
    if row is None or not visible_to(row["owner"], owner):
        raise _not_found(agent_id)
    if owner is not None and row["owner"] == SYSTEM_OWNER and owner != SYSTEM_OWNER and not system:
        raise PermissionDenied(
            f"agent {agent_id!r} is a shared system agent; an admin key may change it",
            agent_id=agent_id,
        )
    return row


def _named(row: Row, **more: Any) -> dict[str, Any]:
    """The parameters naming a stored agent, ``(owner, agent_id)``, and ``more``."""
    return {"owner": row["owner"], "agent": row["agent_id"], **more}


def _spec_json(spec: TemplateSpec) -> Jsonb:
    return Jsonb(spec.model_dump(mode="json"))


def _merged_spec(current: dict[str, Any], changes: dict[str, Any]) -> TemplateSpec:
    """The stored spec with ``changes`` applied, validated."""
    try:
        return TemplateSpec.model_validate({**current, **changes})
    except ValidationError as exc:
        raise InvalidInput(
            "invalid template: " + "; ".join(e["msg"] for e in exc.errors()),
            errors=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from exc


class TemplateStore:
    """Agent templates in the ``agents`` table.

    Agent ids are scoped by owner: ``(owner, agent_id)`` is unique, so two owners may each
    have a ``support`` agent, and each names only its own. An owner sees its own templates
    and the system ones, whose ids are reserved for every owner (an id an owner names is
    never both); it changes only its own (admins may change system templates too). Another
    owner's template does not exist for it: ``NotFound``, and its id is free to take.
    """

    def __init__(
        self,
        pool: Pool,
        validate: Callable[[TemplateSpec], Awaitable[None]],
        reserved_ids: Collection[str] = (),
    ) -> None:
        """
        Args:
            validate: checks a spec against the server (its graphs, tools, models).
            reserved_ids: ids no owner may take (the server's graph names: a graph id names
                that graph's system agent in the LangGraph API).
        """
        self._pool = pool
        self._validate = validate
        self._reserved = frozenset(reserved_ids)

    async def create(
        self, spec: TemplateSpec, *, owner: str, agent_id: str | None = None
    ) -> AgentTemplate:
        """Store a new template at version 1.

        Raises:
            Conflict: the owner has this id already, or it is a system agent's (or a graph's)
                id; never because another owner has it.
        """
        agent_id = new_id("agt") if agent_id is None else validate_id(agent_id, kind="agent_id")
        if agent_id in self._reserved and owner != SYSTEM_OWNER:
            raise Conflict(
                f"agent id {agent_id!r} is reserved: it is the name of a graph of this server",
                agent_id=agent_id,
            )
        await self._validate(spec)
        row = await fetch_one(self._pool, sql.INSERT_AGENT, self._new(agent_id, owner, spec))
        if row is None:
            taken = await self.get(agent_id, owner=owner)
            if taken.owner != owner:
                raise Conflict(
                    f"agent id {agent_id!r} is reserved: a shared system agent has it",
                    agent_id=agent_id,
                )
            raise Conflict(f"agent {agent_id!r} already exists", agent_id=agent_id)
        return template_from_row(row)

    @staticmethod
    def _new(agent_id: str, owner: str, spec: TemplateSpec) -> dict[str, Any]:
        return {"agent": agent_id, "owner": owner, "spec": _spec_json(spec), "system": SYSTEM_OWNER}

    async def ensure(self, spec: TemplateSpec, *, owner: str, agent_id: str) -> AgentTemplate:
        """Create the template unless it exists; an existing one is left as it is.

        Raises:
            Conflict: a system template's id that another owner has already taken.
        """
        await execute(self._pool, sql.INSERT_AGENT, self._new(agent_id, owner, spec))
        if owner == SYSTEM_OWNER:
            params = {"agent": agent_id, "system": SYSTEM_OWNER}
            if await fetch_one(self._pool, sql.OWNED_ELSEWHERE, params) is not None:
                raise Conflict(
                    f"an owner has an agent with the id {agent_id!r} already", agent_id=agent_id
                )
        return await self.get(agent_id, owner=owner)

    async def get(self, agent_id: str, *, owner: str | None = None) -> AgentTemplate:
        """The template ``owner`` names ``agent_id``: its own or a system one.

        ``owner`` None (administration, tests): any owner's, the system one first.
        """
        params = {"agent": agent_id, **sql.visibility_params(owner)}
        row = await fetch_one(self._pool, sql.SELECT_AGENT, params)
        if row is None:
            raise _not_found(agent_id)
        return template_from_row(row)

    async def _for_update(self, conn: Any, agent_id: str, owner: str | None, system: bool) -> Row:
        """The row ``owner`` names ``agent_id``, locked, if it may change it."""
        params = {"agent": agent_id, **sql.visibility_params(owner)}
        row = await fetch_one(conn, sql.SELECT_AGENT_FOR_UPDATE, params)
        return _editable(row, agent_id, owner, system)

    async def versions(
        self,
        agent_id: str,
        *,
        owner: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> builtins.list[AgentTemplate]:
        """The template's kept versions, newest first (``metadata``: those whose metadata
        contains it)."""
        template = await self.get(agent_id, owner=owner)  # NotFound: not visible
        check_offset_page(limit, offset)
        meta = Jsonb(metadata) if metadata else None
        params = {"owner": template.owner, "agent": agent_id, "meta": meta}
        rows = await fetch_all(
            self._pool, sql.LIST_VERSIONS, {**params, "limit": limit, "offset": offset}
        )
        return [template_from_row(r) for r in rows]

    async def set_version(
        self, agent_id: str, version: int, *, owner: str | None = None, system: bool = False
    ) -> AgentTemplate:
        """Make a kept version the current one (its number stays; the next change is
        numbered after every kept version).

        Raises:
            NotFound: no such template or version.
        """
        async with self._pool.connection() as conn, conn.transaction():
            row = await self._for_update(conn, agent_id, owner, system)
            updated = await fetch_one(conn, sql.SET_CURRENT_VERSION, _named(row, version=version))
        if updated is None:
            raise NotFound(
                f"agent {agent_id!r} has no version {version}", agent_id=agent_id, version=version
            )
        return template_from_row(updated)

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
        params = {
            **sql.visibility_params(owner),
            **sql.name_params(name),
            "after": after["id"] if after else None,
            "n": limit + 1,
        }
        rows = await fetch_all(self._pool, sql.LIST_AGENTS, params)
        items = [template_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor("agents", {"id": items[-1].agent_id}) if more else None)

    async def search(
        self,
        *,
        owner: str,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        graph: str | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> tuple[builtins.list[AgentTemplate], bool]:
        """One offset page of the templates ``owner`` sees, and whether more follow.

        ``metadata`` matches the template's metadata plus ``{"created_by": "system"}`` for
        system templates; ``name`` is a substring; ``sort_by`` is one of
        :data:`runtime.agents.sql.SORT_COLUMNS` (``agent_id``, ``name``, ``created_at``,
        ``updated_at``).
        """
        check_sort(sort_by, sort_order, sql.SORT_COLUMNS)
        check_offset_page(limit, offset)
        where, params = sql.search_where(owner, name, metadata, graph)
        statement = sql.search_agents(where, sort_by, sort_order.upper())
        rows = await fetch_all(self._pool, statement, {**params, "n": limit + 1, "offset": offset})
        return [template_from_row(r) for r in rows[:limit]], len(rows) > limit

    async def count(
        self,
        *,
        owner: str,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        graph: str | None = None,
    ) -> int:
        """How many templates :meth:`search` would find with these filters."""
        where, params = sql.search_where(owner, name, metadata, graph)
        row = await fetch_one(self._pool, sql.count_agents(where), params)
        return int(row["n"]) if row else 0

    async def delete(
        self, agent_id: str, *, owner: str | None, force: bool = False, system: bool = False
    ) -> None:
        """Delete a template.

        Refused with ``Conflict`` while it has live sessions, unless ``force``, which deletes
        them and their checkpoints too (still refused, ``SessionBusy``, while one runs a turn).
        """
        async with self._pool.connection() as conn, conn.transaction():
            row = await self._for_update(conn, agent_id, owner, system)
            stats = await fetch_one(conn, sql.SESSION_COUNTS, _named(row))
            assert stats is not None
            if not force:
                await _no_live_sessions(conn, row, "delete it (or pass force=true)")
            if stats["busy"]:
                raise SessionBusy(
                    f"agent {agent_id!r} has sessions running a turn; retry when they end",
                    agent_id=agent_id,
                )
            rows = await fetch_all(conn, sql.DELETE_AGENT_SESSIONS, _named(row))
            await delete_threads(conn, [r["thread_id"] for r in rows])
            await execute(conn, sql.DELETE_AGENT, _named(row))

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
            row = await self._for_update(conn, agent_id, owner, system)
            spec = _merged_spec(row["spec"], changes)
            await self._validate(spec)
            current = TemplateSpec.model_validate(row["spec"])
            if spec == current:
                return template_from_row(row)  # nothing changes: same version
            if spec.graph != current.graph:
                await _no_live_sessions(conn, row, "change its graph")
            params = _named(row, spec=_spec_json(spec))
            updated = await fetch_one(conn, sql.UPDATE_AGENT_SPEC, params)
        assert updated is not None
        return template_from_row(updated)


async def _no_live_sessions(conn: Any, row: Row, doing: str) -> None:
    """Refuse (``Conflict``) while the agent has live sessions: their state follows its graph."""
    agent_id = row["agent_id"]
    stats = await fetch_one(conn, sql.SESSION_COUNTS, _named(row))
    if stats is not None and stats["live"]:
        raise Conflict(
            f"agent {agent_id!r} has {stats['live']} live session(s); delete them first to {doing}",
            agent_id=agent_id,
            live_sessions=stats["live"],
        )
