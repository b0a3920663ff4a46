"""Every statement on ``agents`` (and ``turn_log``, for the stats), and the rules they share.

Statements that take an owner filter use named parameters ``%(owner)s`` and ``%(system)s``
(:func:`visibility_params` gives both); the rest take positional ones.

The statements that read ``sessions`` (:data:`SESSION_COUNTS`, :data:`AGENT_STATS`) use its
predicates (``LIVE``, ``LEASE_HELD`` from :mod:`runtime.sessions.sql`), never restated here.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from runtime.agents.spec import SYSTEM_OWNER
from runtime.sessions.sql import LEASE_HELD, LIVE

__all__ = [
    "DELETE_AGENT",
    "DELETE_AGENT_SESSIONS",
    "INSERT_AGENT",
    "LIST_AGENTS",
    "LIST_VERSIONS",
    "PRUNE_TURN_LOG",
    "SELECT_AGENT",
    "SELECT_AGENT_FOR_UPDATE",
    "SET_CURRENT_VERSION",
    "SORT_COLUMNS",
    "UPDATE_AGENT_SPEC",
    "VISIBLE",
    "AGENT_STATS",
    "count_agents",
    "escape_like",
    "name_params",
    "search_agents",
    "search_where",
    "SESSION_COUNTS",
    "visibility_params",
]

# The templates an owner sees: its own and the system ones (every one when owner is NULL).
# The Python twin is runtime.agents.spec.visible_to.
VISIBLE = "(%(owner)s::text IS NULL OR owner = %(owner)s OR owner = %(system)s)"
# The template's name contains %(pattern)s (a LIKE pattern), unless %(name)s is NULL.
_NAME_MATCHES = "(%(name)s::text IS NULL OR spec->>'name' ILIKE %(pattern)s)"
# The template's metadata (plus created_by=system on system templates) contains %(meta)s.
_METADATA_MATCHES = (
    "(%(meta)s::jsonb IS NULL OR (coalesce(spec->'metadata', '{}'::jsonb) || "
    ' CASE WHEN owner = %(system)s THEN \'{"created_by": "system"}\'::jsonb '
    " ELSE '{}'::jsonb END) @> %(meta)s::jsonb)"
)

# The sort keys of TemplateStore.search and the columns they sort on.
SORT_COLUMNS: dict[str, str] = {
    "agent_id": "agent_id",
    "name": "spec->>'name'",
    "created_at": "created_at",
    "updated_at": "updated_at",
}

# Every statement that writes a version of an agent keeps it in agent_versions too: it wraps
# a statement returning the agents row (as ``a``) in this.
_KEEPING_VERSION = (
    "WITH a AS ({}), v AS (INSERT INTO agent_versions (agent_id, version, spec, created_at) "
    "SELECT agent_id, version, spec, updated_at FROM a ON CONFLICT DO NOTHING) SELECT * FROM a"
)
# (agent_id, owner, spec): the new row, or nothing when the id is taken.
INSERT_AGENT = _KEEPING_VERSION.format(
    "INSERT INTO agents (agent_id, owner, spec) VALUES (%s, %s, %s) "
    "ON CONFLICT (agent_id) DO NOTHING RETURNING *"
)
SELECT_AGENT = "SELECT * FROM agents WHERE agent_id = %s"
SELECT_AGENT_FOR_UPDATE = SELECT_AGENT + " FOR UPDATE"
# (spec, agent_id): a new version, numbered after every kept one (the current one may be
# an older version made current again).
UPDATE_AGENT_SPEC = _KEEPING_VERSION.format(
    "UPDATE agents SET spec = %s, updated_at = now(), version = 1 + greatest(version, "
    "(SELECT max(v.version) FROM agent_versions v WHERE v.agent_id = agents.agent_id)) "
    "WHERE agent_id = %s RETURNING *"
)
# (agent_id, version): make a kept version the current one.
SET_CURRENT_VERSION = (
    "UPDATE agents a SET spec = v.spec, version = v.version, updated_at = now() "
    "FROM agent_versions v WHERE a.agent_id = %s AND v.agent_id = a.agent_id "
    "AND v.version = %s RETURNING a.*"
)
# (agent_id, metadata, limit, offset): the kept versions, newest first, as agents rows;
# metadata (or NULL) must be contained in the version's metadata.
LIST_VERSIONS = (
    "SELECT v.agent_id, a.owner, v.version, v.spec, a.created_at, v.created_at AS updated_at "
    "FROM agent_versions v JOIN agents a USING (agent_id) WHERE v.agent_id = %s "
    "AND (%s::jsonb IS NULL OR coalesce(v.spec->'metadata', '{}'::jsonb) @> %s::jsonb) "
    "ORDER BY v.version DESC LIMIT %s OFFSET %s"
)
DELETE_AGENT = "DELETE FROM agents WHERE agent_id = %s"
# A keyset page by agent_id: visibility and name params, %(after)s and %(n)s.
LIST_AGENTS = (
    f"SELECT * FROM agents WHERE {VISIBLE} AND {_NAME_MATCHES} "
    "AND (%(after)s::text IS NULL OR agent_id > %(after)s) "
    "ORDER BY agent_id LIMIT %(n)s"
)

# (agent_id): removes the agent's sessions, for a forced delete; their checkpoint threads.
DELETE_AGENT_SESSIONS = "DELETE FROM sessions WHERE agent_id = %s RETURNING thread_id"

# (seconds): turn records older than the retention window.
PRUNE_TURN_LOG = "DELETE FROM turn_log WHERE finished_at < now() - make_interval(secs => %s)"


def visibility_params(owner: str | None) -> dict[str, Any]:
    """The parameters :data:`VISIBLE` reads."""
    return {"owner": owner, "system": SYSTEM_OWNER}


def escape_like(value: str) -> str:
    """``value`` as a literal inside a LIKE pattern."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def name_params(name: str | None) -> dict[str, Any]:
    """The parameters of the name-substring filter."""
    return {"name": name, "pattern": "%" + escape_like(name or "") + "%"}


# The template runs graph %(graph)s (None: any graph).
_GRAPH_MATCHES = "(%(graph)s::text IS NULL OR spec->>'graph' = %(graph)s)"


def search_where(
    owner: str, name: str | None, metadata: dict[str, Any] | None, graph: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause and parameters of an assistant search (and its count)."""
    where = f"{VISIBLE} AND {_NAME_MATCHES} AND {_METADATA_MATCHES} AND {_GRAPH_MATCHES}"
    params = {
        **visibility_params(owner),
        **name_params(name),
        "meta": Jsonb(metadata) if metadata else None,
        "graph": graph,
    }
    return where, params


def search_agents(where: str, sort_by: str, direction: str) -> str:
    """One offset page (``%(n)s``, ``%(offset)s``) sorted by a :data:`SORT_COLUMNS` key.

    ``sort_by`` and ``direction`` (``ASC``/``DESC``) must already be checked: they are
    written into the statement.
    """
    order = f"{SORT_COLUMNS[sort_by]} {direction}, agent_id {direction}"
    return f"SELECT * FROM agents WHERE {where} ORDER BY {order} LIMIT %(n)s OFFSET %(offset)s"


def count_agents(where: str) -> str:
    """How many templates match a :func:`search_where` clause (as ``n``)."""
    return f"SELECT count(*) AS n FROM agents WHERE {where}"


# An agent's sessions, for deleting it (``agent_id``): how many are ``live``, ``busy``.
SESSION_COUNTS = (
    f"SELECT count(*) FILTER (WHERE {LIVE}) AS live, "
    f"count(*) FILTER (WHERE {LEASE_HELD}) AS busy "
    "FROM sessions WHERE agent_id = %s"
)

# Per-agent figures (``%(agent)s``, ``%(owner)s``: None for every one).
AGENT_STATS = f"""
WITH live AS (
    SELECT agent_id, count(*) AS total, count(*) FILTER (WHERE status = 'active') AS active
    FROM sessions
    WHERE {LIVE} AND (%(owner)s::text IS NULL OR owner = %(owner)s)
    GROUP BY agent_id
), turns AS (
    SELECT agent_id, count(*) AS turns, sum(messages) AS messages,
           sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
           avg(latency_ms) AS mean,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
    FROM turn_log
    WHERE (%(owner)s::text IS NULL OR owner = %(owner)s)
    GROUP BY agent_id
)
SELECT a.agent_id,
       coalesce(l.total, 0) AS sessions_total, coalesce(l.active, 0) AS sessions_active,
       coalesce(t.turns, 0) AS turns, coalesce(t.messages, 0) AS messages,
       coalesce(t.tokens_in, 0) AS tokens_in, coalesce(t.tokens_out, 0) AS tokens_out,
       t.mean AS latency_ms_mean, t.p95 AS latency_ms_p95
FROM agents a
LEFT JOIN live l ON l.agent_id = a.agent_id
LEFT JOIN turns t ON t.agent_id = a.agent_id
WHERE (%(agent)s::text IS NULL OR a.agent_id = %(agent)s)
ORDER BY a.agent_id
"""
