"""Every statement on ``api_keys``."""

from __future__ import annotations

__all__ = ["ANY_ACTIVE_KEY", "AUTHENTICATE", "INSERT_KEY", "LIST_KEYS", "REVOKE_KEY"]

# (key_id, owner, name, roles, key_hash)
INSERT_KEY = (
    "INSERT INTO api_keys (key_id, owner, name, roles, key_hash) "
    "VALUES (%s, %s, %s, %s, %s) RETURNING *"
)
# (include_revoked): oldest first.
LIST_KEYS = "SELECT * FROM api_keys WHERE %s OR revoked_at IS NULL ORDER BY created_at"
# (key_id): revoked at the first revoke, kept on later ones.
REVOKE_KEY = (
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = %s RETURNING *"
)
# (key_hash): the principal of a key that is not revoked.
AUTHENTICATE = (
    "SELECT key_id, owner, roles FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL"
)
ANY_ACTIVE_KEY = "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL) AS any"
