"""Every statement on ``publishable_keys``, ``widget_sessions`` and ``rate_windows``."""

from __future__ import annotations

__all__ = [
    "AUTHENTICATE_KEY",
    "HIT",
    "INSERT_KEY",
    "INSERT_VISITOR",
    "LIST_KEYS",
    "PRUNE_WINDOWS",
    "REVOKE_KEY",
    "VISITOR_TOKEN",
]

# (key_id, owner, agent_id, allowed_origins, name, key_hash)
INSERT_KEY = (
    "INSERT INTO publishable_keys (key_id, owner, agent_id, allowed_origins, name, key_hash) "
    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING *"
)
# (include_revoked): oldest first.
LIST_KEYS = "SELECT * FROM publishable_keys WHERE %s OR revoked_at IS NULL ORDER BY created_at"
# (key_id)
REVOKE_KEY = (
    "UPDATE publishable_keys SET revoked_at = coalesce(revoked_at, now()) "
    "WHERE key_id = %s RETURNING *"
)
# (key_hash): a key that is not revoked.
AUTHENTICATE_KEY = "SELECT * FROM publishable_keys WHERE key_hash = %s AND revoked_at IS NULL"
# (owner, session_id, key_id, token_hash)
INSERT_VISITOR = (
    "INSERT INTO widget_sessions (owner, session_id, key_id, token_hash) VALUES (%s, %s, %s, %s)"
)
# (owner, session_id, key_id): the token hash of a session this key created.
VISITOR_TOKEN = (
    "SELECT token_hash FROM widget_sessions WHERE owner = %s AND session_id = %s AND key_id = %s"
)
# (bucket, window seconds): count one hit in the current fixed window; how many so far and
# the seconds until the window ends.
HIT = (
    "WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now()) / %(secs)s) * %(secs)s) "
    "AS start) "
    "INSERT INTO rate_windows AS r (bucket, window_start, hits) "
    "SELECT %(bucket)s, start, 1 FROM w "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = r.hits + 1 "
    "RETURNING hits, ceil(extract(epoch FROM "
    "(r.window_start + make_interval(secs => %(secs)s) - now())))::int AS retry_after"
)
PRUNE_WINDOWS = "DELETE FROM rate_windows WHERE window_start < now() - interval '1 hour'"
