"""Every statement on ``runs``, and the rules they share, named once."""

from __future__ import annotations

from runtime.db.refusals import refuse
from runtime.errors import ReplicaLost
from runtime.runs.model import ACTIVE_STATUSES
from runtime.sessions.sql import HOLDER_ALIVE, LEASE_HELD

__all__ = [
    "ACTIVE",
    "CANCELS_REQUESTED",
    "COMMIT_TURN",
    "RUN_ENDED",
    "DELETE_ENDED_RUN",
    "DELETE_RUN",
    "ENDED",
    "FREE_SPENT_KEY",
    "INFLIGHT",
    "INSERT_RUN_EVENT",
    "LAST_RUN_EVENT",
    "LOST",
    "ORPHANED",
    "PRUNE_RUN_EVENTS",
    "RUN_EVENTS_AFTER",
    "INSERT_RUN",
    "LIST_RUNS",
    "QUEUED_BEFORE",
    "REQUEST_CANCEL",
    "REQUEST_CANCEL_AGENT",
    "REQUEST_CANCEL_INFLIGHT",
    "REQUEST_CANCEL_OTHERS",
    "SELECT_KEYED_RUN",
    "SELECT_RUN",
    "SELECT_RUNS",
    "SETTLE_ORPHANS",
    "SET_STATUS",
    "STATUS_SEEN",
    "STILL_ACTIVE",
    "UNDERWAY",
]

_ACTIVE_LIST = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
# The run has not ended: it is pending or running.
ACTIVE = f"status IN ({_ACTIVE_LIST})"
# The run has ended: exactly NOT ACTIVE.
ENDED = f"status NOT IN ({_ACTIVE_LIST})"
# A run names its holder as a session's lease does (``lease_holder``: the replica that runs
# it, or whose task waits to run it), so HOLDER_ALIVE reads both. An orphan has not ended
# and its holder died: nothing will end it but its next reader (SETTLE_ORPHANS). A run that
# names no holder (created before migration 27) is never one.
ORPHANED = f"({ACTIVE} AND NOT {HOLDER_ALIVE})"
# The run may still end by itself: active, and its holder alive. Exactly NOT (ENDED OR
# ORPHANED): what every "is it still running" check asks.
UNDERWAY = f"({ACTIVE} AND {HOLDER_ALIVE})"
# How an orphan ends: ``success`` if its turn committed (its release said so, COMMIT_TURN),
# else ``error`` (ReplicaLost).
_ORPHAN_END = "(CASE WHEN turn_committed THEN 'success' ELSE 'error' END)"
# The status a reader is shown: an orphan's is the one settling it gives.
STATUS_SEEN = f"(CASE WHEN {ORPHANED} THEN {_ORPHAN_END} ELSE status END)"
# The run ended because its replica stopped before its turn committed (settled orphans).
LOST = f"(status = 'error' AND error->>'error' = '{ReplicaLost.code}')"
# Busy checks count underway runs created within the enqueue wait (%(wait)s seconds): the
# last resort for a row its live process could not end (an outage as the run ended), or
# one that names no holder.
_RECENT = "created_at > now() - make_interval(secs => %(wait)s)"
_COUNTED = f"({UNDERWAY} AND {_RECENT})"
# A run as every read selects it: its row, and whether it is an orphan (settled before it
# is shown: runtime.runs.orphans).
_RUN = f"*, {ORPHANED} AS orphaned"
# The run's stream is recorded (LangGraph's stream_resumable; /v1 streamed turns too).
_RECORDED = """kwargs @> '{"stream_resumable": true}'"""

# (run, owner, sid, assistant, status, metadata, strategy, kwargs, key, hash, holder): key and
# hash may be NULL (a run created without an idempotency key), holder too (no heartbeat).
INSERT_RUN = (
    "INSERT INTO runs (run_id, owner, session_id, assistant_id, status, "
    "metadata, multitask_strategy, kwargs, idempotency_key, request_hash, lease_holder) "
    "VALUES (%(run)s, %(owner)s, %(sid)s, %(assistant)s, %(status)s, %(metadata)s, "
    "%(strategy)s, %(kwargs)s, %(key)s, %(hash)s, %(holder)s) RETURNING *"
)
# The run a thread's idempotency key names, kept %(keep)s seconds after its creation.
_KEYED = "owner = %(owner)s AND session_id = %(sid)s AND idempotency_key = %(key)s"
_KEY_KEPT = "created_at > now() - make_interval(secs => %(keep)s)"
SELECT_KEYED_RUN = f"SELECT {_RUN} FROM runs WHERE {_KEYED} AND {_KEY_KEPT}"
# A key past its keeping time, or whose run its replica lost (that turn never committed),
# names no run any more: free it for a new one.
FREE_SPENT_KEY = (
    f"UPDATE runs SET idempotency_key = NULL WHERE {_KEYED} AND (NOT {_KEY_KEPT} OR {LOST})"
)
# (owner, session_id, run_id)
SELECT_RUN = f"SELECT {_RUN} FROM runs WHERE owner = %s AND session_id = %s AND run_id = %s"
# (run_ids): those runs, read again once their orphans are settled.
SELECT_RUNS = f"SELECT {_RUN} FROM runs WHERE run_id = ANY(%s)"
# (owner, session_id, status, status, limit, offset): newest first; status None for all
# (an orphan is filtered as it will be shown).
LIST_RUNS = (
    f"SELECT {_RUN} FROM runs WHERE owner = %s AND session_id = %s "
    f"AND (%s::text IS NULL OR {STATUS_SEEN} = %s) "
    "ORDER BY created_at DESC, run_id DESC LIMIT %s OFFSET %s"
)
# (status, error, run_id): only while the run is active (an orphan settled meanwhile, or a
# run that ended with its turn, keeps its end).
SET_STATUS = (
    "UPDATE runs SET status = %s, error = %s, updated_at = now() "
    f"WHERE run_id = %s AND {ACTIVE} RETURNING *"
)
# The reason COMMIT_TURN refuses a turn's commit with (runtime.db.refusals).
RUN_ENDED = "run_ended"
# In the transaction of the release that commits the run's turn (runtime.runs.orphans.RunEnd):
# %(run)s's turn committed, and with %(final)s the run ends ``success`` with it: the run's
# row. Only while the run is active: otherwise (settled as lost, or gone) it is refused
# (RUN_ENDED), and the turn does not commit.
COMMIT_TURN = (
    "WITH u AS (UPDATE runs SET turn_committed = true, updated_at = now(), "
    "status = CASE WHEN %(final)s THEN 'success' ELSE status END "
    f"WHERE run_id = %(run)s AND {ACTIVE} RETURNING *) "
    f"SELECT u.* FROM (SELECT CASE WHEN count(*) = 0 THEN {refuse(RUN_ENDED)} END FROM u) c "
    "LEFT JOIN u ON true"
)
# %(ids)s, %(error)s, %(event)s: end those of the runs that are orphans, while they are (the
# holder still dead, the run still active; the row lock orders it with COMMIT_TURN), as their
# turn ended: committed or not; a recorded stream of a lost run gets its error as its last
# event (named %(event)s).
SETTLE_ORPHANS = (
    f"WITH settled AS (UPDATE runs SET status = {_ORPHAN_END}, "
    "error = CASE WHEN turn_committed THEN NULL ELSE %(error)s END, updated_at = now() "
    f"WHERE run_id = ANY(%(ids)s) AND {ORPHANED} RETURNING run_id, status, error, kwargs) "
    "INSERT INTO run_events (run_id, seq, event, data) "
    "SELECT run_id, coalesce((SELECT max(e.seq) FROM run_events e "
    "WHERE e.run_id = settled.run_id), 0) + 1, %(event)s, error FROM settled "
    f"WHERE status = 'error' AND {_RECORDED} ON CONFLICT DO NOTHING"
)
# (owner, session_id, run_id): the run, if it had not ended.
REQUEST_CANCEL = (
    "UPDATE runs SET cancel_requested = true, updated_at = now() "
    f"WHERE owner = %s AND session_id = %s AND run_id = %s AND {UNDERWAY} RETURNING *"
)
# (owner, session_id): the run ids of the thread's runs that had not ended.
REQUEST_CANCEL_INFLIGHT = (
    "UPDATE runs SET cancel_requested = true, updated_at = now() "
    f"WHERE owner = %s AND session_id = %s AND {UNDERWAY} RETURNING run_id"
)
# (owner, session_id, key): the same, sparing the run this idempotency key names (a retry of
# a request must never stop its own first attempt; NULL: a request without a key spares none).
REQUEST_CANCEL_OTHERS = REQUEST_CANCEL_INFLIGHT.replace(
    " RETURNING", " AND (idempotency_key = %s) IS NOT TRUE RETURNING"
)
# (agent_owner, agent_id): the run ids of the runs that had not ended on the threads of the
# agent (agent ids are per owner: the threads that name this owner's agent, never another's).
REQUEST_CANCEL_AGENT = (
    "UPDATE runs SET cancel_requested = true, updated_at = now() "
    "WHERE (owner, session_id) IN (SELECT owner, session_id FROM sessions "
    f"WHERE agent_owner = %s AND agent_id = %s) AND {UNDERWAY} RETURNING run_id"
)
# %(ids)s, %(wait)s: those of the runs that are still underway (an orphan is not).
STILL_ACTIVE = f"SELECT run_id FROM runs WHERE run_id = ANY(%(ids)s) AND {_COUNTED}"
# (run_ids): those a cancel was requested for.
CANCELS_REQUESTED = "SELECT run_id FROM runs WHERE run_id = ANY(%s) AND cancel_requested"
# (owner, session_id, run_id): deletes the run if it has ended.
DELETE_ENDED_RUN = (
    f"DELETE FROM runs WHERE owner = %s AND session_id = %s AND run_id = %s AND {ENDED}"
)
# (run_id)
DELETE_RUN = "DELETE FROM runs WHERE run_id = %s"
# %(o)s, %(s)s, %(wait)s: whether a run is active on the thread or a turn holds its lease.
INFLIGHT = (
    "SELECT (EXISTS (SELECT 1 FROM runs WHERE owner = %(o)s "
    f" AND session_id = %(s)s AND {_COUNTED}) "
    "OR EXISTS (SELECT 1 FROM sessions WHERE owner = %(o)s "
    f" AND session_id = %(s)s AND {LEASE_HELD})) AS busy"
)
# %(o)s, %(s)s, %(run_id)s, %(created_at)s, %(wait)s: whether an older run of the thread is
# still pending, its holder alive (the queue is FIFO).
QUEUED_BEFORE = (
    "SELECT EXISTS (SELECT 1 FROM runs WHERE owner = %(o)s AND session_id = %(s)s "
    "AND status = 'pending' AND run_id <> %(run_id)s "
    "AND (created_at, run_id) < (%(created_at)s, %(run_id)s) "
    f"AND {HOLDER_ALIVE} AND {_RECENT}) AS queued"
)

# -- run_events: resumable streams (runtime.runs.events) ------------------------------------

# (run_id, seq, event, data)
INSERT_RUN_EVENT = "INSERT INTO run_events (run_id, seq, event, data) VALUES (%s, %s, %s, %s)"
# (run_id, after): the events numbered above ``after``, in order.
RUN_EVENTS_AFTER = (
    "SELECT seq, event, data FROM run_events WHERE run_id = %s AND seq > %s ORDER BY seq"
)
# (run_id): the last number recorded (NULL: none yet).
LAST_RUN_EVENT = "SELECT max(seq) AS seq FROM run_events WHERE run_id = %s"
# (seconds): events older than that, of runs that have ended (or are gone).
PRUNE_RUN_EVENTS = (
    "DELETE FROM run_events e WHERE e.created_at < now() - make_interval(secs => %s) "
    f"AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = e.run_id AND r.{ACTIVE})"
)
