"""Every statement on ``agents`` (and ``turn_log``, for the stats), and the rules they share.

Every statement takes named parameters; those with an owner filter read ``%(owner)s`` and
``%(system)s`` (:func:`visibility_params` gives both). Agent ids are scoped by owner: an
agent is the pair ``(owner, agent_id)``, as a session is ``(owner, session_id)``; a session
names its agent's as ``(agent_owner, agent_id)``.

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
    "OWNED_ELSEWHERE",
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
    "WITH a AS ({}), v AS (INSERT INTO agent_versions (owner, agent_id, version, spec, "
    "created_at) SELECT owner, agent_id, version, spec, updated_at FROM a "
    "ON CONFLICT DO NOTHING) SELECT * FROM a"
)
# A row of agents is named by (owner, agent_id): ids are scoped by owner, as session ids are.
_THIS_AGENT = "owner = %(owner)s AND agent_id = %(agent)s"
# (agent, owner, spec, system): the new row, or nothing when the owner has the id already or
# a system agent has it (system ids are reserved for every owner: an id an owner names is
# then never both its own and a system one).
INSERT_AGENT = _KEEPING_VERSION.format(
    "INSERT INTO agents (agent_id, owner, spec) SELECT %(agent)s, %(owner)s, %(spec)s "
    "WHERE %(owner)s = %(system)s OR NOT EXISTS (SELECT 1 FROM agents "
    "WHERE owner = %(system)s AND agent_id = %(agent)s) "
    "ON CONFLICT (owner, agent_id) DO NOTHING RETURNING *"
)
# (agent, visibility params): the agent an owner names by id, its own or a system one; with
# owner NULL (administration), any owner's, the system one first.
SELECT_AGENT = (
    f"SELECT * FROM agents WHERE agent_id = %(agent)s AND {VISIBLE} "
    "ORDER BY owner <> %(system)s, owner LIMIT 1"
)
SELECT_AGENT_FOR_UPDATE = SELECT_AGENT + " FOR UPDATE"
# (agent, system): whether an owner other than the system has this id.
OWNED_ELSEWHERE = "SELECT 1 FROM agents WHERE agent_id = %(agent)s AND owner <> %(system)s LIMIT 1"
# (spec, owner, agent): a new version, numbered after every kept one (the current one may be
# an older version made current again).
UPDATE_AGENT_SPEC = _KEEPING_VERSION.format(
    "UPDATE agents SET spec = %(spec)s, updated_at = now(), version = 1 + greatest(version, "
    "(SELECT max(v.version) FROM agent_versions v "
    "WHERE v.owner = agents.owner AND v.agent_id = agents.agent_id)) "
    f"WHERE {_THIS_AGENT} RETURNING *"
)
# (owner, agent, version): make a kept version the current one.
SET_CURRENT_VERSION = (
    "UPDATE agents a SET spec = v.spec, version = v.version, updated_at = now() "
    "FROM agent_versions v WHERE a.owner = %(owner)s AND a.agent_id = %(agent)s "
    "AND v.owner = a.owner AND v.agent_id = a.agent_id AND v.version = %(version)s "
    "RETURNING a.*"
)
# (owner, agent, meta, limit, offset): the kept versions, newest first, as agents rows;
# meta (or NULL) must be contained in the version's metadata.
LIST_VERSIONS = (
    "SELECT v.agent_id, a.owner, v.version, v.spec, a.created_at, v.created_at AS updated_at "
    "FROM agent_versions v JOIN agents a USING (owner, agent_id) "
    "WHERE v.owner = %(owner)s AND v.agent_id = %(agent)s "
    "AND (%(meta)s::jsonb IS NULL OR coalesce(v.spec->'metadata', '{}'::jsonb) @> %(meta)s) "
    "ORDER BY v.version DESC LIMIT %(limit)s OFFSET %(offset)s"
)
DELETE_AGENT = f"DELETE FROM agents WHERE {_THIS_AGENT}"
# A keyset page by agent_id: visibility and name params, %(after)s and %(n)s.
LIST_AGENTS = (
    f"SELECT * FROM agents WHERE {VISIBLE} AND {_NAME_MATCHES} "
    "AND (%(after)s::text IS NULL OR agent_id > %(after)s) "
    "ORDER BY agent_id LIMIT %(n)s"
)

# The sessions of agent (%(owner)s, %(agent)s): of any owner, for a system agent.
_ITS_SESSIONS = "agent_owner = %(owner)s AND agent_id = %(agent)s"
# (owner, agent): removes the agent's sessions, for a forced delete; their checkpoint threads.
DELETE_AGENT_SESSIONS = f"DELETE FROM sessions WHERE {_ITS_SESSIONS} RETURNING thread_id"

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


# An agent's sessions, for deleting it (owner, agent): how many are ``live``, ``busy``.
SESSION_COUNTS = (
    f"SELECT count(*) FILTER (WHERE {LIVE}) AS live, "
    f"count(*) FILTER (WHERE {LEASE_HELD}) AS busy "
    f"FROM sessions WHERE {_ITS_SESSIONS}"
)

# Per-agent figures (``%(agent)s``: None for every one; ``%(owner)s``: the agents that owner
# sees and its own sessions, None for every owner's). Agents are (owner, agent_id) pairs.
AGENT_STATS = f"""
WITH live AS (
    SELECT agent_owner, agent_id, count(*) AS total,
           count(*) FILTER (WHERE status = 'active') AS active
    FROM sessions
    WHERE {LIVE} AND (%(owner)s::text IS NULL OR owner = %(owner)s)
    GROUP BY agent_owner, agent_id
), turns AS (
    SELECT agent_owner, agent_id, count(*) AS turns, sum(messages) AS messages,
           sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
           avg(latency_ms) AS mean,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
    FROM turn_log
    WHERE (%(owner)s::text IS NULL OR owner = %(owner)s)
    GROUP BY agent_owner, agent_id
)
SELECT a.agent_id, a.owner,
       coalesce(l.total, 0) AS sessions_total, coalesce(l.active, 0) AS sessions_active,
       coalesce(t.turns, 0) AS turns, coalesce(t.messages, 0) AS messages,
       coalesce(t.tokens_in, 0) AS tokens_in, coalesce(t.tokens_out, 0) AS tokens_out,
       t.mean AS latency_ms_mean, t.p95 AS latency_ms_p95
FROM agents a
LEFT JOIN live l ON l.agent_owner = a.owner AND l.agent_id = a.agent_id
LEFT JOIN turns t ON t.agent_owner = a.owner AND t.agent_id = a.agent_id
WHERE (%(agent)s::text IS NULL OR a.agent_id = %(agent)s) AND {VISIBLE}
ORDER BY a.agent_id, a.owner
"""
