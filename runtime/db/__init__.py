"""Postgres: the embedded server, the pool, migrations, the query helpers and pages."""

from __future__ import annotations

# Re-exported for callers that still import it from here; it lives with the checkpoint
# tables (``runtime.checkpoints``), which import nothing of this package.
from runtime.db.migrations import SCHEMA_VERSION, migrate, schema_is_current
from runtime.db.pages import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET_LIMIT,
    Page,
    check_limit,
    check_offset_page,
    check_sort,
    decode_cursor,
    encode_cursor,
    position,
    text,
    timestamp,
)
from runtime.db.pool import embedded_postgres, open_pool
from runtime.db.query import (
    Db,
    Pool,
    Row,
    all_or_nothing,
    connect,
    execute,
    fetch_all,
    fetch_one,
)
from runtime.db.refusals import refusal, refuse
from runtime.db.unavailable import database_error

__all__ = [
    "DEFAULT_LIMIT",
    "Db",
    "MAX_LIMIT",
    "MAX_OFFSET_LIMIT",
    "Page",
    "Pool",
    "Row",
    "SCHEMA_VERSION",
    "all_or_nothing",
    "check_limit",
    "check_offset_page",
    "check_sort",
    "connect",
    "database_error",
    "decode_cursor",
    "embedded_postgres",
    "encode_cursor",
    "execute",
    "fetch_all",
    "fetch_one",
    "migrate",
    "open_pool",
    "position",
    "refusal",
    "refuse",
    "schema_is_current",
    "text",
    "timestamp",
]
