"""Ids: the rule for client-supplied ids and the shape of server-generated ones.

Every id a client may choose (agent, session, thread) follows :func:`validate_id`; the API
imports it rather than restating the pattern.
"""

from __future__ import annotations

import re
import secrets

from runtime.errors import InvalidInput

__all__ = ["ID_PATTERN", "new_id", "validate_id"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_ID_RE = re.compile(ID_PATTERN)


def validate_id(value: str, *, kind: str) -> str:
    """Check a client-supplied id: 1-128 chars of letters, digits and ``._:-``."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid {kind}: use 1-128 characters from A-Z a-z 0-9 . _ : - "
            "starting with a letter or digit",
            field=kind,
        )
    return value


def new_id(prefix: str) -> str:
    """A server-generated id such as ``ses_3q9Xb...`` (URL-safe, 128 bits of randomness)."""
    return f"{prefix}_{secrets.token_hex(16)}"
