"""Every statement on ``sessions``, and the rules they share, named once.

The predicates are SQL fragments on the ``sessions`` columns (unqualified: every statement
that joins another table joins one without these columns). They are evaluated on the
database's clock, never the process's.
"""

from __future__ import annotations

__all__ = ["LEASE_FREE", "LEASE_HELD", "LIVE"]

# The session has not outlived its TTL.
LIVE = "expires_at > now()"
# A turn holds the session's lease: it has a token that has not lapsed.
LEASE_HELD = "(lease_token IS NOT NULL AND lease_expires_at >= now())"
# No turn holds it (never leased, released, or lapsed): exactly NOT LEASE_HELD.
LEASE_FREE = "(lease_token IS NULL OR lease_expires_at < now())"
