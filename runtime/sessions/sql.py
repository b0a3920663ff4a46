"""Every statement on ``sessions``, and the rules they share, named once.

The predicates are SQL fragments on the ``sessions`` columns (unqualified: every statement
that joins another table joins one without these columns). They are evaluated on the
database's clock, never the process's. Statements are built from them here, so each rule's
text appears once; the few statements with a variable part are built by small pure
functions (:func:`search_sql`, :func:`count_sql`, :func:`update_sql`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from runtime.checkpoints import LATEST_CHECKPOINT
from runtime.db.refusals import refuse

if TYPE_CHECKING:
    from runtime.sessions.model import SessionSortKey, StateFilter

__all__ = [
    "ABORT",
    "ACQUIRE",
    "AGENT_GRAPH",
    "BIND_AGENT",
    "CLEAR",
    "COUNT_ACTIVE",
    "DELETE_SESSION",
    "EXPIRED",
    "EXPLAIN_REFUSAL",
    "FENCE",
    "FORGET_REPLICA",
    "HOLDER_ALIVE",
    "INSERT_SESSION",
    "LEASE_FREE",
    "LEASE_HELD",
    "LEASE_LOST",
    "LIST_SESSIONS",
    "LIVE",
    "PURGE_EXPIRED",
    "PURGE_REPLICAS",
    "PURGE_TURN_KEYS",
    "RECORD_TURN_KEY",
    "RELEASE",
    "RENEW",
    "REPLICA_BEAT",
    "SELECT_LIVE_SESSION",
    "SELECT_SESSION",
    "SELECT_TURN_KEY",
    "SESSION_COLUMNS",
    "SESSION_EXISTS",
    "SET_STATUS",
    "SORT_KEYS",
    "STATES",
    "SWEEP_BATCH",
    "UPDATABLE",
    "count_sql",
    "search_sql",
    "update_sql",
]

# -- the rules ------------------------------------------------------------------------------

# The session has not outlived its TTL.
LIVE = "expires_at > now()"
# It has: exactly NOT LIVE (``expires_at`` is never NULL).
EXPIRED = f"(NOT {LIVE})"
# The lease's holder, the server process that took it (``lease_holder``, a row of
# ``replicas``: :mod:`runtime.sessions.heartbeat`), is alive: it beat within its own bound
# (``liveness``). A Postgres (re)start makes every beat stale at once, so until three bounds
# after the postmaster started no holder is taken for dead (its heartbeat reconnects in
# that time). A lease that names no holder (taken before migration 25) has only its expiry.
HOLDER_ALIVE = (
    "(lease_holder IS NULL OR EXISTS (SELECT 1 FROM replicas r WHERE r.holder = lease_holder "
    "AND greatest(r.beat_at, pg_postmaster_start_time() + 2 * r.liveness) + r.liveness "
    ">= now()))"
)
# A turn holds the session's lease: it has a token that has not lapsed, and its holder is
# alive. A holder that is alive but stuck keeps it until the expiry (the lease timeout).
LEASE_HELD = f"(lease_token IS NOT NULL AND lease_expires_at >= now() AND {HOLDER_ALIVE})"
# No turn holds it (never leased, released, lapsed, or its holder died): exactly NOT
# LEASE_HELD.
LEASE_FREE = f"(lease_token IS NULL OR lease_expires_at < now() OR NOT {HOLDER_ALIVE})"


# The session's agent, ``a``: agent ids are scoped by owner, so a session names its agent as
# (agent_owner, agent_id), agent_owner being the session's owner or the system owner.
def _its_agent(sessions: str) -> str:
    return f"a.owner = {sessions}.agent_owner AND a.agent_id = {sessions}.agent_id"


# What every statement that returns a :class:`~runtime.sessions.model.Session` selects.
# The graph a session's agent runs (every stored spec names it: migration 15).
AGENT_GRAPH = f"(SELECT a.spec->>'graph' FROM agents a WHERE {_its_agent('sessions')})"
SESSION_COLUMNS = f"*, {LEASE_HELD} AS busy, {AGENT_GRAPH} AS graph"

# Each :data:`~runtime.sessions.model.StateFilter` as a condition.
STATES: dict[StateFilter, str] = {
    "running": LEASE_HELD,
    "awaiting_approval": f"(awaiting_approval AND NOT {LEASE_HELD})",
    "interrupted": f"(at_breakpoint AND NOT awaiting_approval AND NOT {LEASE_HELD})",
    "idle": f"(NOT awaiting_approval AND NOT at_breakpoint AND NOT {LEASE_HELD})",
    "paused": f"((awaiting_approval OR at_breakpoint) AND NOT {LEASE_HELD})",
}
# The keys a search sorts on, and their expressions (``state``: idle, running, awaiting,
# interrupted).
SORT_KEYS: dict[SessionSortKey, str] = {
    "session_id": "session_id",
    "created_at": "created_at",
    "last_activity_at": "last_activity_at",
    "state": f"(CASE WHEN {LEASE_HELD} THEN 1 WHEN awaiting_approval THEN 2 "
    "WHEN at_breakpoint THEN 3 ELSE 0 END)",
}

# -- the registry ---------------------------------------------------------------------------

# (owner, session_id, thread_id, agent_owner, agent_id, name, description, metadata, ttl, ttl)
INSERT_SESSION = (
    "INSERT INTO sessions (owner, session_id, thread_id, agent_owner, agent_id, name, "
    "description, metadata, ttl_seconds, expires_at) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s)) "
    f"ON CONFLICT (owner, session_id) DO NOTHING RETURNING {SESSION_COLUMNS}"
)
# Live or not (``expired`` says which).
SELECT_SESSION = (
    f"SELECT {SESSION_COLUMNS}, {EXPIRED} AS expired FROM sessions "
    "WHERE owner = %s AND session_id = %s"
)
SELECT_LIVE_SESSION = (
    f"SELECT {SESSION_COLUMNS} FROM sessions WHERE owner = %s AND session_id = %s AND {LIVE}"
)
SESSION_EXISTS = "SELECT 1 FROM sessions WHERE owner = %s AND session_id = %s"
SET_STATUS = (
    "UPDATE sessions SET status = %s WHERE owner = %s AND session_id = %s "
    f"AND {LIVE} RETURNING {SESSION_COLUMNS}"
)
# Keyset page, newest first; ``t``/``o``/``s`` is the position after the previous page.
LIST_SESSIONS = (
    f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {LIVE} "
    "AND (%(owner)s::text IS NULL OR owner = %(owner)s) "
    "AND (%(agent)s::text IS NULL OR agent_id = %(agent)s) "
    "AND (%(status)s::text IS NULL OR status = %(status)s) "
    "AND (%(meta)s::jsonb IS NULL OR metadata @> %(meta)s::jsonb) "
    "AND (%(t)s::timestamptz IS NULL "
    " OR (created_at, owner, session_id) < (%(t)s, %(o)s, %(s)s)) "
    "ORDER BY created_at DESC, owner DESC, session_id DESC LIMIT %(n)s"
)
COUNT_ACTIVE = f"SELECT count(*) AS n FROM sessions WHERE status = 'active' AND {LIVE}"
# The filter of a search and a count (parameters: owner, agent, meta, ids).
_SEARCH_WHERE = (
    f"owner = %(owner)s AND {LIVE} "
    "AND (%(agent)s::text IS NULL OR agent_id = %(agent)s) "
    "AND (%(meta)s::jsonb IS NULL OR metadata @> %(meta)s::jsonb) "
    "AND (%(ids)s::text[] IS NULL OR session_id = ANY(%(ids)s::text[])) "
    f"AND (%(graph)s::text IS NULL OR {AGENT_GRAPH} = %(graph)s)"
)
# Only a session with no conversation yet, and no turn, moves to another agent.
# (agent_owner, agent_id, owner, session_id)
BIND_AGENT = (
    "UPDATE sessions SET agent_owner = %s, agent_id = %s WHERE owner = %s AND session_id = %s "
    f"AND {LIVE} AND committed_checkpoint_id IS NULL AND {LEASE_FREE} "
    f"RETURNING {SESSION_COLUMNS}"
)
# The columns :func:`update_sql` may set.
UPDATABLE = frozenset({"name", "description", "metadata", "ttl_seconds"})
CLEAR = (
    "UPDATE sessions SET committed_checkpoint_id = NULL, messages = 0, "
    "awaiting_approval = false, pending_approvals = NULL, at_breakpoint = false "
    f"WHERE owner = %s AND session_id = %s AND {LIVE} AND {LEASE_FREE} "
    f"RETURNING {SESSION_COLUMNS}"
)
DELETE_SESSION = (
    f"DELETE FROM sessions WHERE owner = %s AND session_id = %s AND {LEASE_FREE} "
    "RETURNING thread_id"
)
PURGE_EXPIRED = (
    "DELETE FROM sessions WHERE owner = %s AND session_id = %s "
    f"AND {EXPIRED} AND {LEASE_FREE} RETURNING thread_id"
)
# One batch of expired sessions (or, with ``idle``, idle that many seconds), no turn in them.
SWEEP_BATCH = (
    "DELETE FROM sessions WHERE (owner, session_id) IN ("
    " SELECT owner, session_id FROM sessions WHERE "
    f" (CASE WHEN %(idle)s::float8 IS NULL THEN {EXPIRED} "
    "  ELSE last_activity_at <= now() - make_interval(secs => %(idle)s) END)"
    f" AND {LEASE_FREE}"
    " ORDER BY expires_at LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
    "RETURNING owner, session_id, thread_id"
)

# -- the lease ------------------------------------------------------------------------------

_CLEAR_LEASE = "lease_token = NULL, lease_expires_at = NULL, lease_holder = NULL"

# Take a free lease on a live, active session whose agent exists, naming its holder (None:
# no heartbeat, the expiry alone frees it); returns what the turn needs, with the thread's
# latest checkpoint to detect a turn that died mid-way. ``taken_over``: the lease was
# another turn's (its holder died, or it lapsed), read under the row lock (``previous``
# locks the row first, so it sees the newest row, whatever the statement's snapshot): that
# turn may have written checkpoints this snapshot does not show, so the caller rolls the
# thread back to its committed checkpoint in a later statement, which sees them.
ACQUIRE = (
    "WITH previous AS (SELECT lease_token AS previous_token FROM sessions "
    "WHERE owner = %(owner)s AND session_id = %(sid)s FOR UPDATE) "
    "UPDATE sessions s SET lease_token = %(token)s, lease_holder = %(holder)s, "
    "lease_expires_at = now() + make_interval(secs => %(timeout)s) "
    "FROM agents a, previous p "
    "WHERE s.owner = %(owner)s AND s.session_id = %(sid)s "
    f"AND {_its_agent('s')} AND s.status = 'active' "
    f"AND {LIVE} AND s.awaiting_approval = %(resume)s AND {LEASE_FREE} "
    "RETURNING s.thread_id, s.committed_checkpoint_id, s.pending_approvals, s.at_breakpoint, "
    "s.metadata AS session_metadata, p.previous_token IS NOT NULL AS taken_over, "
    f"({LATEST_CHECKPOINT}) AS latest_checkpoint_id, "
    "a.agent_id, a.owner, a.version, a.spec, a.created_at, a.updated_at"
)
# Fencing: run first in the transaction of a checkpoint write made outside the release
# (per-step durability, state updates), it returns a row only while the lease is still the
# writer's, and holds the row (FOR SHARE) until the write commits, so a takeover (ACQUIRE
# locks the row) either happens before it, and the write is refused, or after the write
# commits, and rolls it back. With the row it bounds the rest of its transaction on the
# server, so a writer stopped inside it (SIGSTOP, a frozen VM) cannot keep a takeover
# waiting for the row: the server ends the session once the client has left the transaction
# idle for ``idle`` ms (``idle_in_transaction_session_timeout``), or, on Postgres 17 and
# later, once the transaction has been open for ``whole`` ms (``transaction_timeout``, which
# also covers a client stopped half-way through sending a statement). Both are local to the
# transaction (fine behind a transaction-mode pooler). Parameters: thread_id, token, idle,
# whole (milliseconds, as text).
FENCE = (
    "SELECT set_config('idle_in_transaction_session_timeout', %(idle)s, true) AS idle_bound, "
    "CASE WHEN current_setting('transaction_timeout', true) IS NOT NULL "
    "THEN set_config('transaction_timeout', %(whole)s, true) END AS whole_bound "
    "FROM sessions WHERE thread_id = %(thread_id)s AND lease_token = %(token)s FOR SHARE"
)
# Why ACQUIRE took nothing.
EXPLAIN_REFUSAL = (
    f"SELECT s.status, {EXPIRED} AS expired, "
    "s.awaiting_approval, s.pending_approvals, "
    "a.agent_id IS NULL AS agent_missing "
    f"FROM sessions s LEFT JOIN agents a ON {_its_agent('s')} "
    "WHERE s.owner = %s AND s.session_id = %s"
)
RENEW = (
    "UPDATE sessions SET lease_expires_at = now() + make_interval(secs => %s) "
    "WHERE owner = %s AND session_id = %s AND lease_token = %s"
)
ABORT = (
    f"UPDATE sessions SET {_CLEAR_LEASE} "
    "WHERE owner = %s AND session_id = %s AND lease_token = %s "
    "RETURNING thread_id, committed_checkpoint_id"
)
# The reason RELEASE refuses a turn's commit with (runtime.db.refusals).
LEASE_LOST = "lease_lost"
# One statement: free the lease, bump the counters, slide the TTL, commit the checkpoint,
# and (for a real turn) log it for the per-agent statistics. It is refused (LEASE_LOST)
# when the lease was lost. ``breakpoint`` NULL keeps the session's (a state update
# between turns).
RELEASE = (
    f"WITH s AS (UPDATE sessions s SET {_CLEAR_LEASE}, "
    "turns = turns + %(turns)s, messages = messages + %(messages)s, "
    "tokens_in = tokens_in + %(tin)s, tokens_out = tokens_out + %(tout)s, "
    "model_latency_ms = model_latency_ms + %(lat)s, last_activity_at = now(), "
    "awaiting_approval = %(awaiting)s, pending_approvals = %(pending)s, "
    "at_breakpoint = coalesce(%(breakpoint)s, at_breakpoint), "
    "expires_at = now() + make_interval(secs => ttl_seconds), "
    f"committed_checkpoint_id = ({LATEST_CHECKPOINT}) "
    "WHERE owner = %(owner)s AND session_id = %(sid)s AND lease_token = %(token)s "
    "RETURNING agent_owner, agent_id, owner), "
    "log AS (INSERT INTO turn_log "
    "(agent_owner, agent_id, owner, latency_ms, messages, tokens_in, tokens_out) "
    "SELECT agent_owner, agent_id, owner, %(latency)s, %(messages)s, %(tin)s, %(tout)s FROM s "
    "WHERE %(turns)s > 0) "
    # Refused (LEASE_LOST) when the lease is no longer this turn's: the implicit
    # transaction it shares with the turn's writes rolls back whole.
    f"SELECT CASE WHEN count(*) = 0 THEN {refuse(LEASE_LOST)} ELSE count(*) END AS n FROM s"
)

# -- holder liveness (runtime.sessions.heartbeat) ---------------------------------------------

# One beat: this process is alive, by the database's clock, for ``liveness`` seconds more.
REPLICA_BEAT = (
    "INSERT INTO replicas (holder, beat_at, liveness) "
    "VALUES (%(holder)s, now(), make_interval(secs => %(liveness)s)) "
    "ON CONFLICT (holder) DO UPDATE SET beat_at = now(), liveness = EXCLUDED.liveness"
)
# A clean shutdown: the process's leases are free at once (it released them all anyway).
FORGET_REPLICA = "DELETE FROM replicas WHERE holder = %(holder)s"
# Rows of processes silent for ``%(secs)s`` seconds (killed, never cleaned up); their leases
# were free long before.
PURGE_REPLICAS = "DELETE FROM replicas WHERE beat_at < now() - make_interval(secs => %(secs)s)"

# -- idempotency keys ------------------------------------------------------------------------

# A key's request hash and result, while it is kept (``%(keep)s`` seconds).
SELECT_TURN_KEY = (
    "SELECT request_hash, result FROM turn_keys "
    "WHERE owner = %(owner)s AND session_id = %(sid)s AND key = %(key)s "
    "AND created_at > now() - make_interval(secs => %(keep)s)"
)
# Written in the release's transaction: the key commits with the turn or not at all. A row
# past its keeping time (not purged yet) is replaced.
RECORD_TURN_KEY = (
    "INSERT INTO turn_keys (owner, session_id, key, request_hash, result) "
    "VALUES (%(owner)s, %(sid)s, %(key)s, %(hash)s, %(result)s) "
    "ON CONFLICT (owner, session_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, "
    "result = EXCLUDED.result, created_at = now()"
)
# The session's keys past their keeping time (run with each keyed release).
PURGE_TURN_KEYS = (
    "DELETE FROM turn_keys WHERE owner = %(owner)s AND session_id = %(sid)s "
    "AND created_at <= now() - make_interval(secs => %(keep)s)"
)

# -- statements with a variable part ----------------------------------------------------------


def _search_where(state: StateFilter | None) -> str:
    return _SEARCH_WHERE if state is None else f"{_SEARCH_WHERE} AND {STATES[state]}"


def search_sql(state: StateFilter | None, sort_by: SessionSortKey, descending: bool) -> str:
    """An offset page of an owner's live sessions (parameters: those of the filter, ``n``,
    ``offset``), sorted on one of :data:`SORT_KEYS`, ties broken by ``session_id``."""
    direction = "DESC" if descending else "ASC"
    return (
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {_search_where(state)} "
        f"ORDER BY {SORT_KEYS[sort_by]} {direction}, session_id {direction} "
        "LIMIT %(n)s OFFSET %(offset)s"
    )


def count_sql(state: StateFilter | None) -> str:
    """How many of an owner's live sessions match the search filter."""
    return f"SELECT count(*) AS n FROM sessions WHERE {_search_where(state)}"


def update_sql(columns: Iterable[str]) -> str:
    """Set ``columns`` (of :data:`UPDATABLE`, each from its named parameter) on a live
    session; a new ``ttl_seconds`` also moves the expiry to ``now() + ttl_seconds``."""
    names = sorted(columns)
    if not set(names) <= UPDATABLE:
        raise ValueError(f"not updatable: {sorted(set(names) - UPDATABLE)}")
    sets = [f"{name} = %({name})s" for name in names]
    if "ttl_seconds" in names:
        sets.append("expires_at = now() + make_interval(secs => %(ttl_seconds)s)")
    return (
        f"UPDATE sessions SET {', '.join(sets)} "
        f"WHERE owner = %(owner)s AND session_id = %(sid)s AND {LIVE} "
        f"RETURNING {SESSION_COLUMNS}"
    )
