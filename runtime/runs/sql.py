"""Every statement on ``runs``, and the rules they share, named once."""

from __future__ import annotations

from runtime.runs.model import ACTIVE_STATUSES
from runtime.sessions.sql import LEASE_HELD

__all__ = [
    "ACTIVE",
    "CANCELS_REQUESTED",
    "DELETE_ENDED_RUN",
    "DELETE_RUN",
    "ENDED",
    "FREE_LAPSED_KEY",
    "INFLIGHT",
    "INSERT_RUN_EVENT",
    "LAST_RUN_EVENT",
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
    "SET_STATUS",
    "STILL_ACTIVE",
]

_ACTIVE_LIST = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
# The run has not ended: it is pending or running.
ACTIVE = f"status IN ({_ACTIVE_LIST})"
# The run has ended: exactly NOT ACTIVE.
ENDED = f"status NOT IN ({_ACTIVE_LIST})"
# Pending and running runs older than the enqueue wait (%(wait)s seconds) no longer count:
# a process that died mid-run leaves its row behind.
_RECENT = "created_at > now() - make_interval(secs => %(wait)s)"

# (run, owner, sid, assistant, status, metadata, strategy, kwargs, key, hash): key and hash
# may be NULL (a run created without an idempotency key).
INSERT_RUN = (
    "INSERT INTO runs (run_id, owner, session_id, assistant_id, status, "
    "metadata, multitask_strategy, kwargs, idempotency_key, request_hash) "
    "VALUES (%(run)s, %(owner)s, %(sid)s, %(assistant)s, %(status)s, %(metadata)s, "
    "%(strategy)s, %(kwargs)s, %(key)s, %(hash)s) RETURNING *"
)
# The run a thread's idempotency key names, kept %(keep)s seconds after its creation.
_KEYED = "owner = %(owner)s AND session_id = %(sid)s AND idempotency_key = %(key)s"
_KEY_KEPT = "created_at > now() - make_interval(secs => %(keep)s)"
SELECT_KEYED_RUN = f"SELECT * FROM runs WHERE {_KEYED} AND {_KEY_KEPT}"
# A key past its keeping time names no run any more: free it for a new one.
FREE_LAPSED_KEY = f"UPDATE runs SET idempotency_key = NULL WHERE {_KEYED} AND NOT {_KEY_KEPT}"
# (owner, session_id, run_id)
SELECT_RUN = "SELECT * FROM runs WHERE owner = %s AND session_id = %s AND run_id = %s"
# (owner, session_id, status, status, limit, offset): newest first; status None for all.
LIST_RUNS = (
    "SELECT * FROM runs WHERE owner = %s AND session_id = %s "
    "AND (%s::text IS NULL OR status = %s) "
    "ORDER BY created_at DESC, run_id DESC LIMIT %s OFFSET %s"
)
# (status, error, run_id)
SET_STATUS = (
    "UPDATE runs SET status = %s, error = %s, updated_at = now() WHERE run_id = %s RETURNING *"
)
# (owner, session_id, run_id): the run, if it had not ended.
REQUEST_CANCEL = (
    "UPDATE runs SET cancel_requested = true, updated_at = now() "
    f"WHERE owner = %s AND session_id = %s AND run_id = %s AND {ACTIVE} RETURNING *"
)
# (owner, session_id): the run ids of the thread's runs that had not ended.
REQUEST_CANCEL_INFLIGHT = (
    "UPDATE runs SET cancel_requested = true, updated_at = now() "
    f"WHERE owner = %s AND session_id = %s AND {ACTIVE} RETURNING run_id"
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
    f"WHERE agent_owner = %s AND agent_id = %s) AND {ACTIVE} RETURNING run_id"
)
# %(ids)s, %(wait)s: those of the runs that are still active (a dead process's rows age out).
STILL_ACTIVE = f"SELECT run_id FROM runs WHERE run_id = ANY(%(ids)s) AND {ACTIVE} AND {_RECENT}"
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
    f" AND session_id = %(s)s AND {ACTIVE} AND {_RECENT}) "
    "OR EXISTS (SELECT 1 FROM sessions WHERE owner = %(o)s "
    f" AND session_id = %(s)s AND {LEASE_HELD})) AS busy"
)
# %(o)s, %(s)s, %(run_id)s, %(created_at)s, %(wait)s: whether an older run of the thread is
# still pending (the queue is FIFO).
QUEUED_BEFORE = (
    "SELECT EXISTS (SELECT 1 FROM runs WHERE owner = %(o)s AND session_id = %(s)s "
    "AND status = 'pending' AND run_id <> %(run_id)s "
    "AND (created_at, run_id) < (%(created_at)s, %(run_id)s) "
    f"AND {_RECENT}) AS queued"
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
